"""A bonus problem (manifest `bonus = true`): counted apart in the learner's progress,
offered only after every other problem, and graded like any other by every command."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from support import MANIFEST, ROOT

from workbook import api, cli
from workbook.engine import discover_checks
from workbook.manifest import ManifestError, load_manifest
from workbook.milestones import after_check, next_unsolved, progress_line
from workbook.report import Style, human_progress
from workbook.state import Progress, load_state, record_result, save_state
from workbook.workspace import exercises_folder

PLAIN = Style(color=False, unicode=False)
CORE = MANIFEST.core_problems
BONUS = MANIFEST.bonus_problems


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    """Progress goes to a temporary folder, never to the checkout's .workbook/."""
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))


def solved(*problems) -> Progress:
    state = load_state()
    for problem in problems:
        record_result(state, problem.slug, "pass", 1, 1)
    return state


def test_problem_6_is_the_only_bonus_and_problems_1_to_5_are_not():
    assert [p.number for p in BONUS] == [6]
    assert [p.number for p in CORE] == [1, 2, 3, 4, 5]


def test_progress_counts_the_bonus_apart():
    assert progress_line(MANIFEST, solved(*CORE), PLAIN) == (
        "Workbook progress [####################] 5 of 5 problems solved, bonus 0 of 1"
    )
    assert progress_line(MANIFEST, solved(*BONUS), PLAIN) == (
        "Workbook progress [....................] 0 of 5 problems solved, bonus 1 of 1"
    )


def test_a_workbook_without_bonus_problems_keeps_the_old_progress_line():
    assert (
        human_progress(1, 5, PLAIN, bonus=(0, 0)) == "Workbook progress [####................] 1 of 5 problems solved"
    )
    assert human_progress(1, 5, PLAIN) == human_progress(1, 5, PLAIN, bonus=(0, 0))


def test_the_bonus_comes_after_every_other_unsolved_problem():
    assert next_unsolved(MANIFEST, solved(*CORE[:-1]), after=None).number == 5
    assert next_unsolved(MANIFEST, solved(), after=CORE[-1]).number == 1
    assert next_unsolved(MANIFEST, solved(*CORE), after=None).number == 6
    assert next_unsolved(MANIFEST, solved(*CORE, *BONUS), after=None) is None


def test_solving_the_last_required_problem_celebrates_and_offers_the_bonus():
    before = solved(*CORE[:-1])
    after = solved(*CORE)
    message = after_check(MANIFEST, before, after, PLAIN)
    assert "You solved all 5 problems" in message
    assert "Bonus: problem 6, File uploads, background tasks and middleware order: workbook check 6" in message


def test_check_without_a_number_picks_a_core_problem_before_the_bonus():
    save_state(solved(*CORE[:-1]))
    assert [p.number for p in api.select_problems(MANIFEST, (), False, exercises_folder(), exercises_folder())] == [5]
    save_state(solved(*CORE))
    assert [p.number for p in api.select_problems(MANIFEST, (), False, exercises_folder(), exercises_folder())] == [6]


def test_status_marks_the_bonus_and_prints_both_counts():
    save_state(solved(*CORE))
    result = CliRunner().invoke(cli.main, ["status"])
    assert result.exit_code == 0, result.output
    assert "6. File uploads, background tasks and middleware order [bonus]  (not checked yet)" in result.output
    assert result.output.rstrip().endswith("5 of 5 problems solved, bonus 0 of 1")


def test_check_all_grades_the_bonus_in_the_json_report():
    # -k keeps this fast: only problem 6 has a check of that name, so only it is graded.
    args = ["check", "--all", "--solutions", "-k", "upload_answers_201", "--format", "json"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [entry["number"] for entry in document["problems"]] == [6]
    bonus = document["problems"][-1]
    assert (bonus["slug"], bonus["status"], bonus["passed"], bonus["total"]) == ("p6_uploads_background", "pass", 1, 1)


def test_a_bonus_flag_that_is_not_a_boolean_is_a_manifest_error(tmp_path):
    manifest_path = tmp_path / "workbook.toml"
    source = (ROOT / "workbook.toml").read_text(encoding="utf-8").replace("bonus = true", 'bonus = "yes"')
    manifest_path.write_text(source, encoding="utf-8")
    with pytest.raises(ManifestError, match="bonus must be true or false"):
        load_manifest(manifest_path)


@pytest.fixture
def current_checksums(tmp_path, monkeypatch):
    """A checksum list matching the graders as they are now (the shipped one has its own test)."""
    from workbook import integrity

    path = tmp_path / "CHECKSUMS.sha256"
    monkeypatch.setattr(integrity, "CHECKSUMS", path)
    integrity.write_checksums(destination=path)
    return path


def test_grade_puts_the_bonus_in_the_gradebook_and_the_class_report(tmp_path, current_checksums):
    solution = (ROOT / "solutions" / BONUS[0].slug / "app.py").read_text(encoding="utf-8")
    alice = tmp_path / "class" / "alice" / BONUS[0].slug
    alice.mkdir(parents=True)
    (alice / "app.py").write_text(solution, encoding="utf-8")
    (tmp_path / "class" / "frank").mkdir()  # submitted nothing
    out, html = tmp_path / "out", tmp_path / "report.html"
    args = ["grade", str(tmp_path / "class"), "--out", str(out), "-p", "6", "--html", str(html)]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    with open(out / "gradebook.csv", encoding="utf-8", newline="") as handle:
        book = {row["submission"]: row for row in csv.DictReader(handle)}
    total = str(len(discover_checks(BONUS[0])))
    assert (book["alice"]["p6_status"], book["alice"]["p6_passed"], book["alice"]["p6_total"]) == ("pass", total, total)
    assert (book["frank"]["p6_status"], book["frank"]["p6_passed"]) == ("error", "0")
    assert BONUS[0].title in html.read_text(encoding="utf-8")


@pytest.mark.parametrize("output_format", ["junit", "exercism", "gradescope", "github"])
def test_every_report_format_carries_the_bonus(output_format, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    args = ["check", "6", "--solutions", "-k", "upload_answers_201", "--format", output_format]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    shown = result.output + ((tmp_path / "summary.md").read_text(encoding="utf-8") if output_format == "github" else "")
    # Each format names the problem, its check, or both.
    names = (BONUS[0].title, BONUS[0].slug, "upload_answers_201_with_record")
    assert any(name in shown for name in names), shown[:500]

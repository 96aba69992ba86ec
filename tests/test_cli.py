"""The `workbook` command line: exit codes, the JSON report, progress, usage errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner
from support import MANIFEST, ROOT, learner_workspace, write_problem

from workbook import cli
from workbook.engine import discover_checks

P1 = MANIFEST.by_number(1)


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    """Progress goes to a temporary folder, never to the checkout's .workbook/."""
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("NO_COLOR", raising=False)


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def test_check_solutions_exits_0_and_reports_every_check():
    result = run("check", "1", "--solutions")
    assert result.exit_code == 0, result.output
    total = len(discover_checks(P1))
    assert f"{total}/{total} checks passed" in result.output
    assert result.output.count("PASS") == total and "FAIL" not in result.output


def test_check_stub_exits_1_with_a_message_and_rerun_hint():
    result = run("check", "1")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output
    assert "is not written yet" in result.output
    assert "re-run only this check: workbook check 1 -k " in result.output


def test_json_report_has_the_documented_shape():
    result = run("check", "1", "--solutions", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert set(document) == {"version", "target", "problems", "score", "max_score", "percent", "graders"}
    assert document["version"] == 1
    assert document["graders"]["source"] == "bundled"
    assert document["graders"]["allow_modified_graders"] is False
    assert document["score"] == document["max_score"] and document["percent"] == 100
    assert document["target"] == str(ROOT / "solutions")
    (problem,) = document["problems"]
    assert set(problem) == {
        "number",
        "slug",
        "title",
        "status",
        "passed",
        "total",
        "checks",
        "score",
        "max_score",
        "seed",
    }
    assert isinstance(problem["seed"], int)
    assert {k: problem[k] for k in ("number", "slug", "title", "status")} == {
        "number": 1,
        "slug": P1.slug,
        "title": P1.title,
        "status": "pass",
    }
    assert problem["passed"] == problem["total"] == len(problem["checks"])
    assert problem["score"] == problem["max_score"] == problem["total"]
    for check in problem["checks"]:
        assert set(check) == {"id", "title", "status", "message", "duration_s", "cause"}
        assert check["status"] == "pass" and check["message"] is None and check["cause"] is None
        assert isinstance(check["duration_s"], float)


def test_json_check_ids_do_not_depend_on_the_code(tmp_path):
    root = write_problem(tmp_path, P1, {"app.py": "this is not python\n"})
    broken = json.loads(run("check", "1", "--dir", str(root), "--format", "json").output)
    good = json.loads(run("check", "1", "--solutions", "--format", "json").output)
    ids = [[c["id"] for c in doc["problems"][0]["checks"]] for doc in (broken, good)]
    assert ids[0] == ids[1]
    assert {c["status"] for c in broken["problems"][0]["checks"]} == {"error"}
    assert broken["problems"][0]["status"] == "error"


def test_dir_without_the_problem_folder_is_an_error_not_a_crash(tmp_path):
    result = run("check", "1", "--dir", str(tmp_path), "--format", "json")
    assert result.exit_code == 1, result.output
    problem = json.loads(result.output)["problems"][0]
    assert problem["status"] == "error"
    assert "There is no folder p1_dependency_chain/" in problem["checks"][0]["message"]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["check", "9"], "'9' is not a problem number"),
        (["check", "two"], "'two' is not a problem number"),
        (["check", "1", "--dir", "/no/such/folder"], "does not exist"),
        (["check", "1", "--solutions", "--dir", "."], "either --solutions or --dir"),
        (["check", "1", "--format", "yaml"], "'yaml' is not one of"),
        (["hello"], "No such command"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(args, complaint):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert complaint in result.output


def test_progress_is_recorded_and_shown_by_status_and_list(tmp_path, monkeypatch):
    exercises = learner_workspace(tmp_path / "workspace", monkeypatch)
    write_problem(exercises, P1, {"app.py": (ROOT / "solutions" / P1.slug / "app.py").read_text()})
    assert run("check", "1").exit_code == 0
    status = run("status")
    assert status.exit_code == 0
    assert f"1. {P1.title}" in status.output
    core, bonus = len(MANIFEST.core_problems), len(MANIFEST.bonus_problems)
    assert f"1 of {core} problems solved, bonus 0 of {bonus}" in status.output
    listing = run("list")
    assert "pass (" in listing.output


def test_a_corrupt_state_file_means_not_checked_yet(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_text("{not json")
    result = run("status")
    assert result.exit_code == 0, result.output
    assert "not checked yet" in result.output


def test_solutions_and_dir_runs_do_not_touch_progress(tmp_path):
    run("check", "1", "--solutions")
    assert not (tmp_path / "state" / "state.json").exists()


def test_installed_console_script_answers_help():
    completed = subprocess.run(
        [sys.executable, "-c", "from workbook.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "Usage:" in completed.stdout and "check" in completed.stdout


def test_piped_output_has_no_colour_codes():
    completed = subprocess.run(
        [sys.executable, "-c", "from workbook.cli import main; main()", "check", "1", "--solutions", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "NO_COLOR"},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "\x1b[" not in completed.stdout
    assert completed.stderr == ""


def test_verbose_shows_the_full_traceback_without_grading_machinery():
    result = run("check", "1", "-k", "list_starts_empty", "-v")
    assert result.exit_code == 1, result.output
    assert "full traceback:" in result.output
    assert "Traceback (most recent call last):" in result.output
    assert 'p1_dependency_chain/app.py", line' in result.output
    assert "_pytest" not in result.output and "pluggy" not in result.output
    # Trimmed to the learner's frames (the stub raises in its own code): no framework frame is shown.
    assert "frames of the framework left out" in result.output
    assert "site-packages" not in result.output
    quiet = run("check", "1", "-k", "list_starts_empty")
    assert "full traceback:" not in quiet.output


def test_code_under_grading_cannot_rewrite_progress(tmp_path, monkeypatch):
    stub = (ROOT / "exercises" / P1.slug / "app.py").read_text()
    # The grading process's environment no longer names the state folder, so the forger
    # knows its path; inside the sandbox it cannot write there either.
    forging = (
        "\nimport json, os, pathlib\n"
        f"state = pathlib.Path({os.environ['WORKBOOK_STATE_DIR']!r}, 'state.json')\n"
        "try:\n"
        "    state.parent.mkdir(parents=True, exist_ok=True)\n"
        "    state.write_text(json.dumps({'version': 1, 'problems': {'p1_dependency_chain': "
        "{'status': 'pass', 'passed': 19, 'total': 19, 'checked_at': 'x'}}}))\n"
        "except OSError:\n"
        "    pass\n"
    )
    write_problem(learner_workspace(tmp_path / "workspace", monkeypatch), P1, {"app.py": stub + forging})
    result = run("check", "1")
    assert result.exit_code == 1, result.output
    assert "0 of" in result.output.splitlines()[-1]
    assert "fail (" in run("list").output.splitlines()[0]


def test_a_keyword_that_matches_no_check_is_a_usage_error():
    result = run("check", "1", "-k", "no_such_check_anywhere")
    assert result.exit_code == 2, result.output
    assert "no check id contains 'no_such_check_anywhere'" in result.output
    assert "list_starts_empty" in result.output


def test_output_into_a_missing_folder_is_refused_before_grading(tmp_path):
    result = run("check", "1", "--solutions", "--format", "junit", "--output", str(tmp_path / "nope" / "r.xml"))
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output


def test_all_with_k_grades_only_the_problems_that_have_a_matching_check():
    result = run("check", "--all", "--solutions", "-k", "list_starts_empty", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [(p["number"], p["status"], p["passed"], p["total"]) for p in document["problems"]] == [(1, "pass", 1, 1)]


def test_verbose_output_says_how_much_of_what_the_code_printed_was_cut(tmp_path):
    stub = (ROOT / "exercises" / P1.slug / "app.py").read_text()
    noisy = stub.replace(
        "    # TODO: read DATABASE_PATH and API_KEY from os.environ, falling back to the defaults above.\n",
        "    for n in range(400):\n        print(f'noise line {n}')\n",
    )
    assert noisy != stub
    root = write_problem(tmp_path, P1, {"app.py": noisy})
    result = run("check", "1", "--dir", str(root), "-k", "get_settings_reads_environment", "-v")
    assert result.exit_code == 1, result.output
    assert "your code printed:" in result.output, result.output
    assert re.search(r"… \(\d+ earlier characters cut\)|… \(\d+ earlier lines not shown\)", result.output), (
        result.output
    )
    assert "noise line 399" in result.output

"""Progress across runs (issue 14, item 4): a `-k` run records the checks it ran, `status`
shows each problem's best and current result, and breaking a solved problem is said out
loud instead of silently lowering the progress count. Old state files still read."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner
from support import MANIFEST, SOLUTIONS, learner_workspace

from workbook import cli
from workbook.engine import discover_checks
from workbook.state import ProblemProgress, Progress, is_solved, load_state, problem_status, save_state, with_results

P1 = MANIFEST.by_number(1)
P1_IDS = [check.id for check in discover_checks(P1)]


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    folder = tmp_path / "state"
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(folder))
    monkeypatch.delenv("NO_COLOR", raising=False)
    return folder


@pytest.fixture
def exercises(tmp_path, monkeypatch):
    return learner_workspace(tmp_path, monkeypatch)


def invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def write_old_state(folder, problems: dict) -> None:
    """A state file as the workbook wrote it before best results existed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(json.dumps({"version": 1, "problems": problems}))


def test_an_old_state_file_still_counts_its_solved_problems(state_dir):
    write_old_state(
        state_dir,
        {P1.slug: {"status": "pass", "passed": 17, "total": 17, "checked_at": "2026-01-01T10:00:00+00:00"}},
    )
    result = invoke("status")
    assert result.exit_code == 0, result.output
    assert f"1. {P1.title}  (17/17 checks)" in result.output
    assert f"1 of {len(MANIFEST.core_problems)} problems solved" in result.output


def test_a_passing_k_run_completes_the_problem_in_status(exercises, state_dir):
    shutil.copy(SOLUTIONS / P1.slug / "app.py", exercises / P1.slug / "app.py")
    fixed, *others = P1_IDS
    known = dict.fromkeys(others, "pass") | {fixed: "fail"}
    state = load_state()
    entry = {"status": "fail", "passed": len(others), "total": len(P1_IDS), "checks": known}
    state.problems[P1.slug] = ProblemProgress.from_json(entry)
    save_state(state)

    result = invoke("check", "1", "-k", fixed)
    assert result.exit_code == 0, result.output
    assert "Problem 1 solved" in result.output
    assert f"With your earlier results, {len(P1_IDS)}/{len(P1_IDS)} checks of problem 1 pass" in result.output
    entry = problem_status(load_state(), P1.slug)
    assert (entry.status, entry.passed, entry.total) == ("pass", len(P1_IDS), len(P1_IDS))
    status = invoke("status")
    assert f"1. {P1.title}  ({len(P1_IDS)}/{len(P1_IDS)} checks)" in status.output
    assert f"1 of {len(MANIFEST.core_problems)} problems solved" in status.output


def test_breaking_a_solved_problem_keeps_the_progress_and_says_so(exercises, state_dir):
    write_old_state(state_dir, {P1.slug: {"status": "pass", "passed": 19, "total": 19}})
    result = invoke("check", "1")  # the untouched stub: everything fails now
    assert result.exit_code == 1, result.output
    assert f"1 of {len(MANIFEST.core_problems)} problems solved" in result.output
    assert "Problem 1 was solved before and fails now" in result.output
    assert "Problem 1 solved" not in result.output  # no second congratulation
    status = invoke("status")
    assert "solved before, failing now" in status.output
    assert f"1 of {len(MANIFEST.core_problems)} problems solved" in status.output
    listing = invoke("list")
    assert listing.exit_code == 0, listing.output
    now = problem_status(load_state(), P1.slug)
    assert listing.output.splitlines()[0].endswith(
        f"fail ({now.passed}/{now.total} checks now; solved before, failing now)"
    )


def test_a_k_run_counts_checks_it_never_ran_as_not_passed():
    before = Progress.from_json(
        {"version": 1, "problems": {P1.slug: {"status": "fail", "passed": 3, "total": len(P1_IDS)}}}
    )

    class Ran:
        def __init__(self, check_id: str) -> None:
            self.id, self.status = check_id, "pass"

    class Result:
        problem = P1
        checks = [Ran(P1_IDS[0])]

    after = with_results(before, [Result()], {P1.slug: P1_IDS})
    entry = problem_status(after, P1.slug)
    assert (entry.status, entry.passed, entry.total) == ("fail", 1, len(P1_IDS))
    assert entry.checks == {P1_IDS[0]: "pass"} | dict.fromkeys(P1_IDS[1:], "not run")
    assert entry.best.passed == 3  # the better full run stays the best
    assert not is_solved(after, P1.slug)


def test_status_shows_only_counts_from_an_edited_state_file(state_dir):
    escape = "\x1b[2J" + "x" * 5000
    write_old_state(state_dir, {P1.slug: {"status": "fail", "passed": escape, "total": 19, "best": {"passed": escape}}})
    result = invoke("status")
    assert result.exit_code == 0, result.output
    assert f"1. {P1.title}  (0/19 checks)" in result.output
    assert "\x1b" not in result.output


def test_a_state_file_reads_and_writes_back_byte_identical(state_dir):
    entry = {
        "status": "fail",
        "passed": 1,
        "total": 2,
        "checked_at": "2026-01-02T10:00:00+00:00",
        "checks": {"a": "pass", "b": "not run"},
        "best": {"status": "pass", "passed": 2, "total": 2, "checked_at": "2026-01-01T10:00:00+00:00"},
    }
    written = json.dumps({"version": 1, "problems": {P1.slug: entry}, "hints": {P1.slug: 2}}, indent=2, sort_keys=True)
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text(written)

    save_state(load_state())

    assert (state_dir / "state.json").read_text() == written


def test_a_damaged_state_file_loads_what_it_can(state_dir):
    write_old_state(
        state_dir, {P1.slug: {"status": "passed?", "passed": -3, "total": "17"}, "p2_x": ["not", "a", "dict"]}
    )

    state = load_state()

    assert list(state.problems) == [P1.slug]
    entry = state.problems[P1.slug]
    assert (entry.status, entry.passed, entry.total, entry.checks, entry.best) == ("fail", 0, 0, None, None)
    assert not is_solved(state, P1.slug)


def test_status_after_a_k_run_on_restored_code_shows_merged_current_and_kept_best(exercises, state_dir):
    app = exercises / P1.slug / "app.py"
    solution = (SOLUTIONS / P1.slug / "app.py").read_text(encoding="utf-8")
    app.write_text(solution, encoding="utf-8")
    assert invoke("check", "1").exit_code == 0
    app.write_text(solution.replace("status.HTTP_409_CONFLICT", "400"), encoding="utf-8")
    assert invoke("check", "1").exit_code == 1
    broken = problem_status(load_state(), P1.slug).checks
    failing = sorted(check_id for check_id, status in broken.items() if status != "pass")
    assert "duplicate_email_answers_409" in failing, broken

    app.write_text(solution, encoding="utf-8")
    result = invoke("check", "1", "-k", "duplicate_email_answers_409")

    total = len(P1_IDS)
    passed = total - len(failing) + 1
    assert result.exit_code == 0, result.output
    assert f"With your earlier results, {passed}/{total} checks of problem 1 pass" in result.output
    status = invoke("status").output
    expected = "solved before, failing now"
    assert f"1. {P1.title}  ({passed}/{total} checks now; {expected})" in status, status
    assert f"1 of {len(MANIFEST.core_problems)} problems solved" in status
    entry = problem_status(load_state(), P1.slug)
    assert (entry.passed, entry.best.status, entry.best.passed) == (passed, "pass", total)


def test_counts_of_one_are_singular(exercises, state_dir):
    result = invoke("check", "1", "-k", "settings_defaults_and_values")
    assert "1/1 check passed" in result.output, result.output
    status = invoke("status").output
    assert f"1. {P1.title}  (1/{len(P1_IDS)} checks" in status, status
    for text in (result.output, status):
        assert not re.search(r"\b1 (checks|problems|submissions|items|files)\b", text), text

"""Hostile or broken learner code: every case ends in a clear non-pass result, quickly,
and never in a hang, a crash of the engine, or a result the learner's code forged."""

from __future__ import annotations

import os
import time

import pytest
from support import MANIFEST, ROOT, SOLUTIONS, engine_errors, grade, write_problem

from workbook.engine import discover_checks

P1 = MANIFEST.by_number(1)
SOLUTION = (SOLUTIONS / P1.slug / "app.py").read_text(encoding="utf-8")
# A short limit keeps the hang cases fast; the engine's backstop adds a few seconds.
FAST = 1.5
HANG_GUARD_S = 30


def solution_with(*, before: str = "", after: str = "", replace: tuple[str, str] | None = None) -> str:
    text = SOLUTION
    if replace:
        assert text.count(replace[0]) == 1
        text = text.replace(*replace)
    return before + text + after


def grade_source(tmp_path, source: str, extra: dict[str, str] | None = None, **options):
    root = write_problem(tmp_path / "graded", P1, {"app.py": source, **(extra or {})})
    started = time.monotonic()
    result = grade(P1, root, check_timeout_s=FAST, **options)
    elapsed = time.monotonic() - started
    assert elapsed < HANG_GUARD_S, f"grading took {elapsed:.1f} s"
    assert engine_errors(result) == []
    return result


def kinds(result) -> set[str]:
    return {check.kind for check in result.checks}


def test_syntax_error_makes_every_check_an_import_error(tmp_path):
    result = grade_source(tmp_path, SOLUTION.replace("def get_settings()", "def get_settings(", 1))
    assert {c.status for c in result.checks} == {"error"}
    assert kinds(result) == {"import"}
    assert "line" in result.checks[0].message and "app.py" in result.checks[0].message


def test_exception_at_import_is_reported_with_the_learner_frame(tmp_path):
    result = grade_source(tmp_path, solution_with(after="\nraise RuntimeError('half-written config')\n"))
    assert kinds(result) == {"import"}
    message = result.checks[0].message
    assert "RuntimeError: half-written config" in message
    assert "p1_dependency_chain/app.py, line" in message


def test_missing_app_is_named(tmp_path):
    source = SOLUTION.replace("app = FastAPI(", "application = FastAPI(").replace("@app.", "@application.")
    result = grade_source(tmp_path, source)
    assert kinds(result) == {"import"}
    assert "defines no `app`" in result.checks[0].message


def test_endless_loop_at_import_times_out_once_for_all_checks(tmp_path):
    result = grade_source(tmp_path, solution_with(after="\nwhile True:\n    pass\n"))
    assert {c.status for c in result.checks} == {"error"}
    assert kinds(result) == {"timeout"}
    assert "module level" in result.checks[0].message


def test_sys_exit_at_import_is_an_import_error(tmp_path):
    result = grade_source(tmp_path, solution_with(after="\nimport sys\nsys.exit(0)\n"))
    assert kinds(result) == {"import"}
    assert "sys.exit(0)" in result.checks[0].message


def test_forged_pass_output_and_exit_zero_gain_nothing(tmp_path):
    forged = "\nimport os\nprint('17 passed in 0.01s')\nos._exit(0)\n"
    result = grade_source(tmp_path, solution_with(after=forged))
    assert result.passed == 0
    assert kinds(result) == {"exit"}


def test_handler_that_never_returns_fails_only_its_checks(tmp_path):
    source = SOLUTION.replace(
        "    # Why check the key before the id",
        "    import time\n    while True:\n        time.sleep(0.01)\n    # Why check the key before the id",
    )
    assert source != SOLUTION
    only = ["list_starts_empty", "delete_unknown_id_is_404", "delete_with_wrong_key_is_403", "create_user_answers_201"]
    result = grade_source(tmp_path, source, only=only)
    statuses = {c.id: (c.status, c.kind) for c in result.checks}
    assert statuses == {
        "list_starts_empty": ("pass", "pass"),
        "create_user_answers_201": ("pass", "pass"),
        "delete_with_wrong_key_is_403": ("error", "timeout"),
        "delete_unknown_id_is_404": ("error", "timeout"),
    }
    assert "DELETE /users/" in result.checks[[c.id for c in result.checks].index("delete_unknown_id_is_404")].message


def test_busy_async_handler_is_stopped(tmp_path):
    source = SOLUTION.replace(
        "def list_users(repo: UserRepository = Depends(get_user_repo)) -> list[dict]:",
        "async def list_users(repo: UserRepository = Depends(get_user_repo)) -> list[dict]:\n"
        "    while True:\n        pass",
    )
    result = grade_source(tmp_path, source, only=["list_starts_empty", "settings_defaults_and_values"])
    assert [(c.id, c.status, c.kind) for c in result.checks] == [
        ("settings_defaults_and_values", "pass", "pass"),
        ("list_starts_empty", "error", "timeout"),
    ]


@pytest.fixture(params=["subprocess", "fork-server"])
def spawn_method(request, monkeypatch):
    """Both ways of starting a grading process: a fresh interpreter, or a fork of the warm
    server (used when several problems are graded); each must isolate the same way."""
    monkeypatch.setenv("WORKBOOK_SPAWN", request.param)
    return request.param


def test_os_exit_in_a_handler_fails_that_check_and_the_rest_still_run(tmp_path, spawn_method):
    source = SOLUTION.replace(
        "    return repo.list_users()", "    import os\n    os._exit(0)\n    return repo.list_users()"
    )
    only = ["list_starts_empty", "settings_defaults_and_values", "get_settings_reads_environment"]
    result = grade_source(tmp_path, source, only=only)
    assert [(c.id, c.status, c.kind) for c in result.checks] == [
        ("settings_defaults_and_values", "pass", "pass"),
        ("get_settings_reads_environment", "pass", "pass"),
        ("list_starts_empty", "error", "exit"),
    ]


def test_environment_changes_stay_in_the_grading_process(tmp_path, spawn_method):
    leaking = solution_with(after="\nimport os\nos.environ['LEAKED_FROM_LEARNER'] = '1'\n")
    assert grade_source(tmp_path, leaking, only=["list_starts_empty"]).status == "pass"
    assert "LEAKED_FROM_LEARNER" not in os.environ


def test_sys_exit_in_a_handler_is_a_failure_that_names_it(tmp_path):
    source = SOLUTION.replace("    return repo.list_users()", "    raise SystemExit(3)")
    result = grade_source(tmp_path, source, only=["list_starts_empty"])
    assert result.checks[0].status == "fail"
    # On a real server the SystemExit itself comes back, with its line; TestClient's worker
    # thread turned it into a bare cancellation, which the message explained with "sys.exit()".
    message = result.checks[0].message
    assert "SystemExit" in message or "sys.exit(" in message
    assert "in list_users" in message


def test_conftest_in_the_graded_folder_is_never_loaded(tmp_path):
    forcing = (
        "import pytest\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
        "    outcome = yield\n    report = outcome.get_result()\n    report.outcome = 'passed'\n"
    )
    stub = (ROOT / "exercises" / P1.slug / "app.py").read_text(encoding="utf-8")
    extra = {"conftest.py": forcing, "pytest.ini": "[pytest]\naddopts = --collect-only\n"}
    result = grade_source(tmp_path, stub, extra=extra)
    assert result.status == "fail"
    assert result.passed < result.total


def test_pytest_addopts_from_the_environment_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_ADDOPTS", "--collect-only")
    result = grade(P1, SOLUTIONS)
    assert result.status == "pass"


def test_megabytes_of_output_do_not_disturb_grading(tmp_path):
    noisy = solution_with(after="\nprint('x' * 5_000_000)\n").replace(
        "    return repo.list_users()", "    print('y' * 5_000_000)\n    return repo.list_users()"
    )
    result = grade_source(tmp_path, noisy)
    assert result.status == "pass"


def test_files_written_by_learner_code_stay_out_of_the_workbook(tmp_path):
    writer = solution_with(after="\nopen('leaked.txt', 'w').write('x')\n")
    root = tmp_path / "graded"
    result = grade_source(tmp_path, writer, only=["list_starts_empty"])
    assert result.status == "pass"
    assert not (ROOT / "leaked.txt").exists()
    assert not (root / P1.slug / "leaked.txt").exists()
    assert not list(root.rglob("__pycache__"))


def test_missing_problem_folder_is_an_error_for_that_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    result = grade(P1, tmp_path / "empty")
    assert result.status == "error"
    assert "There is no folder p1_dependency_chain/" in result.checks[0].message


@pytest.mark.parametrize("seed", [1, 2])
def test_check_list_is_the_same_whatever_the_code_does(tmp_path, seed):
    broken = grade_source(tmp_path / "broken", "raise ImportError('nope')\n", seed=seed)
    passing = grade(P1, SOLUTIONS, seed=seed)
    assert [c.id for c in broken.checks] == [c.id for c in passing.checks]


FORGER = """
import glob, json, os, tempfile
for path in glob.glob(os.path.join(tempfile.gettempdir(), "workbook-*", "**", "events*"), recursive=True) + glob.glob(
    os.path.join(os.getcwd(), "..", "events*")
):
    with open(path, "a") as channel:
        for check_id in CHECK_IDS:
            channel.write(json.dumps({"event": "start", "id": check_id}) + "\\n")
            channel.write(json.dumps({"event": "result", "id": check_id, "status": "pass"}) + "\\n")
"""


def test_forged_events_written_by_learner_code_are_ignored(tmp_path):
    stub = (ROOT / "exercises" / P1.slug / "app.py").read_text(encoding="utf-8")
    ids = [check.id for check in discover_checks(P1)]
    result = grade_source(tmp_path, stub + f"\nCHECK_IDS = {ids!r}\n" + FORGER)
    assert result.status == "fail"
    assert result.passed < result.total

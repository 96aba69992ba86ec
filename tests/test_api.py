"""workbook.api: the commands' work as library functions, called here without click; and
the facts the CLI reads once (the manifest, a problem number)."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import EXERCISES, MANIFEST, SOLUTIONS

from workbook import api, cli, grading, manifest
from workbook.report import Style
from workbook.state import hints_revealed, load_state

P1 = MANIFEST.by_number(1)


@pytest.fixture(autouse=True)
def own_state(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))


def test_check_grades_and_returns_the_results_without_printing(capsys):
    run = api.check(MANIFEST, [P1], exercises=EXERCISES, solutions=SOLUTIONS, keyword="list_starts_empty", seed=7)

    assert run.exit_code == 0, [result.checks for result in run.results]
    assert [(result.problem.number, result.seed) for result in run.results] == [(1, 7)]
    assert [(check.id, check.status) for check in run.results[0].checks] == [("list_starts_empty", "pass")]
    assert run.plan.learner_run is False
    assert run.after == run.plan.before
    assert capsys.readouterr().out == ""


def test_check_takes_relative_folders_from_the_working_directory(monkeypatch):
    monkeypatch.chdir(SOLUTIONS.parent)

    run = api.check(MANIFEST, [P1], exercises=Path("exercises"), solutions=Path("solutions"), keyword="list_starts")

    assert run.exit_code == 0, [result.checks for result in run.results]
    assert run.plan.target == SOLUTIONS.resolve()


def test_a_learner_check_records_the_progress(tmp_path):
    exercises = tmp_path / "exercises"
    shutil.copytree(SOLUTIONS, exercises, ignore=shutil.ignore_patterns("__pycache__"))

    run = api.check(MANIFEST, [P1], exercises=exercises, keyword="list_starts_empty")

    assert run.exit_code == 0, [result.checks for result in run.results]
    assert run.plan.learner_run is True
    assert run.save_note is None
    assert load_state().problems[P1.slug].checks["list_starts_empty"] == "pass"


def test_plan_check_names_the_option_of_a_keyword_that_matches_nothing():
    with pytest.raises(api.UsageProblem) as raised:
        api.plan_check(MANIFEST, [P1], exercises=EXERCISES, keyword="no_such_check")

    assert raised.value.option == "-k"
    assert str(raised.value).startswith("no check id contains 'no_such_check'. The ids are: ")


def test_plan_check_refuses_solutions_and_a_folder_together(tmp_path):
    with pytest.raises(api.UsageProblem) as raised:
        api.plan_check(MANIFEST, [P1], exercises=EXERCISES, solutions=SOLUTIONS, directory=tmp_path)

    assert (str(raised.value), raised.value.option) == ("Use either --solutions or --dir, not both.", None)


def test_plan_check_of_another_folder_needs_no_exercises_argument():
    """The README: `solutions=` or `directory=` instead of `exercises=` grades another folder."""
    plan = api.plan_check(MANIFEST, [P1], directory=SOLUTIONS)

    assert (plan.target, plan.submission, plan.learner_run) == (SOLUTIONS, True, False)
    with pytest.raises(api.NoWorkspace):
        api.plan_check(MANIFEST, [P1])


def test_hint_reveals_one_more_hint_each_call_and_remembers_it():
    first = api.hint(P1)
    second = api.hint(P1)

    assert first.shown == [(0, P1.hints[0])]
    assert second.shown == [(1, P1.hints[1])]
    assert (second.seen, second.left) == (2, len(P1.hints) - 2)
    assert hints_revealed(load_state(), P1.slug) == 2


def test_reset_of_untouched_starter_files_changes_nothing(tmp_path):
    exercises = tmp_path / "exercises"
    shutil.copytree(EXERCISES, exercises, ignore=shutil.ignore_patterns("__pycache__"))

    done = api.reset(P1, exercises)

    assert (done.changed, done.backup) == ([], None)


def test_watch_stops_after_max_runs_and_returns_the_exit_status(tmp_path):
    exercises = tmp_path / "exercises"
    shutil.copytree(EXERCISES, exercises, ignore=shutil.ignore_patterns("__pycache__"))
    shown: list[str] = []

    code = api.watch(MANIFEST, P1, exercises, style=Style(color=False, unicode=False), max_runs=1, echo=shown.append)

    assert code == 1, "\n".join(shown)
    assert shown[-1].startswith(f"Problem 1 · {P1.title}  ("), shown[-1]
    assert "checks passed · graded in" in shown[-1]


def test_doctor_returns_its_findings_and_exit_status(tmp_path):
    report = api.doctor(tmp_path / "no-exercises", SOLUTIONS, grading=False)

    assert report.exit_code == 1
    missing = f"the exercises folder {tmp_path / 'no-exercises'} is missing"
    assert missing in [finding.what for finding in report.problems]


def test_dev_check_refuses_a_problem_number_the_manifest_does_not_have():
    result = CliRunner().invoke(cli.main, ["dev", "check", "--static", "-p", "9"])

    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '-p' / '--problem': '9' is not a problem number; choose one of 1, 2, 3, 4, 5, 6."
    )


def test_a_check_reads_the_manifest_once(monkeypatch):
    reads = []
    real_loads = tomllib.loads

    def counting_loads(text, **options):
        if "[[problems]]" in text:
            reads.append(1)
        return real_loads(text, **options)

    monkeypatch.setattr(manifest.tomllib, "loads", counting_loads)
    result = CliRunner().invoke(cli.main, ["check", "1", "--solutions", "-k", "list_starts_empty", "-q"])

    assert result.exit_code == 0, result.output
    assert len(reads) == 1


def test_the_graders_get_the_problem_and_seed_they_are_given(monkeypatch):
    monkeypatch.delenv(grading.SEED_ENV, raising=False)
    monkeypatch.setattr(grading, "this_run", grading.GradedRun())

    grading.configure(P1, 1234)

    assert (grading.this_run.problem, grading.seed()) == (P1, 1234)
    assert grading.SEED_ENV not in os.environ


def test_check_ids_come_from_the_test_names():
    assert manifest.check_id_of("test_login_ok") == "login_ok"
    assert manifest.check_id_of("graders/p1/test_x.py::test_login_ok") == "login_ok"


def test_stub_may_pass_is_read_once_with_the_rest_of_the_manifest(tmp_path):
    source = (manifest.ROOT / "workbook.toml").read_text(encoding="utf-8")
    path = tmp_path / "workbook.toml"
    path.write_text(source.replace("bonus = true", "bonus = true\nstub_may_pass = true"), encoding="utf-8")

    flags = {problem.number: problem.stub_may_pass for problem in manifest.load_manifest(path).problems}

    assert flags == {1: False, 2: False, 3: False, 4: False, 5: False, 6: True}
    path.write_text(source.replace("bonus = true", 'bonus = true\nstub_may_pass = "yes"'), encoding="utf-8")
    with pytest.raises(manifest.ManifestError, match="stub_may_pass must be true or false, not 'yes'"):
        manifest.load_manifest(path)

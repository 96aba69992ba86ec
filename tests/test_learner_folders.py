"""Folder awareness (issue 14, item 5): `check`, `watch`, `hint` and `run` without a
number, run inside `exercises/<slug>/` or below it, take that problem."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from support import MANIFEST, learner_workspace

from workbook import cli, watcher
from workbook.engine import discover_checks
from workbook.here import problem_here

P2, P3, P4 = (MANIFEST.by_number(number) for number in (2, 3, 4))


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
def exercises(tmp_path, monkeypatch):
    return learner_workspace(tmp_path, monkeypatch)


def invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def test_check_inside_a_problem_folder_grades_that_problem(exercises, monkeypatch):
    monkeypatch.chdir(exercises / P2.slug)
    first = discover_checks(P2)[0]
    result = invoke("check", "-k", first.id)
    assert result.exit_code == 1, result.output  # the untouched stub
    assert f"Problem 2 · {P2.title}" in result.output, result.output
    assert "Problem 1" not in result.output


def test_hint_below_a_problem_folder_takes_that_problem(exercises, monkeypatch):
    deep = next(path for path in (exercises / P4.slug).rglob("*") if path.is_dir())
    monkeypatch.chdir(deep)
    result = invoke("hint")
    assert result.exit_code == 0, result.output
    assert f"Problem 4 · {P4.title}" in result.output


def test_run_inside_a_problem_folder_serves_that_problem(exercises, monkeypatch):
    monkeypatch.chdir(exercises / P3.slug)
    result = invoke("run", "--dry-run", "--port", "8123")
    assert result.exit_code == 0, result.output
    assert f"Serving problem 3 · {P3.title}" in result.output


def test_watch_inside_a_problem_folder_stays_on_that_problem(exercises, monkeypatch):
    watched = []

    def pretend_to_watch(self, problem, *, max_runs=None, stay=False):
        watched.append((problem.number, stay))
        return 0

    monkeypatch.setattr(watcher.Watcher, "run", pretend_to_watch)
    monkeypatch.chdir(exercises / P3.slug)
    result = invoke("watch")
    assert result.exit_code == 0, result.output
    assert watched == [(3, True)]


def test_a_folder_that_is_no_problem_s_means_no_problem(tmp_path):
    (tmp_path / "exercises" / "notes").mkdir(parents=True)
    roots = [tmp_path / "exercises"]
    assert problem_here(MANIFEST, roots, tmp_path / "exercises") is None
    assert problem_here(MANIFEST, roots, tmp_path / "exercises" / "notes") is None
    assert problem_here(MANIFEST, roots, tmp_path) is None
    assert problem_here(MANIFEST, roots, tmp_path / "exercises" / P2.slug / "deeper") == P2

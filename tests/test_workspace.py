"""`workbook init` and finding the learner's workspace (issue 12, item 5). The wheel
itself is built and installed in tests/test_wheel.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from support import MANIFEST

from workbook import cli, sandbox, starters, workspace


def invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture(autouse=True)
def no_state_override(monkeypatch):
    """The state folder comes from the workspace here, not from WORKBOOK_STATE_DIR."""
    monkeypatch.delenv(workspace.STATE_DIR_ENV, raising=False)


def test_init_writes_every_starter_file_and_the_marker_and_says_what_to_run_next(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("init", "mine")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Created the workspace mine with {len(MANIFEST.problems)} problems in mine/exercises/.\n"
        "Next: cd mine && workbook check 1\n"
    )
    for problem in MANIFEST.problems:
        written = starters.read_folder(tmp_path / "mine" / "exercises" / problem.slug)
        assert written == starters.starter_files(problem.slug), problem.slug
    assert (tmp_path / "mine" / workspace.MARKER).is_file()


def test_init_without_a_folder_uses_the_default_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("init")
    assert result.exit_code == 0, result.output
    assert f"Next: cd {workspace.DEFAULT_DIR} && workbook check 1" in result.output
    assert (tmp_path / workspace.DEFAULT_DIR / workspace.MARKER).is_file()


def test_init_refuses_a_folder_that_holds_anything_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my work")
    result = invoke("init", "mine")
    assert result.exit_code == 2, result.output  # a usage error: the folder given must change
    assert result.output == (
        "Error: mine already exists and is not empty; nothing was written. "
        "Choose a new folder, or `cd mine` if it is your workspace.\n"
    )
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_commands_run_below_a_workspace_use_its_exercises_and_state(tmp_path, monkeypatch):
    workspace.create(tmp_path / "mine")
    below = tmp_path / "mine" / "exercises" / MANIFEST.problems[0].slug
    monkeypatch.chdir(below)
    assert workspace.find_workspace() == tmp_path / "mine"
    assert workspace.exercises_folder() == tmp_path / "mine" / "exercises"
    assert workspace.state_folder() == tmp_path / "mine" / ".workbook"


def test_outside_a_checkout_a_folder_without_the_marker_has_no_workspace(tmp_path, monkeypatch):
    monkeypatch.setattr(workspace, "IN_CHECKOUT", False)  # as after a wheel install
    monkeypatch.chdir(tmp_path)
    assert workspace.find_workspace() is None
    result = invoke("status")
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"Error: no workbook workspace in {tmp_path} or above it; "
        "run `workbook init DIR` to create one, then `cd DIR`.\n"
    )


def test_in_a_checkout_the_checkout_is_the_workspace_outside_any_marked_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert workspace.IN_CHECKOUT
    assert workspace.find_workspace() == workspace.CODE_ROOT
    assert workspace.BUNDLE == workspace.CODE_ROOT


def test_sandboxed_code_sees_an_empty_folder_where_a_wheel_keeps_the_solutions(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "workbook"
    solutions = package / "bundled" / "solutions"
    solutions.mkdir(parents=True)
    monkeypatch.setattr(sandbox, "BUNDLED_SOLUTIONS", solutions)
    command = sandbox.bubblewrap_command(["python"], tmp_path / "scratch", [package])
    bind = command.index(str(package))
    hide = command.index(str(solutions))
    assert command[bind - 1 : bind + 1] == ["--ro-bind", str(package)]
    assert command[hide - 1 : hide + 1] == ["--tmpfs", str(solutions)]
    assert hide > bind  # mounted over the bound package, not under it


def test_in_a_checkout_the_solutions_are_not_bound_so_nothing_is_hidden(tmp_path):
    command = sandbox.bubblewrap_command(["python"], tmp_path / "scratch", [workspace.PACKAGE])
    assert str(workspace.BUNDLED_SOLUTIONS) not in command


def test_outside_any_workspace_check_grades_the_solutions_and_other_folders_but_not_its_own(tmp_path, monkeypatch):
    # Grading the bundled solutions or a submission records no progress, so a wheel user
    # (or a CI job) needs no workspace for it; only the learner's own exercises/ do.
    monkeypatch.setattr(workspace, "IN_CHECKOUT", False)
    monkeypatch.chdir(tmp_path)
    first = MANIFEST.problems[0]
    solutions = invoke("check", "1", "--solutions", "-q")
    assert solutions.exit_code == 0, solutions.output
    assert solutions.output.startswith(f"Problem 1 · {first.title}"), solutions.output
    own = invoke("check", "1")
    assert own.exit_code == 2, own.output
    assert own.output == (
        f"Error: no workbook workspace in {tmp_path} or above it; "
        "run `workbook init DIR` to create one, then `cd DIR`.\n"
    )
    assert not (tmp_path / workspace.STATE).exists()

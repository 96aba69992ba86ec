"""Where things are: the bundled problems, and the learner's workspace.

Two questions, answered here and nowhere else:

- *Where are the bundled problems?* The manifest, graders/, solutions/ and the pristine
  exercises/. In a checkout (the README's editable install) they are the repository root.
  A wheel carries them inside the package, in `workbook/bundled/`, written at build time
  by setup.py: exercises/ from the starter archive (never the builder's working copy),
  graders/ and solutions/ limited to their published files.
- *Where is the learner's workspace?* The folder holding the exercises/ the learner edits
  and the state folder `.workbook/`. It is the nearest folder, at or above the current
  directory, that `workbook init` marked with `workbook-workspace.toml` (as rustlings
  finds its exercises from the current directory). Outside any such folder, a checkout is
  its own workspace; a wheel install has none, and the learner is told to run `workbook
  init DIR`. Grading another folder (`check --dir`, `check --solutions`, `grade`) needs
  no workspace: it records no progress.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbook import __version__

PACKAGE = Path(__file__).resolve().parent
# The folder `import workbook` is found in: the checkout, or site-packages. Child
# processes put it on sys.path.
CODE_ROOT = PACKAGE.parent
# Only a built wheel has workbook/bundled/; a checkout (or editable install) never does.
IN_CHECKOUT = not (PACKAGE / "bundled" / "workbook.toml").is_file()
BUNDLE = CODE_ROOT if IN_CHECKOUT else PACKAGE / "bundled"
MANIFEST_PATH = BUNDLE / "workbook.toml"
BUNDLED_GRADERS = BUNDLE / "graders"
BUNDLED_SOLUTIONS = BUNDLE / "solutions"
BUNDLED_EXERCISES = BUNDLE / "exercises"

MARKER = "workbook-workspace.toml"
EXERCISES = "exercises"
STATE = ".workbook"
STATE_DIR_ENV = "WORKBOOK_STATE_DIR"
DEFAULT_DIR = "fastapi-advanced-workbook"
# No click here: the grading child imports this module (through the manifest), and
# importing click would cost it tens of milliseconds. The CLI turns these errors into
# messages (workbook/workspace_commands.py).


class NoWorkspace(Exception):
    """Run outside any workspace, in a wheel install: nothing to grade or record."""

    def __init__(self) -> None:
        super().__init__(
            f"no workbook workspace in {_current_directory()} or above it; "
            "run `workbook init DIR` to create one, then `cd DIR`."
        )


def _current_directory() -> str:
    try:
        return str(Path.cwd())
    except OSError:
        return "this folder"


def find_workspace(start: Path | None = None) -> Path | None:
    """The workspace for `start` (default: the current directory): the nearest folder at
    or above it holding the marker, else the checkout in a checkout, else None."""
    try:
        here = (start or Path.cwd()).resolve()
    except OSError:  # the current directory was deleted
        here = None
    for folder in (here, *here.parents) if here else ():
        if (folder / MARKER).is_file():
            return folder
    return CODE_ROOT if IN_CHECKOUT else None


def workspace_root() -> Path:
    """The workspace for the current directory; raises NoWorkspace when there is none."""
    found = find_workspace()
    if found is None:
        raise NoWorkspace()
    return found


def exercises_folder() -> Path:
    """The exercises/ folder the learner edits; raises NoWorkspace outside a workspace."""
    return workspace_root() / EXERCISES


def exercises_folder_if_any() -> Path | None:
    """The exercises/ folder the learner edits, or None outside a workspace: for commands
    that also grade other folders (`check --dir`, `check --solutions`), which record no
    progress and so need no workspace."""
    found = find_workspace()
    return None if found is None else found / EXERCISES


def state_folder() -> Path:
    """Where progress, hints and backups are kept: WORKBOOK_STATE_DIR, else the
    workspace's `.workbook/`; raises NoWorkspace outside a workspace without the variable."""
    override = os.environ.get(STATE_DIR_ENV)
    return Path(override) if override else workspace_root() / STATE


class WorkspaceExists(Exception):
    """`workbook init` into a folder that already holds something."""


def create(folder: Path) -> list[str]:
    """Make `folder` a fresh workspace: the starter files of every problem under
    exercises/ (from workbook/starters.json, the same source as `workbook reset`), the
    marker and a .gitignore. Returns the problem folders written.

    Raises WorkspaceExists, writing nothing, when `folder` exists and is not empty: init
    never overwrites a learner's work."""
    from workbook.starters import load, starter_files  # starters imports this module: a cycle at the top

    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise WorkspaceExists(
            f"{folder} already exists and is not empty; nothing was written. "
            f"Choose a new folder, or `cd {folder}` if it is your workspace."
        )
    slugs = sorted(load()["problems"])
    for slug in slugs:
        for relative, data in starter_files(slug).items():
            path = folder / EXERCISES / slug / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (folder / ".gitignore").write_text(f"{STATE}/\n__pycache__/\n", encoding="utf-8")
    (folder / MARKER).write_text(_marker_text(), encoding="utf-8")
    return slugs


def _marker_text() -> str:
    return (
        "# This file marks a FastAPI Advanced workbook workspace: `workbook` commands run in\n"
        "# this folder or below it grade exercises/ here and keep your progress in .workbook/.\n"
        "# Written by `workbook init`; delete it only with the folder.\n"
        f'workbook_version = "{__version__}"\n'
    )

"""The graded target: what of a submission the engine grades, and under which name.

Issue 11, item 3. A submission is graded from a copy that keeps the learner's work (every
regular `.py` file of each problem folder, so problem 4's own `schemas.py` or `security.py`
come along, plus the data files the problem's manifest entry allows) and leaves out what
could change how grading runs rather than what is graded: `conftest.py`, pytest/tox/setup
configuration, `sitecustomize`/`usercustomize`, `.pth` files, a `graders/` folder, links,
special files and oversized files. In the sandbox the copy is mounted at the submission's
own path, so every message names the learner's files directly.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workbook.manifest import Problem

# A learner file larger than this cannot be a reasonable answer.
MAX_FILE_BYTES = 2_000_000
# Bounds a submission that is a tarpit of tiny files or deep folders.
MAX_FILES_PER_PROBLEM = 200
MAX_DEPTH = 8
# Loaded by Python or pytest on their own, never by the learner's app.
LEFT_OUT_NAMES = frozenset(
    {
        "conftest.py",
        "sitecustomize.py",
        "usercustomize.py",
        "setup.py",
        "setup.cfg",
        "pyproject.toml",
        "pytest.ini",
        "tox.ini",
        "noxfile.py",
    }
)
LEFT_OUT_FOLDERS = frozenset({"graders", "__pycache__", ".git", ".venv", "venv", "node_modules"})


class TargetError(Exception):
    """A submission that cannot be graded as given (e.g. its folder is a link)."""


@dataclass(frozen=True)
class GradedTarget:
    """`root` holds the graded files, laid out like exercises/; `shown` is the submission's
    own folder, the one every message and report names."""

    root: Path
    shown: Path

    @property
    def is_copy(self) -> bool:
        return self.root != self.shown


def copy_submission(source_root: Path, problems: Iterable[Problem], destination_root: Path) -> GradedTarget:
    """Copy the learner's work of each problem from `source_root` into `destination_root`.
    Raises TargetError when `source_root` is itself a link. A problem folder that is missing
    or a link stays missing in the copy (the engine reports it as such)."""
    refuse_link(source_root)
    shown = source_root.resolve()
    destination_root.mkdir(parents=True, exist_ok=True)
    for problem in problems:
        folder = shown / problem.slug
        if folder.is_symlink() or not folder.is_dir():
            continue
        destination = destination_root / problem.slug
        destination.mkdir(parents=True, exist_ok=True)
        for relative in learner_files(folder, problem)[:MAX_FILES_PER_PROBLEM]:
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / relative, destination / relative, follow_symlinks=False)
    return GradedTarget(destination_root, shown)


def refuse_link(folder: Path) -> None:
    """Raise TargetError when the submission folder is itself a symbolic link: grading it
    would grade whatever it points to, which may be anyone's files."""
    if folder.is_symlink():
        raise TargetError(
            f"{folder} is a symbolic link, not a submission folder; grade the folder it points to "
            f"({os.path.realpath(folder)}) if you mean it, or copy the submission into place."
        )


def learner_files(folder: Path, problem: Problem) -> list[Path]:
    """The files of `folder` that are graded, relative to it, in path order."""
    found: list[Path] = []
    for current, folders, files in os.walk(folder, followlinks=False):
        depth = len(Path(current).relative_to(folder).parts)
        # Pruned in place so os.walk never enters them.
        folders[:] = sorted(f for f in folders if _enterable(Path(current) / f, f, depth))
        for name in sorted(files):
            path = Path(current) / name
            relative = path.relative_to(folder)
            if _wanted(relative, problem) and _plain_small_file(path):
                found.append(relative)
    return found


def _enterable(path: Path, name: str, depth: int) -> bool:
    return depth < MAX_DEPTH and name not in LEFT_OUT_FOLDERS and not name.startswith(".") and not path.is_symlink()


def _wanted(relative: Path, problem: Problem) -> bool:
    name = relative.name
    if name in LEFT_OUT_NAMES or name.endswith(".pth"):
        return False
    if name.endswith(".py") or relative.as_posix() in problem.files:
        return True
    return any(fnmatch.fnmatchcase(relative.as_posix(), pattern) for pattern in problem.data_files)


def _plain_small_file(path: Path) -> bool:
    """A regular file (not a link, FIFO, socket or device) no larger than MAX_FILE_BYTES."""
    try:
        info = path.lstat()
    except OSError:
        return False
    # A hard link (st_nlink > 1) may be another learner's file in a shared class folder: an
    # archive can carry one, and it would be graded as this learner's work.
    return stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES and info.st_nlink == 1

"""The checks on `workbook grade --out` that must all pass before a single submission is
graded, so that no problem with OUT surfaces after hours of grading.

- OUT can be created and written, and so can the folder of --html.
- OUT is not SUBMISSIONS itself (its reports folder would be graded as a submission);
  an OUT inside SUBMISSIONS is skipped as a submission, with a note.
- Only one `grade` writes into an OUT at a time (an advisory lock the kernel releases when
  the process ends, however it ends), and an OUT holding another shard's run is refused:
  two shards in one OUT would each write a gradebook of their own rows only.
- An OUT holding an earlier run is continued only with --resume: grading into it again
  would replace its gradebook and reports, which may be hours of work.

A problem with the folders given is a usage error (api.UnusableInput: one line, exit 2);
another `grade` holding the lock is not (exit 1).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO

import click

from workbook.api import UnusableInput
from workbook.gradebook import GRADEBOOK, REPORTS, RUN_FILE, Shard
from workbook.reportfiles import atomic_write
from workbook.safetext import shown_name

LOCK_FILE = ".grade.lock"
_held_locks: list[IO[str]] = []  # kept open for the life of the process: that is the lock


def check_out_folder(
    submissions_dir: Path, out_dir: Path, html_path: Path | None, shard: Shard | None, resume: bool
) -> list[Path]:
    """Validate OUT before grading; raise UnusableInput (or a click exception) saying what
    to change. Returns the folders of SUBMISSIONS not to grade (the one holding OUT, if any)."""
    submissions_root, out = submissions_dir.resolve(), out_dir.resolve()
    if submissions_root in (out, out / REPORTS):
        raise UnusableInput(f"--out {shown_name(str(out_dir))} is SUBMISSIONS itself; choose a folder beside it.")
    _writable(out_dir)
    if html_path is not None:
        _html_writable(html_path)
    _lock(out_dir)
    try:
        _same_run(out_dir, shard, resume)
    except BaseException:
        release_out_lock()  # refused: a later `grade` in this process (the library's user) may write here
        raise
    return _inside(submissions_root, out)


def release_out_lock() -> None:
    """Let another `grade` write into the OUT folders this process held (at the command's end)."""
    while _held_locks:
        _held_locks.pop().close()


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORTS).mkdir(exist_ok=True)
        probe = folder / REPORTS / ".write-test"
        atomic_write(probe, "")
        probe.unlink()
    except OSError as exc:
        raise UnusableInput(f"cannot write into the folder {shown_name(str(folder))}: {exc.strerror}") from None


def _html_writable(path: Path) -> None:
    parent = path.resolve().parent
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise click.BadParameter(
            f"cannot write a page at {shown_name(str(path))}: its folder is missing or read-only.",
            param_hint="--html",
        )


def _lock(out_dir: Path) -> None:
    handle = open(out_dir / LOCK_FILE, "a", encoding="utf-8")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise click.ClickException(
            f"another `workbook grade` is writing into {shown_name(str(out_dir))} right now; "
            "give each shard its own --out and combine them with `workbook merge`."
        ) from None
    _held_locks.append(handle)


def _same_run(out_dir: Path, shard: Shard | None, resume: bool) -> None:
    run = _earlier_run(out_dir)
    ours = f"{shard.index}/{shard.count}" if shard else None
    where = shown_name(str(out_dir))
    if run is None:
        if (out_dir / GRADEBOOK).exists() and not resume:
            raise UnusableInput(
                f"{where} already holds a {GRADEBOOK} that grading would replace; choose another --out "
                "(or move the file away)."
            )
        if resume:
            click.echo("Nothing to resume in OUT: grading every submission.", err=True)
        return
    theirs = run.get("shard")
    if theirs != ours:
        raise UnusableInput(
            f"{where} holds the run of shard {theirs or 'all'}, not {ours or 'all'}: "
            "give each shard its own --out and combine them with `workbook merge`."
        )
    if not resume:
        which = "a graded" if run.get("complete") is not False else "an interrupted"
        raise UnusableInput(
            f"{where} already holds {which} run, which grading again would replace: add --resume to continue it "
            "(reports whose files and graders did not change are kept), or choose another --out."
        )


def _earlier_run(out_dir: Path) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        run = json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
        if isinstance(run, dict):
            return run
    return None


def _inside(submissions_root: Path, out: Path) -> list[Path]:
    try:
        relative = out.relative_to(submissions_root)
    except ValueError:
        return []
    folder = submissions_root / relative.parts[0]
    click.echo(
        f"Note: --out is inside SUBMISSIONS; the folder {shown_name(folder.name)} is not graded as a submission.",
        err=True,
    )
    return [folder]

"""`workbook run`'s server process: uvicorn, its reloader and its worker, stopped as one
tree (issue 14, item 7: on SIGTERM or SIGINT the whole tree is gone within 2 s).

uvicorn runs in a process group of its own, so a signal sent to `workbook` alone (`kill`,
an IDE's stop button, a terminal's Ctrl-C) cannot leave the reloader or the worker
serving: we pass it on to the whole group as SIGTERM, and SIGKILL whatever is still
there after STOP_GRACE_S. A process the learner's code moves into a session of its own
escapes a group signal; that is outside what `run` promises.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType

STOP_GRACE_S = 1.2  # then SIGKILL: under 2 s in all, with room for the kill itself
POLL_S = 0.05
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stopper:
    """The signal handler: it only notes the request, so no exception can land in the
    middle of starting the server or of stopping it."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def serve_until_signal(command: list[str], cwd: Path, environment: dict[str, str]) -> int | None:
    """Run `command` in a new process group until it exits (its exit status) or we get
    SIGINT or SIGTERM (None); either way no process of its group is left running."""
    stopper = _Stopper()
    previous = {number: signal.signal(number, stopper) for number in STOP_SIGNALS}
    process = None
    try:
        process = subprocess.Popen(command, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, process_group=0)
        while not stopper.requested:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return process.wait(timeout=POLL_S)
        return None
    finally:
        if process is not None:
            stop_group(process)
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_group(process: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to `process`'s group (it leads it), SIGKILL to what is left after `grace`
    seconds, then reap `process`. Bounded: returns within `grace` plus the kill."""
    if not hasattr(os, "killpg"):  # Windows: no process groups to signal; the server alone
        _stop_process(process, grace)
        return
    group = process.pid
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(POLL_S)  # the worker may outlive the reloader by a moment
    _signal_group(group, signal.SIGKILL)
    process.wait()


def _stop_process(process: subprocess.Popen, grace: float) -> None:
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _signal_group(group: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nobody left in the group
        os.killpg(group, number)


def _group_alive(group: int) -> bool:
    """Whether a process of `group` still runs. Zombies don't count: an orphan's zombie
    waits for PID 1 to reap it, and in a container PID 1 may never do so."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    return any(_running_in_group(stat, group) for stat in proc.glob("[0-9]*/stat"))


def _running_in_group(stat: Path, group: int) -> bool:
    try:
        text = stat.read_text()
    except OSError:
        return False  # ended while we looked
    # The command name (in parentheses) may hold spaces; the fields after it are
    # state, ppid, pgrp (proc(5)).
    fields = text[text.rfind(")") + 2 :].split()
    return len(fields) > 2 and fields[2] == str(group) and fields[0] not in ("Z", "X")

"""Noticing that the learner's code is stuck, and saying where, in the grading process.

A check that never finishes used to cost its whole time limit, and every later check that
met the same hang cost it again. Here a check's body runs in a worker thread while the
grading thread samples, every POLL_S, where the learner's code is:

- on a thread's stack (a busy loop, a blocking call in a `def` endpoint, a busy `async def`), or
- in a pending asyncio task that waits *in the learner's code* on something that never comes
  (``await asyncio.sleep(...)``, ``Event().wait()``, a bare future). A task waiting in the
  framework (``await websocket.receive_text()``, ``call_next``) is an ordinary idle wait.

The same learner function on top for STUCK_S in a row is a hang: a correct solution of these
problems never stays in one of its functions for more than milliseconds, so STUCK_S keeps a
wide margin even on a machine three times slower. Once a check hung at a place, a later check
found at the same place for BLOCKED_S is reported as blocked by that hang instead
of waiting again (issue 14, item 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import inspect
import linecache
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

POLL_S = 0.05
STUCK_S = 1.5  # the same learner function on top this long is a hang
BLOCKED_S = 0.05  # at a place that already hung, this long is enough to say so
# Once a place hung, later checks are sampled this often: a blocked check is told in ~BLOCKED_S.
KNOWN_POLL_S = 0.01
TASKS_AFTER_S = 0.3  # looking through the pending tasks costs more; a correct check is often done by then
# Files of the event loop machinery a stuck learner coroutine waits in (asyncio.sleep, Event.wait).
ASYNCIO_DIR = Path(asyncio.__file__).resolve().parent

T = TypeVar("T")


@dataclass(frozen=True)
class Site:
    """Where the learner's code was: `file` relative to the graded folder's parent
    (``p1_dependency_chain/app.py``), the 1-based `line`, its `function` and source `code`;
    `running` when a thread was executing there, False when a coroutine was waiting there."""

    file: str
    line: int
    function: str
    code: str
    running: bool

    @property
    def key(self) -> str:
        """The place a hang is recognised by: the function, not the line (a busy loop spans lines)."""
        return f"{self.file}:{self.function}"

    def describe(self) -> str:
        verb = "was running" if self.running else "was waiting"
        code = f": {self.code}" if self.code else ""
        return f"your code {verb} at {self.file}, line {self.line}, in {self.function}{code}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Site | None:
        """A site from an event or an argument; None for anything malformed."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                str(data["file"]), int(data["line"]), str(data["function"]), str(data["code"]), bool(data["running"])
            )
        except (KeyError, TypeError, ValueError):
            return None


class HangStopped(Exception):
    """Raised inside a learner thread that was stuck, to stop it. An Exception, not a
    BaseException: it travels back through the framework into the grader's teardown, where
    pytest must handle it like any error. A loop that swallows it keeps burning CPU, and
    then the grading process is replaced instead (`stop_stuck_threads`)."""


class Hang(Exception):
    """A check's body did not finish: `site` is where the learner's code was, `blocked_by`
    the id of the earlier check that hung at the same place (None for a new hang)."""

    def __init__(self, seconds: float, site: Site | None, blocked_by: str | None = None) -> None:
        super().__init__(f"stopped after {seconds:.1f} s")
        self.seconds = seconds
        self.site = site
        self.blocked_by = blocked_by
        self.clean = True  # False when a learner thread still burns CPU: replace the process


# --- sampling -------------------------------------------------------------------------


class Sampler:
    """Finds the learner's code in the live threads and pending tasks of this process."""

    # Whether a file is the learner's, per graded folder, kept across checks: resolving every
    # new path on each sample made a check sampled every KNOWN_POLL_S twice as slow.
    _known_files: dict[Path | None, dict[str, bool]] = {}

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder.resolve() if folder is not None else None
        self._mine = Sampler._known_files.setdefault(self.folder, {})

    def is_learner_file(self, filename: str) -> bool:
        if self.folder is None or not filename:
            return False
        if filename not in self._mine:
            try:
                Path(filename).resolve().relative_to(self.folder)
                self._mine[filename] = True
            except (ValueError, OSError):
                self._mine[filename] = False
        return self._mine[filename]

    def site(self, frame: FrameType, running: bool) -> Site:
        assert self.folder is not None
        shown = f"{self.folder.name}/{Path(frame.f_code.co_filename).resolve().relative_to(self.folder)}"
        return Site(shown, frame.f_lineno, frame.f_code.co_name, _source_line(frame), running)

    def threads(self, ignore: set[int]) -> dict[int, Site]:
        """The innermost learner frame of every thread not in `ignore` (thread idents)."""
        found = {}
        for ident, frame in sys._current_frames().items():
            if ident in ignore:
                continue
            learner = self._innermost_learner(frame)
            if learner is not None:
                found[ident] = self.site(learner, running=True)
        return found

    def _innermost_learner(self, frame: FrameType | None) -> FrameType | None:
        while frame is not None:
            if self.is_learner_file(frame.f_code.co_filename):
                return frame
            frame = frame.f_back
        return None

    def waiting_tasks(self) -> list[Site]:
        """Learner coroutines that wait in asyncio or in their own code (never in the framework)."""
        found = []
        for task in list(_pending_tasks()):
            with contextlib.suppress(Exception):  # a task may finish while we look
                stack = await_chain(task)
                learner = [frame for frame in stack if self.is_learner_file(frame.f_code.co_filename)]
                if learner and self.waits_in_learner_code(stack):
                    found.append(self.site(learner[-1], running=False))
        return found

    def waits_in_learner_code(self, stack: list[FrameType]) -> bool:
        """Whether the innermost frame outside asyncio is the learner's: `await
        asyncio.sleep(...)` in their code, not `await websocket.receive_text()` (which waits
        in the framework, and only through it in asyncio)."""
        for frame in reversed(stack):
            filename = frame.f_code.co_filename
            if self.is_learner_file(filename):
                return True
            if not _in_asyncio(filename):
                return False
        return False

    def any_site(self, ignore: set[int]) -> Site | None:
        """Where the learner's code is now: a running thread first, else a waiting task."""
        threads = self.threads(ignore)
        if threads:
            return next(iter(threads.values()))
        tasks = self.waiting_tasks()
        return tasks[0] if tasks else None


def await_chain(task: Any, limit: int = 200) -> list[FrameType]:
    """The frames a pending task waits in, outermost first. Task.get_stack() stops at the
    task's own coroutine; the learner's code is usually several awaits further in."""
    frames: list[FrameType] = []
    awaited = task.get_coro()
    while awaited is not None and len(frames) < limit:
        if type(awaited).__name__ in ("async_generator_asend", "async_generator_athrow"):
            # `await anext(gen)` (an @asynccontextmanager such as a lifespan, before its yield):
            # the awaitable only refers to its generator, which holds the frame.
            awaited = next((o for o in gc.get_referents(awaited) if inspect.isasyncgen(o)), None)
            continue
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        frame = frame or getattr(awaited, "ag_frame", None)
        if frame is not None:
            frames.append(frame)
        awaited = (
            getattr(awaited, "cr_await", None)
            or getattr(awaited, "gi_yieldfrom", None)
            or getattr(awaited, "ag_await", None)
        )
    return frames


def _pending_tasks() -> list[Any]:
    tasks = getattr(asyncio.tasks, "_all_tasks", None) or getattr(asyncio.tasks, "_scheduled_tasks", None) or ()
    return [task for task in list(tasks) if not task.done()]


@functools.lru_cache(maxsize=512)
def _in_asyncio(filename: str) -> bool:
    try:
        Path(filename).resolve().relative_to(ASYNCIO_DIR)
    except ValueError:
        return False
    return True


def _source_line(frame: FrameType) -> str:
    return linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()[:120]


# --- running a check's body -----------------------------------------------------------


class Watch:
    """Follows one check's body: the learner function on top, and since when."""

    def __init__(self, sampler: Sampler, ignore: set[int], known: tuple[Site, str] | None) -> None:
        self.sampler = sampler
        self.ignore = ignore
        self.known = known
        self.top: str | None = None
        self.since = 0.0

    def verdict(self, now: float, elapsed: float) -> Hang | None:
        """A Hang when the body is stuck (or waits where an earlier check hung), else None."""
        site = next(iter(self.sampler.threads(self.ignore).values()), None)
        look_at_tasks = elapsed >= TASKS_AFTER_S or (self.known is not None and not self.known[0].running)
        if site is None and look_at_tasks:
            site = next(iter(self.sampler.waiting_tasks()), None)
        if site is None or site.key != self.top:
            self.top, self.since = (site.key if site else None), now
            return None
        held = now - self.since
        if self.known is not None and site.key == self.known[0].key and held >= BLOCKED_S:
            return Hang(elapsed, site, blocked_by=self.known[1])
        if held >= STUCK_S:
            return Hang(elapsed, site)
        return None


def run_check(
    action: Callable[[], T],
    limit: float,
    folder: Path | None,
    known: tuple[Site, str] | None = None,
    sampler: Any = None,
) -> T:
    """Run a check's body under `limit` seconds, stopping early when the learner's code is
    stuck; `known` is (the site, the check id) of an earlier hang in this run. Raises Hang
    (with where the learner's code was) when the body did not finish, after stopping the
    stuck learner threads it can (see `stop_stuck_threads`). `sampler`: where to look for
    the learner's code (default: this process; workbook.hostkit.RemoteSampler: the check's
    app hosts, which it stops by ending them)."""
    sampler = sampler or Sampler(folder)
    ignore = {threading.get_ident(), *sampler.threads(set())}  # threads stuck before this check
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # noqa: BLE001 - handed back to the grading thread
            outcome["error"] = exc

    worker = threading.Thread(target=body, daemon=True, name="workbook-check")
    started = time.monotonic()
    worker.start()
    watch = Watch(sampler, ignore, known)
    poll = KNOWN_POLL_S if known is not None else POLL_S
    while True:
        worker.join(poll)
        if not worker.is_alive():
            break
        now = time.monotonic()
        elapsed = now - started
        hang = watch.verdict(now, elapsed)
        if hang is None and elapsed >= limit:
            hang = Hang(elapsed, sampler.any_site(ignore))
        if hang is not None:
            hang.clean = sampler.stop() if hasattr(sampler, "stop") else stop_stuck_threads(sampler, ignore)
            raise hang
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def stop_stuck_threads(sampler: Sampler, ignore: set[int], settle_s: float = 0.6) -> bool:
    """Stop the learner's stuck code: raise HangStopped in every thread running it, and
    cancel every task waiting in it. True when nothing is left that would disturb the next
    check: no learner thread still burning CPU (one blocked in a C call, say `time.sleep`,
    only gets the exception when the call returns, and costs nothing meanwhile), and no
    waiting task (its request would keep the test client from closing)."""
    stuck = sampler.threads(ignore)
    for ident in stuck:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(HangStopped))
    cancelled: set[int] = set()
    waiting = _cancel_waiting_tasks(sampler, cancelled)
    deadline = time.monotonic() + settle_s
    while (stuck or waiting) and time.monotonic() < deadline:
        time.sleep(0.02)
        stuck = sampler.threads(ignore)
        # The check's body may still be sending requests that wait at the same place: cancel
        # those too, so the process stays clean and need not be replaced (~0.6 s).
        waiting = _cancel_waiting_tasks(sampler, cancelled)
    return not waiting and not any(_burns_cpu(ident) for ident in stuck)


def _cancel_waiting_tasks(sampler: Sampler, cancelled: set[int]) -> list[Any]:
    """Cancel each task waiting in the learner's code, once (`cancelled`: the ids of tasks
    already asked); returns every task still waiting there."""
    waiting = []
    for task in _pending_tasks():
        with contextlib.suppress(Exception):  # a task may finish, or its loop close, while we look
            stack = await_chain(task)
            if sampler.waits_in_learner_code(stack):
                if id(task) not in cancelled:
                    cancelled.add(id(task))
                    task.get_loop().call_soon_threadsafe(task.cancel)
                waiting.append(task)
    return waiting


def _burns_cpu(ident: int, window_s: float = 0.05) -> bool:
    """Whether a thread used CPU over a short window (a busy loop), as opposed to one
    blocked for good, which costs nothing and may stay."""
    if not hasattr(time, "pthread_getcpuclockid"):
        return True
    try:
        clock = time.pthread_getcpuclockid(ident)
        before = time.clock_gettime(clock)
        time.sleep(window_s)
        return time.clock_gettime(clock) - before > window_s / 5
    except OSError:
        return True

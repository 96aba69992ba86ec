"""Ctrl-C and SIGTERM while grading: the first one stops the grading cleanly (the command
catches KeyboardInterrupt, kills its grading processes and saves what was finished), a
second one exits at once, without a traceback.

SIGTERM (what CI runners and `timeout` send) is treated like Ctrl-C, so a cancelled CI job
still leaves its gradebook behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

from workbook import engine

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _first(signum: int, frame: FrameType | None) -> None:
    # The second signal's handler goes in before anything else runs: Ctrl-C pressed twice
    # in quick succession must not meet the clean-up half-way with a traceback.
    exit_on_next_signal()
    raise KeyboardInterrupt


def _second(signum: int, frame: FrameType | None) -> None:
    engine.stop_all()
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Within: SIGTERM raises KeyboardInterrupt in the main thread, like Ctrl-C, and the
    first of either makes the next one exit at once (those handlers then stay)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _first) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            if signal.getsignal(number) is _first:  # not interrupted: as before
                signal.signal(number, handler)


def exit_interrupted() -> NoReturn:
    """End the command with exit status 130 once what was finished is saved. Not through
    sys.exit: the interpreter's shutdown puts the default signal handlers back, and a
    Ctrl-C pressed again meanwhile would end the process by SIGINT instead of 130."""
    engine.release_all()  # what the atexit hook would do: fork servers and their scratch
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def exit_on_next_signal() -> None:
    """After the first Ctrl-C: a second Ctrl-C or SIGTERM kills the grading processes and
    exits at once (the clean-up in progress is abandoned, without a traceback)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _second)
        signal.signal(signal.SIGTERM, _second)

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
import threading
from collections.abc import Iterator
from types import FrameType

from workbook import engine

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _first(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _second(signum: int, frame: FrameType | None) -> None:
    engine.stop_all()
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Within: SIGTERM raises KeyboardInterrupt in the main thread, like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _first)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_on_next_signal() -> None:
    """After the first Ctrl-C: a second Ctrl-C or SIGTERM kills the grading processes and
    exits at once (the clean-up in progress is abandoned, without a traceback)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _second)
        signal.signal(signal.SIGTERM, _second)

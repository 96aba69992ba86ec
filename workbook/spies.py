"""Spies a grader installs where the learner's code runs: in an app host, from a problem's
probe menu (graders/<slug>/probes.py), or in the grading process for a grader that still
imports the learner's code (workbook/grading.py, `sqlite_connections`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

REAL_SQLITE_CONNECT = sqlite3.connect


class TrackedConnection(sqlite3.Connection):
    """A real SQLite connection that remembers whether close() was called."""

    was_closed = False

    def close(self) -> None:
        self.was_closed = True
        super().close()


def counting_connect(opened: list[Any]) -> Callable[..., sqlite3.Connection]:
    """A stand-in for sqlite3.connect that opens real connections (TrackedConnection unless
    the caller names its own factory) and appends each to `opened`, in order. Install it
    before the learner's import, so even `from sqlite3 import connect` is seen; the grader's
    own queries use REAL_SQLITE_CONNECT and are not counted."""

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", TrackedConnection)
        connection = REAL_SQLITE_CONNECT(*args, **kwargs)
        opened.append(connection)
        return connection

    return connect

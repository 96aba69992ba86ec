"""What `workbook grade` shows while it works and when it is done: a progress line with
done/total, the rate and an estimate of the time left, then a one-line summary naming the
slowest submissions and those that hit a time limit."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from workbook.documents import ClassDocument
from workbook.safetext import log_safe_line
from workbook.terminal import ERASE_LINE, is_terminal
from workbook.words import counted

SLOWEST_SHOWN = 3
LIMITED_SHOWN = 10  # one line, even when a whole class loops forever


class ClassProgress:
    """A progress line on `stream`, redrawn in place on a terminal; elsewhere (a CI log) a
    plain line every tenth of the class, so the log shows progress without flooding."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.kept = 0  # reports kept by --resume: done, but not part of the rate
        self.started = time.monotonic()
        self.tty = is_terminal(stream)
        self.step = max(1, total // 10)
        self.lock = threading.Lock()

    def keep(self, count: int) -> None:
        """`count` submissions need no grading (--resume kept their reports)."""
        with self.lock:
            self.done += count
            self.kept += count
            self.started = time.monotonic()
            if count:
                self.stream.write(
                    f"Kept {counted(count, 'report')} of the earlier run (their files and graders did not change).\n"
                )
                self.stream.flush()

    def __call__(self, _document: ClassDocument) -> None:
        with self.lock:
            self.done += 1
            if self.tty:
                self.stream.write(ERASE_LINE + self.line())
                self.stream.flush()
            elif self.done % self.step == 0 or self.done == self.total:
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def line(self) -> str:
        """E.g. "Graded 12/300 · 4.1 per minute · about 1 h 10 min left"."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (self.done - self.kept) / elapsed
        text = f"Graded {self.done}/{self.total} · {rate * 60:.1f} per minute"
        if rate > 0 and self.done < self.total:
            text += f" · about {duration((self.total - self.done) / rate)} left"
        return text

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()


def duration(seconds: float) -> str:
    """A duration as people say it: "45 s", "3 min 20 s", "1 h 10 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def closing_summary(documents: list[ClassDocument]) -> str:
    """One line: the slowest submissions, and those where a check hit a time limit."""
    timed = sorted(documents, key=lambda d: float(d.duration_s), reverse=True)
    slowest = ", ".join(
        f"{log_safe_line(d.submission)} ({duration(float(d.duration_s))})" for d in timed[:SLOWEST_SHOWN]
    )
    limited = [log_safe_line(d.submission) for d in documents if d.timed_out]
    text = f"Slowest: {slowest or 'none'}."
    if not limited:
        return text + " None hit a time limit."
    more = f" and {len(limited) - LIMITED_SHOWN} more" if len(limited) > LIMITED_SHOWN else ""
    return text + f" Hit a time limit: {', '.join(limited[:LIMITED_SHOWN])}{more}."

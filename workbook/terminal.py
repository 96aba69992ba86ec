"""Drawing on a terminal, for every command that talks to the learner (check, watch, status,
the milestones, doctor, grade's progress): marks, colours, progress bars and the lines
redrawn in place. Colour only on a terminal and never with NO_COLOR set (no-color.org);
Unicode marks only when the terminal's encoding can show them; piped output is plain text.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import click

from workbook.results import Status
from workbook.words import plural

BAR_WIDTH = 20
# Carriage return, then ECMA-48 "erase in line" (EL 2): the cursor's line is blank again.
ERASE_LINE = "\r\x1b[2K"
# Each status as a symbol (Unicode terminals), a word (elsewhere) and a colour.
MARKS = {
    Status.PASS: ("✔", "PASS", "green"),
    Status.FAIL: ("✘", "FAIL", "red"),
    Status.ERROR: ("!", "ERROR", "yellow"),
}


def is_terminal(stream: Any) -> bool:
    """True when `stream` is an interactive terminal (not a pipe, a file or a CI log)."""
    return bool(getattr(stream, "isatty", lambda: False)())


@dataclass(frozen=True)
class Style:
    color: bool
    unicode: bool

    @classmethod
    def detect(cls, stream: Any = None) -> Style:
        stream = stream or sys.stdout
        tty = is_terminal(stream)
        encoding = (getattr(stream, "encoding", "") or "").lower()
        return cls(color=tty and "NO_COLOR" not in os.environ, unicode=tty and "utf" in encoding)

    def mark(self, status: Status | str) -> str:
        """The mark of a graded status: "✔" or "PASS " (words padded to line up)."""
        symbol, word, colour = MARKS[Status(status)]
        text = symbol if self.unicode else f"{word:5}"
        return click.style(text, fg=colour, bold=True) if self.color else text

    def note(self) -> str:
        """The mark of a finding that is worth knowing but nothing to fix ("note ")."""
        return click.style("note", fg="yellow") if self.color else "note "

    def bold(self, text: str) -> str:
        return click.style(text, bold=True) if self.color else text

    def dim(self, text: str) -> str:
        return click.style(text, dim=True) if self.color else text

    def bar(self, done: int, total: int) -> str:
        """A progress bar BAR_WIDTH cells wide: "[████░░░…]", or "[####....]" in ASCII."""
        filled = round(BAR_WIDTH * done / total) if total else 0
        full, empty = ("█", "░") if self.unicode else ("#", ".")
        return "[" + full * filled + empty * (BAR_WIDTH - filled) + "]"


def human_progress(solved: int, total: int, style: Style, bonus: tuple[int, int] | None = None) -> str:
    """The progress line; `bonus` (solved, total) adds ", bonus 0 of 1" when the workbook has
    bonus problems, which the bar and the main count leave out."""
    line = f"Workbook progress {style.bar(solved, total)} {solved} of {total} {plural(total, 'problem')} solved"
    return line + (f", bonus {bonus[0]} of {bonus[1]}" if bonus and bonus[1] else "")


def new_screen(clear: bool, echo: Any = click.echo) -> None:
    """Start a fresh screen (`workbook watch`): clear the terminal, or, when clearing is off
    (tests, a log), print a rule so that runs stay apart."""
    if clear:
        click.clear()
    else:
        echo("-" * 60)


class LiveCount:
    """While grading, a one-line count of finished checks on stderr, redrawn in place, so a
    slow or hanging check never leaves the learner with a silent screen. Only on a
    terminal; piped output never sees it."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.enabled = total > 0 and is_terminal(self.stream)
        self.lock = threading.Lock()

    def check_done(self, _result: Any) -> None:
        with self.lock:
            self.done += 1
            self._draw()

    def _draw(self) -> None:
        if self.enabled:
            self.stream.write(f"\r  grading: {self.done}/{self.total} {plural(self.total, 'check')} done ")
            self.stream.flush()

    def echo(self, text: str) -> None:
        """Print `text` on stdout in place of the count (which comes back with the next check),
        under the lock, so no redraw lands in between."""
        with self.lock:
            if self.enabled:
                self.stream.write(ERASE_LINE)
                self.stream.flush()
            click.echo(text)

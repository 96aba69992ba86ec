"""How results are shown: a calm human summary on a terminal, plain text when piped or
when NO_COLOR is set, and one JSON document for CI."""

from __future__ import annotations

import os
import shlex
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from workbook import causes
from workbook.engine import CheckResult, ProblemResult
from workbook.manifest import ROOT, Problem
from workbook.safetext import last_lines, log_safe, shown_name
from workbook.words import plural

JSON_VERSION = 1
# Every report format `check --format` knows; workbook.formats renders all but text.
FORMATS = ("text", "json", "junit", "exercism", "gradescope", "github")
BAR_WIDTH = 20


@dataclass(frozen=True)
class Style:
    color: bool
    unicode: bool

    @classmethod
    def detect(cls, stream: Any = None) -> Style:
        stream = stream or sys.stdout
        tty = bool(getattr(stream, "isatty", lambda: False)())
        encoding = (getattr(stream, "encoding", "") or "").lower()
        return cls(color=tty and "NO_COLOR" not in os.environ, unicode=tty and "utf" in encoding)

    def mark(self, status: str) -> str:
        marks = {"pass": ("✔", "PASS", "green"), "fail": ("✘", "FAIL", "red"), "error": ("!", "ERROR", "yellow")}
        symbol, word, colour = marks[status]
        text = symbol if self.unicode else f"{word:5}"
        return click.style(text, fg=colour, bold=True) if self.color else text

    def bold(self, text: str) -> str:
        return click.style(text, bold=True) if self.color else text

    def dim(self, text: str) -> str:
        return click.style(text, dim=True) if self.color else text

    def bar(self, done: int, total: int) -> str:
        filled = round(BAR_WIDTH * done / total) if total else 0
        full, empty = ("█", "░") if self.unicode else ("#", ".")
        return "[" + full * filled + empty * (BAR_WIDTH - filled) + "]"


def describe_target(target: Path, problem: Problem) -> str:
    folder = target / problem.slug
    try:
        shown = folder.relative_to(Path.cwd())
    except ValueError:
        shown = folder
    return shown_name(str(shown))


def human_problem(result: ProblemResult, style: Style, *, verbose: bool = False, quiet: bool = False) -> str:
    problem = result.problem
    lines = [
        style.bold(f"Problem {problem.number} · {problem.title}")
        + style.dim(f"  ({describe_target(result.target, problem)})")
    ]
    if not quiet:
        shared = causes.groups(result.checks)
        shown: set[str] = set()
        for check in result.checks:
            if check.cause in shared:
                if check.cause not in shown:
                    shown.add(check.cause)
                    lines.extend(_cause_lines(shared[check.cause], result, style, verbose))
                continue
            lines.extend(_check_lines(check, result, style, verbose))
    summary = f"{result.passed}/{result.total} {plural(result.total, 'check')} passed" + style.dim(
        f" · seed {result.seed}"
    )
    lines.append(("  " + style.mark(result.status) + " " if quiet else "  ") + summary)
    return "\n".join(lines)


def _check_lines(check: CheckResult, result: ProblemResult, style: Style, verbose: bool) -> list[str]:
    lines = [f"  {style.mark(check.status)} {check.title}"]
    if check.status == "pass":
        return lines
    # Learner text is escaped before the workbook adds its own colours (workbook/safetext.py).
    for text in log_safe(check.message or "").splitlines():
        lines.append("      " + text)
    lines.extend(_verbose_lines(check, verbose))
    lines.append(style.dim(f"      re-run only this check: {rerun_for(result, check.id)}"))
    return lines


def _cause_lines(members: list[CheckResult], result: ProblemResult, style: Style, verbose: bool) -> list[str]:
    """A cause two or more checks share, shown once: the headline, the rest of the first
    check's message, then the checks it affects."""
    first = members[0]
    lines = [f"  {style.mark(first.status)} {log_safe(causes.headline(members))}"]
    lines.extend("      " + log_safe(text) for text in causes.details(members))
    lines.extend(_verbose_lines(first, verbose))
    if len(members) == result.total:
        lines.append("      it affects every check of this problem.")
    else:
        lines.append("      the checks it affects:")
        lines.extend(f"        {style.mark(check.status)} {check.title}" for check in members)
    lines.append(style.dim(f"      re-run only the first: {rerun_for(result, first.id)}"))
    return lines


def _verbose_lines(check: CheckResult, verbose: bool) -> list[str]:
    lines = []
    if verbose and check.traceback:
        lines.append("      full traceback:")
        lines.extend("        " + text for text in log_safe(check.traceback).splitlines())
    if verbose and check.output:
        lines.append("      your code printed:")
        lines.extend("        " + text for text in last_lines(log_safe(check.output)))
    return lines


def rerun_command(problem: Problem, check_id: str, *, target: Path | None = None, seed: int | None = None) -> str:
    """How to run one check alone; every report that names a failing check offers it. It
    grades the same folder (`--solutions`, `--dir`) with the same data (`--seed`) as the run."""
    words = ["workbook", "check", str(problem.number), "-k", check_id]
    if target is not None and target.resolve() == (ROOT / "solutions").resolve():
        words.append("--solutions")
    elif target is not None and target.resolve() != (ROOT / "exercises").resolve():
        words += ["--dir", shlex.quote(_shown_path(target))]
    if seed is not None:
        words += ["--seed", str(seed)]
    return " ".join(words)


def rerun_for(result: ProblemResult, check_id: str) -> str:
    """`rerun_command` for a check of `result`, with the folder and seed it was graded with."""
    return rerun_command(result.problem, check_id, target=result.target, seed=result.seed)


def _shown_path(folder: Path) -> str:
    try:
        shown = str(folder.resolve().relative_to(Path.cwd())) or "."
    except ValueError:
        shown = str(folder)
    return shown_name(shown)  # a submission's folder name may hold undecodable bytes


def human_progress(solved: int, total: int, style: Style, bonus: tuple[int, int] | None = None) -> str:
    """The progress line; `bonus` (solved, total) adds ", bonus 0 of 1" when the workbook has
    bonus problems, which the bar and the main count leave out."""
    line = f"Workbook progress {style.bar(solved, total)} {solved} of {total} {plural(total, 'problem')} solved"
    return line + (f", bonus {bonus[0]} of {bonus[1]}" if bonus and bonus[1] else "")


def json_report(results: list[ProblemResult], target: Path) -> dict[str, Any]:
    """The JSON report (version 1) as a dict: what was graded, and each check's result."""
    target_text = shown_name(str(target))  # a folder name may hold undecodable bytes
    return {"version": JSON_VERSION, "target": target_text, "problems": [_problem_json(r) for r in results]}


def _problem_json(result: ProblemResult) -> dict[str, Any]:
    problem = result.problem
    return {
        "number": problem.number,
        "slug": problem.slug,
        "title": problem.title,
        "status": result.status,
        "passed": result.passed,
        "total": result.total,
        "seed": result.seed,
        "checks": [
            {
                "id": check.id,
                "title": check.title,
                "status": check.status,
                "message": check.message,
                "duration_s": check.duration_s,
                "cause": check.cause or None,
            }
            for check in result.checks
        ],
    }


class LiveCount:
    """While grading, a one-line count of finished checks on stderr, redrawn in place, so a
    slow or hanging check never leaves the learner with a silent screen. Only on a
    terminal; piped output never sees it."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.enabled = total > 0 and bool(getattr(self.stream, "isatty", lambda: False)())
        self.lock = threading.Lock()

    def check_done(self, _result: CheckResult) -> None:
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
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
            click.echo(text)

"""`workbook watch`: re-grade a problem whenever one of its files is saved.

Polls the problem folder (names, sizes, mtimes, inodes) instead of depending on a file
watching library: a poll every 0.05 s costs nothing for a handful of files, works the same on
Linux, macOS and Windows, and sees editors that save by writing a new file and renaming it
over the old one. A change is graded only once the folder has stayed unchanged for
SETTLE_S, so a file caught half written is graded in its final form.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import click

from workbook import causes
from workbook.engine import ProblemResult, grade, keep_warm
from workbook.manifest import Manifest, Problem
from workbook.milestones import (
    congratulation,
    final_message,
    next_unsolved,
    progress_line,
    regression_note,
    solution_path,
)
from workbook.report import describe_target, rerun_for
from workbook.results import Status
from workbook.safetext import last_lines, log_safe
from workbook.starters import problem_files
from workbook.state import Progress, is_solved, load_state, save_or_warn, with_results
from workbook.terminal import Style, new_screen
from workbook.words import plural

POLL_S = 0.05
SETTLE_S = 0.15
MAX_SETTLE_S = 3.0  # a file rewritten non-stop is graded anyway after this long
MESSAGE_LINES = 14

Signature = tuple[tuple[str, int, int, int], ...]

# Grading processes a re-check shares its checks out to, as `workbook check N` does with its
# default -j 2: problem 1's 22 checks in ~0.85 s instead of ~1.05 s (benchmarks/RESULTS.md).
WATCH_PARTS = 2


def signature(folder: Path) -> Signature:
    """What changes when any Python file of the folder is saved, created, renamed or deleted.
    Only source counts: an app that writes a database or a log next to itself must not make
    the watcher grade again and again."""
    found = []
    for relative, path in problem_files(folder):
        if path.suffix != ".py":
            continue
        try:
            stat = path.stat()
        except OSError:
            continue  # deleted between listing and stat: the next poll sees it gone
        found.append((relative, stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(found)


def wait_for_change(folder: Path, since: Signature, sleep: Callable[[float], None] = time.sleep) -> Signature:
    """Block until the folder differs from `since` and has then stayed still for SETTLE_S."""
    current = signature(folder)
    while current == since:
        sleep(POLL_S)
        current = signature(folder)
    settle_until = time.monotonic() + MAX_SETTLE_S
    while time.monotonic() < settle_until:
        sleep(SETTLE_S)
        latest = signature(folder)
        if latest == current:
            break
        current = latest
    return current


class Watcher:
    def __init__(
        self,
        manifest: Manifest,
        exercises: Path,
        *,
        style: Style,
        verbose: bool = False,
        clear_screen: bool = True,
        echo: Callable[[str], None] = click.echo,
    ) -> None:
        self.manifest = manifest
        self.exercises = exercises
        self.style = style
        self.verbose = verbose
        self.clear_screen = clear_screen
        self.echo = echo
        self.runs = 0
        keep_warm()  # every save re-grades: fork from a warm process, not a fresh interpreter

    def run(self, problem: Problem, *, max_runs: int | None = None, stay: bool = False) -> int:
        """Watch `problem`, moving on as problems get solved. `stay`: the learner chose this
        problem (README: "moves on when it passes, unless you chose the problem"), so keep
        watching it once it passes, newly solved or not."""
        notice = ""
        while True:
            folder = self.exercises / problem.slug
            before = signature(folder)
            progress = load_state()  # before grading: the graded code could write the file
            started = time.monotonic()
            result = grade(problem, self.exercises, parts=WATCH_PARTS)
            elapsed = time.monotonic() - started
            self.runs += 1
            newly_solved, state = self._remember(progress, result)
            if result.status == Status.PASS and not stay:
                following = next_unsolved(self.manifest, state, after=problem)
                if following is None:
                    footer = self._finished(problem, state, newly_solved)
                    self._draw(result, elapsed, state, notice=notice, footer=footer)
                    return 0
                if newly_solved:
                    # Show the success at once; the next problem's grading takes a while.
                    moving = f"\nChecking problem {following.number}, {following.title}, next..."
                    self._draw(
                        result,
                        elapsed,
                        state,
                        notice=notice,
                        footer=congratulation(problem, self.manifest, state, self.style) + moving,
                    )
                    notice = self.style.dim(
                        f"Problem {problem.number} solved; reference solution: {solution_path(problem)}"
                    )
                problem, stay = following, False
                if self._done(max_runs):
                    return 0
                continue
            footer = self._keys(problem)
            if result.status == Status.PASS:
                footer = f"Reference solution for comparison: {solution_path(problem)}\n{footer}"
            if newly_solved:
                footer = f"{congratulation(problem, self.manifest, state, self.style)}\n{footer}"
            self._draw(result, elapsed, state, notice=notice, footer=footer)
            notice = ""
            if self._done(max_runs):
                return 0 if result.status == Status.PASS else 1
            wait_for_change(folder, before)
            # Grading takes a few seconds: say at once that the save was seen.
            self.echo(self.style.dim(f"Change seen in {describe_target(self.exercises, problem)}/; checking again..."))

    def _done(self, max_runs: int | None) -> bool:
        return max_runs is not None and self.runs >= max_runs

    def _remember(self, before: Progress, result: ProblemResult) -> tuple[bool, Progress]:
        """Record the result like `workbook check` does; True when it newly solved the problem."""
        state = with_results(before, [result])
        note = save_or_warn(state)
        if note:
            self.echo(note)
        return result.status == Status.PASS and not is_solved(before, result.problem.slug), state

    def _finished(self, problem: Problem, state: Progress, newly_solved: bool) -> str:
        if newly_solved:
            return congratulation(problem, self.manifest, state, self.style)
        return final_message(self.manifest, self.style) + "\n" + self._keys(problem)

    def _keys(self, problem: Problem) -> str:
        folder = describe_target(self.exercises, problem)
        return self.style.dim(
            f"Save a file in {folder}/ to re-check · `workbook hint {problem.number}` for a hint · Ctrl-C to quit"
        )

    def _draw(self, result: ProblemResult, elapsed: float, state: Progress, *, notice: str, footer: str) -> None:
        lines = [notice, ""] if notice else []
        lines += screen(result, self.style, elapsed, verbose=self.verbose)
        lines += ["", progress_line(self.manifest, state, self.style)]
        broken = regression_note(self.manifest, state, {result.problem.slug})
        if broken:
            lines.append(broken)
        if footer:
            lines.append(footer)
        new_screen(self.clear_screen, self.echo)
        self.echo("\n".join(lines))


def screen(result: ProblemResult, style: Style, elapsed: float, *, verbose: bool = False) -> list[str]:
    """The compact result: one line per check, then the first failure in full."""
    problem = result.problem
    title = style.bold(f"Problem {problem.number} · {problem.title}")
    lines = [title + style.dim(f"  ({describe_target(result.target, problem)})")]
    lines += [f"  {style.mark(check.status)} {check.title}" for check in result.checks]
    failing = next((check for check in result.checks if check.status != Status.PASS), None)
    stamp = time.strftime("%H:%M:%S")
    lines.append(
        f"{result.passed}/{result.total} {plural(result.total, 'check')} passed · graded in {elapsed:.1f} s at {stamp}"
    )
    if failing is None:
        lines.append("Every check passes.")
        return lines
    shared = causes.groups(result.checks).get(failing.cause, [])
    if shared:
        # One root cause shown once: its headline, then the rest of the first message.
        lines += ["", style.bold(f"First failure: {causes.headline(shared)}")]
        message = causes.details(shared)
    else:
        lines += ["", style.bold(f"First failure: {failing.title}")]
        message = (failing.message or "").splitlines() or ["(no message)"]
    lines += ["    " + text for text in message[:MESSAGE_LINES]]
    if len(message) > MESSAGE_LINES:
        lines.append(f"    ... ({len(message) - MESSAGE_LINES} more lines: {rerun_for(result, failing.id)})")
    if verbose and failing.output:
        lines.append("    your code printed:")
        lines += ["      " + text for text in last_lines(log_safe(failing.output))]
    lines.append(style.dim(f"    re-run only this check: {rerun_for(result, failing.id)}"))
    return lines

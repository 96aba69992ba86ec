"""How results are shown: a calm human summary on a terminal, plain text when piped or
when NO_COLOR is set (drawn with workbook.terminal), and one JSON document for CI."""

from __future__ import annotations

import shlex
from pathlib import Path

from workbook import causes
from workbook.engine import CheckResult, ProblemResult
from workbook.manifest import Problem
from workbook.results import Status
from workbook.safetext import last_lines, log_safe, shown_path

# Drawing moved to workbook.terminal; these names stay importable from here for callers of old.
from workbook.terminal import LiveCount, Style, human_progress  # noqa: F401
from workbook.words import plural
from workbook.workspace import BUNDLED_SOLUTIONS, EXERCISES, find_workspace

# Every report format `check --format` knows; workbook.formats renders all but text.
FORMATS = ("text", "json", "junit", "exercism", "gradescope", "github")


def describe_target(target: Path, problem: Problem) -> str:
    """The problem's folder in `target`, as messages show it."""
    return shown_path(target / problem.slug)


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
    if check.status == Status.PASS:
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
    workspace = find_workspace()
    if target is not None and target.resolve() == BUNDLED_SOLUTIONS.resolve():
        words.append("--solutions")
    elif target is not None and (workspace is None or target.resolve() != (workspace / EXERCISES).resolve()):
        words += ["--dir", shlex.quote(shown_path(target))]
    if seed is not None:
        words += ["--seed", str(seed)]
    return " ".join(words)


def rerun_for(result: ProblemResult, check_id: str) -> str:
    """`rerun_command` for a check of `result`, with the folder and seed it was graded with."""
    return rerun_command(result.problem, check_id, target=result.target, seed=result.seed)

"""What the learner reads when a problem's last check passes: well done, compare with the
reference solution, and what comes next; after the last problem, a final message."""

from __future__ import annotations

from pathlib import Path

from workbook.manifest import Manifest, Problem
from workbook.state import Progress, fails_now, is_solved, problem_status
from workbook.terminal import Style, human_progress
from workbook.words import counted, plural
from workbook.workspace import BUNDLED_SOLUTIONS


def solved_slugs(manifest: Manifest, state: Progress) -> set[str]:
    return {problem.slug for problem in manifest.problems if is_solved(state, problem.slug)}


def next_unsolved(manifest: Manifest, state: Progress, after: Problem | None = None) -> Problem | None:
    """The first unsolved problem after `after` (wrapping around), or None when all pass.
    Bonus problems (manifest `bonus = true`) come only once every other one is solved."""
    solved = solved_slugs(manifest, state)
    for group in (manifest.core_problems, manifest.bonus_problems):
        start = group.index(after) + 1 if after in group else 0
        for problem in group[start:] + group[:start]:
            if problem.slug not in solved:
                return problem
    return None


def progress_line(manifest: Manifest, state: Progress, style: Style) -> str:
    """ "Workbook progress [bar] 5 of 5 problems solved, bonus 0 of 1": bonus problems are
    counted apart, so they never hold back the main count."""
    solved = solved_slugs(manifest, state)
    core, bonus = manifest.core_problems, manifest.bonus_problems
    core_solved = sum(1 for problem in core if problem.slug in solved)
    bonus_solved = sum(1 for problem in bonus if problem.slug in solved)
    return human_progress(core_solved, len(core), style, bonus=(bonus_solved, len(bonus)))


def solution_path(problem: Problem) -> str:
    folder = BUNDLED_SOLUTIONS / problem.slug
    try:
        return str(folder.relative_to(Path.cwd())) + "/"
    except ValueError:
        return str(folder) + "/"


def congratulation(problem: Problem, manifest: Manifest, state: Progress, style: Style) -> str:
    """The message for a problem that has just been solved; `state` already records it."""
    star = "★ " if style.unicode else ""
    lines = [style.bold(f"{star}Problem {problem.number} solved: {problem.title}. Well done!")]
    lines.append(f"  Compare your code with the reference solution in {solution_path(problem)}")
    following = next_unsolved(manifest, state, after=problem)
    if following is None:
        lines.append(final_message(manifest, style))
    elif following.bonus and not problem.bonus:
        # The last required problem: celebrate it, then offer the bonus.
        lines.append(final_message(manifest, style))
        lines.append(f"  Bonus: problem {following.number}, {following.title}: workbook check {following.number}")
    else:
        lines.append(f"  Next: problem {following.number}, {following.title}: workbook check {following.number}")
        if following.lesson:
            lines.append(style.dim(f"  Read first: {following.lesson}"))
    return "\n".join(lines)


def final_message(manifest: Manifest, style: Style) -> str:
    """The message once every required problem passes (bonus problems are not required)."""
    count = len(manifest.core_problems)
    titles = "; ".join(problem.title for problem in manifest.core_problems)
    return "\n".join(
        [
            "",
            style.bold(f"You solved all {counted(count, 'problem')} of {manifest.title}."),
            f"  You built: {titles}.",
            "  Compare each with solutions/, then try a change of your own: `workbook check --all`",
            "  still tells you what breaks.",
        ]
    )


def after_check(manifest: Manifest, before: Progress, after: Progress, style: Style) -> str:
    """Congratulations for each problem solved by this run (not solved before it)."""
    newly = solved_slugs(manifest, after) - solved_slugs(manifest, before)
    messages = [congratulation(p, manifest, after, style) for p in manifest.problems if p.slug in newly]
    return "\n\n".join(messages)


def regression_note(manifest: Manifest, state: Progress, graded: set[str]) -> str:
    """A visible line for each graded problem that was solved before and fails now: the
    progress bar keeps counting it (it counts best results), so say why it still does."""
    lines = []
    for problem in manifest.problems:
        if problem.slug in graded and fails_now(state, problem.slug):
            entry = problem_status(state, problem.slug)
            counts = f"{entry.passed}/{entry.total}" if entry else "0/0"
            lines.append(
                f"Problem {problem.number} was solved before and fails now "
                f"({counts} {plural(entry.total if entry else 0, 'check')} pass).\n"
                "  The progress still counts it; `workbook status` shows best and current results."
            )
    return "\n".join(lines)


def partial_run_note(manifest: Manifest, state: Progress, graded: set[str]) -> str:
    """After a -k run: where each graded problem stands counting the checks run earlier."""
    lines = []
    for problem in manifest.problems:
        entry = problem_status(state, problem.slug) if problem.slug in graded else None
        if entry is not None:
            counts = f"{entry.passed}/{entry.total}"
            lines.append(
                f"With your earlier results, {counts} {plural(entry.total, 'check')} of problem "
                f"{problem.number} pass; "
                f"`workbook check {problem.number}` runs them all again."
            )
    return "\n".join(lines)

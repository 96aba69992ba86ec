"""`workbook`: check your FastAPI Advanced exercises and follow your progress.

A thin click front end; the work happens in the `workbook` package (manifest, engine,
report, state).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from workbook import __version__, instructor_commands, integrity, interrupts, learner_commands
from workbook.engine import GraderError, ProblemResult, grade_many
from workbook.here import problem_here
from workbook.manifest import ROOT, Manifest, ManifestError, Problem, load_manifest
from workbook.milestones import progress_line
from workbook.report import FORMATS, LiveCount, Style, human_problem
from workbook.sandbox import isolation
from workbook.state import (
    as_count,
    best_result,
    fails_now,
    is_solved,
    load_state,
    problem_status,
    save_or_warn,
    with_results,
)
from workbook.target import TargetError, refuse_link
from workbook.words import plural

EXERCISES = ROOT / "exercises"
SOLUTIONS = ROOT / "solutions"


def _manifest() -> Manifest:
    try:
        return load_manifest()
    except ManifestError as exc:
        raise click.ClickException(f"{exc}. Restore workbook.toml from the workbook's repository.") from exc


class ProblemNumber(click.ParamType):
    """A problem number from the manifest, e.g. `2`."""

    name = "N"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Problem:
        if isinstance(value, Problem):
            return value
        manifest = _manifest()
        numbers = ", ".join(str(p.number) for p in manifest.problems)
        try:
            return manifest.by_number(int(str(value)))
        except (ValueError, KeyError):
            self.fail(f"{value!r} is not a problem number; choose one of {numbers}.", param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="workbook")
def main() -> None:
    """Exercises for the FastAPI Advanced chapter, graded on your machine.

    Start with `workbook check 1`, edit exercises/p1_dependency_chain/app.py,
    and check again until every check passes.
    """


@main.command("list")
def list_problems() -> None:
    """List the problems with their last known status."""
    state = load_state()
    style = Style.detect()
    for problem in _manifest().problems:
        entry = problem_status(state, problem.slug)
        if entry is None:
            status = "not checked yet"
        else:
            total = as_count(entry.get("total"))
            status = f"{entry.get('status', '?')} ({entry.get('passed', 0)}/{total} {plural(total, 'check')})"
        title = problem.title + (" [bonus]" if problem.bonus else "")
        click.echo(f"{problem.number}. {title:<40} {style.dim(status)}")


@main.command()
@click.argument("problems", nargs=-1, type=ProblemNumber())
@click.option("--all", "all_problems", is_flag=True, help="Check every problem.")
@click.option("--solutions", is_flag=True, help="Grade the reference solutions instead of exercises/.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Grade another folder laid out like exercises/ (a submission).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text, json, junit (JUnit XML), exercism / gradescope (results.json), github (Actions).",
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to FILE; the terminal still gets the human summary.",
)
@click.option(
    "--graders",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Grade with this folder of graders (laid out like graders/) instead of the bundled ones.",
)
@click.option("--allow-modified-graders", is_flag=True, help="Record in reports that modified graders were accepted.")
@click.option(
    "--no-sandbox",
    is_flag=True,
    envvar=instructor_commands.NO_SANDBOX_ENV,
    help="With --dir: grade even where no sandbox works (reports say so). Env: WORKBOOK_NO_SANDBOX=1.",
)
@click.option("-k", "keyword", metavar="TEXT", help="Run only the checks whose id contains TEXT.")
@click.option("--seed", type=int, help="Replay a run's random test data.")
@click.option("-j", "--jobs", type=click.IntRange(1, 8), default=2, show_default=True, help="Problems graded at once.")
@click.option("-q", "--quiet", is_flag=True, help="Only the summary line of each problem.")
@click.option("-v", "--verbose", is_flag=True, help="Also show what your code printed during failing checks.")
def check(
    problems: tuple[Problem, ...],
    all_problems: bool,
    solutions: bool,
    directory: Path | None,
    output_format: str,
    output_path: Path | None,
    graders: Path | None,
    allow_modified_graders: bool,
    no_sandbox: bool,
    keyword: str | None,
    seed: int | None,
    jobs: int,
    quiet: bool,
    verbose: bool,
) -> None:
    """Grade problems N... (default: the problem whose folder you are in, else the first
    one not yet passed).

    Exit status: 0 when every check passed, 1 when any did not, 2 for a usage error.
    """
    if solutions and directory:
        raise click.UsageError("Use either --solutions or --dir, not both.")
    if all_problems and problems:
        raise click.UsageError("Give problem numbers or --all, not both.")
    manifest = _manifest()
    if directory:
        try:
            refuse_link(directory)
        except TargetError as exc:
            raise click.BadParameter(str(exc), param_hint="--dir") from exc
    target = directory.resolve() if directory else SOLUTIONS if solutions else EXERCISES
    learner_run = target == EXERCISES  # a -k run is recorded too: it updates the checks it ran
    selected = _select(manifest, problems, all_problems, target)
    if graders is not None:  # the check list (for -k and the live count) comes from these graders
        selected = [replace(problem, graders=graders.resolve()) for problem in selected]
    _check_keyword(selected, keyword)
    selected = _with_matching_checks(selected, keyword)
    if output_path and not output_path.resolve().parent.is_dir():
        raise click.BadParameter(f"the folder {output_path.resolve().parent} does not exist.", param_hint="--output")
    style = Style.detect()
    # Read before grading: the learner's code runs meanwhile and could write the state file.
    before = load_state()
    # Reports record which graders graded the run (and whether the bundled ones were
    # modified); only `workbook grade` refuses modified ones.
    grader_set = integrity.describe(graders, allow_modified=allow_modified_graders)
    if directory:  # someone else's code: only in a sandbox, unless --no-sandbox says otherwise
        instructor_commands.sandbox_or_exit(grader_set, no_sandbox)
    else:
        grader_set.isolation, grader_set.no_sandbox = isolation().label, no_sandbox

    human = output_format == "text" or output_path is not None
    live = LiveCount(_check_count(selected, keyword) if human else 0)

    def show(result: ProblemResult) -> None:
        if human:
            live.echo(human_problem(result, style, verbose=verbose, quiet=quiet) + "\n")

    options = dict(jobs=jobs, keyword=keyword, seed=seed, on_result=show, graders=graders, on_check=live.check_done)
    try:
        # Someone else's submission (--dir) is graded from a copy of the learner's work
        # (workbook/target.py), so nothing else in it (a conftest.py, a .pth) is loaded.
        grade_all = _sanitised_grading() if directory else grade_many
        with interrupts.sigterm_as_ctrl_c():  # a stopped CI job must not leave graders running
            results = grade_all(selected, target, **options)
    except GraderError as exc:
        raise click.ClickException(f"{exc}. The workbook's graders/ folder is incomplete; reinstall it.") from exc
    except TargetError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        _interrupted()
    after = _remember(before, results, _all_check_ids(selected) if keyword else None) if learner_run else before
    if human and not quiet:
        click.echo(style.dim(grader_set.isolation), err=output_format != "text")
    if output_path:
        _write_report(output_path, output_format, results, target, grader_set)
    elif output_format != "text":
        from workbook import formats

        click.echo(formats.render(output_format, results, target, grader_set), nl=output_format != "github")
    if learner_run and (output_format == "text" or output_path):
        from workbook.milestones import after_check, partial_run_note, regression_note

        graded = {result.problem.slug for result in results}
        if keyword and not quiet:
            click.echo(partial_run_note(manifest, after, graded) + "\n")
        message = "" if quiet else after_check(manifest, before, after, style)
        if message:
            click.echo(message + "\n")
        click.echo(progress_line(manifest, after, style))
        broken = regression_note(manifest, after, graded)
        if broken:
            click.echo(broken)
    sys.exit(0 if all(result.status == "pass" for result in results) else 1)


def _interrupted() -> None:
    """Ctrl-C during `check`: grade_many has already killed the grading processes."""
    interrupts.exit_on_next_signal()
    click.echo("\nInterrupted: nothing was recorded.", err=True)
    sys.exit(interrupts.EXIT_INTERRUPTED)


def _write_report(
    path: Path, output_format: str, results: list[ProblemResult], target: Path, grader_set: integrity.GraderSet
) -> None:
    if output_format == "text":
        plain = Style(color=False, unicode=False)
        text = "\n\n".join(human_problem(result, plain) for result in results) + "\n"
    else:
        from workbook import formats

        text = formats.render(output_format, results, target, grader_set)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write the report to {path}: {exc}") from exc
    click.echo(f"Report ({output_format}) written to {path}", err=True)


def _sanitised_grading():  # noqa: ANN202 - the gradebook's grading function
    """Grading of a copy holding only the learner files (imported only when --dir needs it)."""
    from workbook.gradebook import grade_sanitised

    return grade_sanitised


def _select(manifest: Manifest, problems: tuple[Problem, ...], all_problems: bool, target: Path) -> list[Problem]:
    """The problems named, or all, or the one whose folder we are in, or the first unsolved."""
    if all_problems:
        return list(manifest.problems)
    if problems:
        return list({problem.number: problem for problem in problems}.values())
    here = problem_here(manifest, [target, EXERCISES])
    if here is not None:
        return [here]
    state = load_state()
    # Bonus problems come after every other one, whatever their number.
    in_order = manifest.core_problems + manifest.bonus_problems
    unsolved = [problem for problem in in_order if not is_solved(state, problem.slug)]
    return unsolved[:1] or list(manifest.problems)


def _remember(before: dict, results: list[ProblemResult], all_check_ids: dict[str, list[str]] | None) -> dict:
    after = with_results(before, results, all_check_ids)
    note = save_or_warn(after)
    if note:
        click.echo(note, err=True)
    return after


def _all_check_ids(selected: list[Problem]) -> dict[str, list[str]]:
    """Every check id of each problem, so a -k run's result can be merged into the full one."""
    from workbook.engine import discover_checks

    return {problem.slug: [check.id for check in discover_checks(problem)] for problem in selected}


def _check_count(selected: list[Problem], keyword: str | None) -> int:
    from workbook.engine import discover_checks, select_checks

    try:
        return sum(len(select_checks(discover_checks(problem), keyword)) for problem in selected)
    except GraderError:
        return 0


def _check_keyword(selected: list[Problem], keyword: str | None) -> None:
    """-k that matches no check is a typo, not a result: say which ids exist."""
    if not keyword:
        return
    from workbook.engine import discover_checks, select_checks

    try:
        checks = [check for problem in selected for check in discover_checks(problem)]
    except GraderError:
        return  # reported as such by the grading itself
    if not select_checks(checks, keyword):
        ids = ", ".join(check.id for check in checks[:20]) + (
            f", … ({len(checks) - 20} more)" if len(checks) > 20 else ""
        )
        raise click.BadParameter(f"no check id contains {keyword!r}. The ids are: {ids}", param_hint="-k")


def _with_matching_checks(selected: list[Problem], keyword: str | None) -> list[Problem]:
    """With -k, only the problems that have a matching check: `--all -k token` must not
    report the others as failed with 0/0 checks."""
    if not keyword:
        return selected
    from workbook.engine import discover_checks, select_checks

    try:
        return [problem for problem in selected if select_checks(discover_checks(problem), keyword)]
    except GraderError:
        return selected  # reported as such by the grading itself


@main.command()
def status() -> None:
    """Show your progress across all problems."""
    manifest = _manifest()
    state = load_state()
    style = Style.detect()
    for problem in manifest.problems:
        entry = problem_status(state, problem.slug)
        title = problem.title + (" [bonus]" if problem.bonus else "")
        if entry is None:
            line = f"  {'-':5} {problem.number}. {title}  (not checked yet)"
        else:
            mark = style.mark(
                entry.get("status", "fail") if entry.get("status") in ("pass", "fail", "error") else "fail"
            )
            line = f"  {mark} {problem.number}. {title}  ({_current_and_best(state, problem.slug)})"
        click.echo(line)
    click.echo(progress_line(manifest, state, style))


def _current_and_best(state: dict, slug: str) -> str:
    """The latest result, and the best one when it was better (the progress counts the best)."""
    entry = problem_status(state, slug) or {}
    passed = as_count(entry.get("passed"))
    current = f"{passed}/{as_count(entry.get('total'))} {plural(as_count(entry.get('total')), 'check')}"
    if fails_now(state, slug):
        return f"{current} now; solved before, failing now"
    best = best_result(entry) or {}
    if as_count(best.get("passed")) > passed:
        return f"{current} now; best {as_count(best.get('passed'))}/{as_count(best.get('total'))}"
    return current


# The learner's loop (hint, reset, watch, run, doctor) and the instructors' tools (grade,
# merge, dev check) each live in a module of their own and add their commands here.
learner_commands.register(main)
instructor_commands.register(main)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))

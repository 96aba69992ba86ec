"""`workbook`: check your FastAPI Advanced exercises and follow your progress.

A thin click front end: each command parses its options, calls a library function of
workbook/api.py, renders what it returns and chooses the exit status. `ctx.obj` is a
workbook.clicontext.Session (the manifest, read once, and the output style).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from workbook import __version__, api, instructor_commands, integrity, interrupts, learner_commands, workspace_commands
from workbook.clicontext import ProblemNumber, Session, pass_session, usage_errors
from workbook.engine import ProblemResult
from workbook.manifest import Problem
from workbook.milestones import progress_line
from workbook.report import FORMATS, LiveCount, Style, human_problem
from workbook.state import Progress, load_state, problem_status
from workbook.words import plural
from workbook.workspace import BUNDLED_SOLUTIONS, exercises_folder_if_any


@click.group(cls=workspace_commands.WorkbookGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="workbook")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Exercises for the FastAPI Advanced chapter, graded on your machine.

    Start with `workbook check 1`, edit exercises/p1_dependency_chain/app.py,
    and check again until every check passes. Installed from a wheel? Run
    `workbook init` first.
    """
    ctx.ensure_object(Session)


@main.command("list")
@pass_session
def list_problems(session: Session) -> None:
    """List the problems with their last known status."""
    state = load_state()
    style = session.style
    for problem in session.manifest.problems:
        entry = problem_status(state, problem.slug)
        # The same words as `status`: a problem solved once and failing now is said so.
        status = "not checked yet" if entry is None else f"{entry.status} ({_current_and_best(state, problem.slug)})"
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
@pass_session
def check(
    session: Session,
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
    if output_path and not output_path.resolve().parent.is_dir():
        raise click.BadParameter(f"the folder {output_path.resolve().parent} does not exist.", param_hint="--output")
    with usage_errors():
        plan = api.plan_check(
            session.manifest,
            problems,
            exercises=exercises_folder_if_any(),
            solutions=BUNDLED_SOLUTIONS if solutions else None,
            directory=directory,
            all_problems=all_problems,
            keyword=keyword,
            seed=seed,
            jobs=jobs,
            graders=graders,
            allow_modified_graders=allow_modified_graders,
            no_sandbox=no_sandbox,
        )
    warning = integrity.warning(plan.grader_set) if plan.submission else None
    if warning:  # someone else's code graded with edited graders: as `grade` says it
        click.echo(warning, err=True)
    style = session.style
    human = output_format == "text" or output_path is not None
    live = LiveCount(plan.check_count if human else 0)

    def show(result: ProblemResult) -> None:
        if human:
            live.echo(human_problem(result, style, verbose=verbose, quiet=quiet) + "\n")

    try:
        with usage_errors(), interrupts.sigterm_as_ctrl_c():  # a stopped CI job must not leave graders running
            run = api.run_check(plan, on_result=show, on_check=live.check_done)
    except KeyboardInterrupt:
        _interrupted()
    if run.save_note:
        click.echo(run.save_note, err=True)
    if human and not quiet:
        click.echo(style.dim(plan.grader_set.isolation), err=output_format != "text")
    if output_path:
        _write_report(output_path, output_format, run)
    elif output_format != "text":
        from workbook import formats

        click.echo(
            formats.render(output_format, run.results, plan.target, plan.grader_set), nl=output_format != "github"
        )
    if plan.learner_run and (output_format == "text" or output_path):
        _milestones(run, style, quiet)
    sys.exit(run.exit_code)


def _milestones(run: api.CheckRun, style: Style, quiet: bool) -> None:
    """After a learner's check: what a partial run left out, what was just solved, the
    progress bar, and what broke since it last passed."""
    from workbook.milestones import after_check, partial_run_note, regression_note

    manifest = run.plan.manifest
    if run.plan.keyword and not quiet:
        click.echo(partial_run_note(manifest, run.after, run.graded_slugs) + "\n")
    message = "" if quiet else after_check(manifest, run.plan.before, run.after, style)
    if message:
        click.echo(message + "\n")
    click.echo(progress_line(manifest, run.after, style))
    broken = regression_note(manifest, run.after, run.graded_slugs)
    if broken:
        click.echo(broken)


def _interrupted() -> NoReturn:
    """Ctrl-C during `check`: grade_many has already killed the grading processes."""
    interrupts.exit_on_next_signal()
    click.echo("\nInterrupted: nothing was recorded.", err=True)
    interrupts.exit_interrupted()


def _write_report(path: Path, output_format: str, run: api.CheckRun) -> None:
    if output_format == "text":
        plain = Style(color=False, unicode=False)
        text = "\n\n".join(human_problem(result, plain) for result in run.results) + "\n"
    else:
        from workbook import formats

        text = formats.render(output_format, run.results, run.plan.target, run.plan.grader_set)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write the report to {path}: {exc}") from exc
    click.echo(f"Report ({output_format}) written to {path}", err=True)


@main.command()
@pass_session
def status(session: Session) -> None:
    """Show your progress across all problems."""
    manifest = session.manifest
    state = load_state()
    style = session.style
    for problem in manifest.problems:
        entry = problem_status(state, problem.slug)
        title = problem.title + (" [bonus]" if problem.bonus else "")
        if entry is None:
            line = f"  {'-':5} {problem.number}. {title}  (not checked yet)"
        else:
            mark = style.mark(entry.status)
            line = f"  {mark} {problem.number}. {title}  ({_current_and_best(state, problem.slug)})"
        click.echo(line)
    click.echo(progress_line(manifest, state, style))


def _current_and_best(state: Progress, slug: str) -> str:
    """The latest result, and the best one when it was better (the progress counts the best)."""
    entry = problem_status(state, slug)
    if entry is None:
        return "0/0 checks"
    current = f"{entry.passed}/{entry.total} {plural(entry.total, 'check')}"
    if entry.fails_now:
        return f"{current} now; solved before, failing now"
    best = entry.best_result
    if best.passed > entry.passed:
        return f"{current} now; best {best.passed}/{best.total}"
    return current


# The learner's loop (hint, reset, watch, run, doctor) and the instructors' tools (grade,
# merge, dev check) each live in a module of their own and add their commands here.
learner_commands.register(main)
instructor_commands.register(main)
workspace_commands.register(main)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))

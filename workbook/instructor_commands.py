"""Instructors' and CI's tools: batch grading, merging shards, author validation."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from workbook import api, integrity
from workbook.clicontext import ProblemNumber, Session, pass_session, session, usage_errors
from workbook.manifest import MANIFEST_ENV, MANIFEST_PATH, ManifestError, Problem
from workbook.words import counted
from workbook.workspace import BUNDLE, BUNDLED_EXERCISES, BUNDLED_SOLUTIONS, IN_CHECKOUT

# The heavy modules (gradebook, class report, dev check, dev new and update) are imported inside the functions
# that use them (here and in workbook/api.py): every `workbook` start imports this module,
# and a learner's `workbook check` should not pay for them.

GRADERS_OPTION_HELP = "Grade with this folder of graders (laid out like graders/) instead of the bundled ones."


def register(group: click.Group) -> None:
    """Add this module's commands to the `workbook` command group."""
    group.add_command(grade_command)
    group.add_command(merge_command)
    group.add_command(dev)


NO_SANDBOX_HELP = "Grade even where no sandbox works (every report will say so). Env: WORKBOOK_NO_SANDBOX=1."
# The same choice for a whole environment (a laptop without bubblewrap running the project's
# tests); reports record it exactly like the flag.
NO_SANDBOX_ENV = "WORKBOOK_NO_SANDBOX"


@click.command("grade")
@click.argument("submissions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for gradebook.csv and the reports.",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 32), default=2, show_default=True, help="Submissions graded at once."
)
@click.option(
    "--problem-jobs",
    type=click.IntRange(1, 8),
    default=2,
    show_default=True,
    help="Problems of one submission graded at once.",
)
@click.option(
    "--shard", metavar="I/N", help="Grade only the I-th of N deterministic shares (1-based), for a CI matrix."
)
@click.option(
    "-p",
    "--problem",
    "problems",
    type=ProblemNumber(),
    multiple=True,
    help="Grade only problem N (repeatable; default: all).",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a class report page."
)
@click.option("--graders", type=click.Path(exists=True, file_okay=False, path_type=Path), help=GRADERS_OPTION_HELP)
@click.option(
    "--allow-modified-graders", is_flag=True, help="Grade even if the bundled graders differ from their checksums."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run in OUT: keep the reports whose files and graders did not change.",
)
@click.option("--no-sandbox", is_flag=True, envvar=NO_SANDBOX_ENV, help=NO_SANDBOX_HELP)
@pass_session
def grade_command(
    session: Session,
    submissions_dir: Path,
    out_dir: Path,
    jobs: int,
    problem_jobs: int,
    shard: str | None,
    problems: tuple[Problem, ...],
    html_path: Path | None,
    graders: Path | None,
    allow_modified_graders: bool,
    resume: bool,
    no_sandbox: bool,
) -> None:
    """Grade a class: every sub-folder of SUBMISSIONS_DIR is one submission laid out like exercises/.

    Writes OUT/submissions/NAME.json as each submission is graded and OUT/gradebook.csv (one
    row per submission) at the end. Each submission's .py files (no conftest.py, .pth,
    configuration or links) are copied and graded in a sandbox; nothing else in a submission
    is ever loaded. Ctrl-C saves what was finished (exit status 130); `--resume` continues
    from there. An OUT that holds a run is continued only with `--resume`.

    Exit status: 0 when the class was graded (whatever the grades), 1 when grading was refused
    or could not finish (no sandbox, modified graders, OUT in use), 2 for a usage error (an
    option, SUBMISSIONS or OUT that cannot be used), 130 when interrupted.
    """
    with usage_errors():
        plan = api.plan_grade(
            session.manifest,
            submissions_dir,
            out_dir,
            problems=problems,
            jobs=jobs,
            problem_jobs=problem_jobs,
            shard=shard,
            html_path=html_path,
            graders=graders,
            allow_modified_graders=allow_modified_graders,
            resume=resume,
            no_sandbox=no_sandbox,
        )
    grader_set = plan.grader_set
    warning = integrity.warning(grader_set)
    if warning:
        click.echo(warning, err=True)
    click.echo(
        f"Grading {counted(len(plan.names), 'submission')} ({counted(len(plan.problems), 'problem')} each)"
        f" with {grader_set.label},"
        f" {plan.jobs} at a time ({grader_set.isolation}).",
        err=True,
    )
    _summary(_grade_with_progress(plan))


def _grade_with_progress(plan: api.ClassPlan) -> api.ClassRun:
    """Grade the class with a progress line; on Ctrl-C or SIGTERM, say what was saved and
    exit 130 (a second Ctrl-C exits at once)."""
    from workbook import interrupts
    from workbook.classprogress import ClassProgress
    from workbook.gradebook import GRADEBOOK, Interrupted

    try:
        with usage_errors(), interrupts.sigterm_as_ctrl_c():
            return api.grade(plan, progress=ClassProgress(len(plan.names), sys.stderr))
    except Interrupted as stopped:
        click.echo(
            f"Interrupted: {counted(len(stopped.documents), 'submission')} graded, {len(stopped.missing)} not; "
            f"{plan.out_dir / GRADEBOOK} is INCOMPLETE (run.json says so). "
            "Run the same command with --resume to finish.",
            err=True,
        )
        interrupts.exit_interrupted()


def _summary(run: api.ClassRun) -> None:
    from workbook.classprogress import closing_summary
    from workbook.gradebook import GRADEBOOK
    from workbook.safetext import log_safe

    documents = run.documents
    errors = [log_safe(document.submission) for document in run.errors]
    sandbox = next((d.graders.get("sandbox") for d in documents if d.graders.get("sandbox")), None)
    click.echo(
        f"{'Merged' if run.merged else 'Graded'} {counted(len(documents), 'submission')}: {run.out_dir / GRADEBOOK}"
        + (f" ({sandbox})" if sandbox else "")
    )
    if run.html_path:
        click.echo(f"Class report: {run.html_path}")
    if run.graded:
        click.echo(closing_summary(run.graded), err=True)
    if errors:
        click.echo(
            f"The workbook could not grade {counted(len(errors), 'submission')}: {', '.join(errors)} "
            "(see their reports).",
            err=True,
        )


@click.command("merge")
@click.argument("out_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "destination",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the merged gradebook.",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a class report page."
)
@pass_session
def merge_command(session: Session, out_dirs: tuple[Path, ...], destination: Path, html_path: Path | None) -> None:
    """Combine the --out folders of `workbook grade --shard` runs into one gradebook.

    Exit status: 0 when merged; 2, with one line naming what differs or the file, when the
    folders are not the shards of one run or a report or run file is not valid.
    """
    from workbook.gradebook import MergeError

    try:
        manifest = session.manifest
        with usage_errors():
            run = api.merge(manifest, out_dirs, destination, html_path)
    except click.ClickException as exc:
        if isinstance(exc.__cause__, ManifestError):
            _unusable_input(exc.format_message())
        raise
    except MergeError as exc:
        _unusable_input(str(exc))
    _summary(run)


def _unusable_input(message: str) -> NoReturn:
    """One line naming the bad file; exit 2 like any other unusable input."""
    from workbook.safetext import log_safe

    click.echo(f"Error: {log_safe(message)}", err=True)
    sys.exit(2)


@click.group("dev")
def dev() -> None:
    """Tools for authors who edit the workbook's content or swap in their own."""


def _use_manifest(ctx: click.Context, _param: click.Parameter, path: Path | None) -> Path | None:
    """--manifest: the problems (and -p's numbers) come from this file from now on."""
    if path is not None:
        session(ctx).use_manifest(path.resolve())
    return path


@dev.command("check")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    is_eager=True,  # before -p, whose numbers it defines
    callback=_use_manifest,
    help="Another workbook.toml.",
)
@click.option(
    "--exercises", type=click.Path(file_okay=False, path_type=Path), default=BUNDLED_EXERCISES, help="The stubs."
)
@click.option(
    "--solutions", type=click.Path(file_okay=False, path_type=Path), default=BUNDLED_SOLUTIONS, help="The solutions."
)
@click.option("--graders", type=click.Path(exists=True, file_okay=False, path_type=Path), help=GRADERS_OPTION_HELP)
@click.option("-p", "--problem", "problems", type=ProblemNumber(), multiple=True, help="Only problem N (repeatable).")
@click.option("--static", "static_only", is_flag=True, help="Skip grading the solutions and stubs (fast).")
@click.option("-j", "--jobs", type=click.IntRange(1, 16), default=2, show_default=True)
def dev_check_command(
    manifest_path: Path | None,
    exercises: Path,
    solutions: Path,
    graders: Path | None,
    problems: tuple[Problem, ...],
    static_only: bool,
    jobs: int,
) -> None:
    """Validate the content: solutions pass, stubs fail and say TODO, hints, files, check ids.

    Exit status 0 when all is well, 1 with a list of what to fix otherwise.
    """
    from workbook.devcheck import dev_check

    manifest_path = (manifest_path or MANIFEST_PATH).resolve()
    previous = os.environ.get(MANIFEST_ENV)
    # The grading child processes must read the same manifest as this command.
    os.environ[MANIFEST_ENV] = str(manifest_path)
    try:
        findings = dev_check(
            manifest_path,
            exercises.resolve(),
            solutions.resolve(),
            graders=graders,
            numbers=sorted({problem.number for problem in problems}) or None,
            run_graders=not static_only,
            jobs=jobs,
            generated_root=BUNDLE if IN_CHECKOUT and _bundled_content(exercises, graders) else None,
        )
    finally:
        if previous is None:
            os.environ.pop(MANIFEST_ENV, None)
        else:
            os.environ[MANIFEST_ENV] = previous
    if findings:
        click.echo(f"dev check: {counted(len(findings.items), 'thing')} to fix", err=True)
        click.echo("\n".join(findings.lines()))
        sys.exit(1)
    click.echo("dev check: all good" + (" (static checks only)" if static_only else ""))


def _bundled_content(exercises: Path, graders: Path | None) -> bool:
    """Whether dev check looks at the workbook's own stubs and graders, whose generated files
    it then checks too (an author's swapped-in content has none, and a wheel's are built)."""
    own_graders = graders is None or graders.resolve() == (BUNDLE / "graders").resolve()
    return own_graders and exercises.resolve() == BUNDLED_EXERCISES.resolve()


@dev.command("update")
def update_command() -> None:
    """Regenerate every generated file: the starter copy and the grader checksums.

    Run it after changing a stub (exercises/) or a grader (graders/) on purpose;
    `workbook dev check` fails until you do.
    """
    from workbook.generated import update

    for line in update():
        click.echo(line)


@dev.command("new")
@click.argument("slug")
@click.option("--title", help="The problem's title (default: the slug as words, without its pN_ prefix).")
def new_command(slug: str, title: str | None) -> None:
    """Scaffold a new problem SLUG (e.g. p7_rate_limiting), numbered after the last one.

    Writes its statement and stub (exercises/SLUG/), reference solution (solutions/SLUG/),
    an example check (graders/SLUG/), a corpus file (tests/corpus/SLUG.toml) and its entry at
    the end of workbook.toml, then regenerates the generated files. It passes
    `workbook dev check -p N` at once; then replace every TODO(author).
    """
    from workbook.scaffold import AUTHOR_TODO, ScaffoldError, StaleGeneratedFiles, new_problem

    try:
        created = new_problem(slug, title)
    except ScaffoldError as exc:
        # One line and exit 2, like any other unusable argument.
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except (StaleGeneratedFiles, ManifestError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Problem {created.number} ({created.slug}):")
    for path in created.written:
        click.echo(f"  Wrote {path.as_posix()}.")
    for line in created.regenerated:
        click.echo(f"  {line}")
    click.echo(
        f"Next: replace every {AUTHOR_TODO} in these files, run `workbook dev update`, "
        f"then `workbook dev check -p {created.number}`."
    )

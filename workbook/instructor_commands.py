"""Instructors' and CI's tools: batch grading, merging shards, author validation."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from workbook import integrity

if TYPE_CHECKING:
    from workbook.gradebook import Shard

# The heavy modules (gradebook, class report, dev check) are imported inside the commands
# that use them: every `workbook` start imports this module, and a learner's
# `workbook check` should not pay for them.
from workbook.manifest import MANIFEST_ENV, MANIFEST_PATH, ROOT, ManifestError, Problem, load_manifest
from workbook.words import counted

GRADERS_OPTION_HELP = "Grade with this folder of graders (laid out like graders/) instead of the bundled ones."


def register(group: click.Group) -> None:
    """Add this module's commands to the `workbook` command group."""
    group.add_command(grade_command)
    group.add_command(merge_command)
    group.add_command(dev)


def _problems(numbers: tuple[int, ...]) -> list[Problem]:
    try:
        manifest = load_manifest()
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from exc
    if not numbers:
        return list(manifest.problems)
    known = {p.number: p for p in manifest.problems}
    unknown = [n for n in numbers if n not in known]
    if unknown:
        raise click.UsageError(f"no problem {unknown[0]}; choose among {', '.join(map(str, known))}.")
    return [known[n] for n in sorted(set(numbers))]


def grader_set_or_exit(graders: Path | None, allow_modified: bool) -> integrity.GraderSet:
    """The grader set to grade with; exits when the bundled graders were modified and that
    was not allowed."""
    grader_set = integrity.describe(graders, allow_modified=allow_modified)
    refusal = integrity.refusal(grader_set)
    if refusal:
        raise click.ClickException(refusal)
    if grader_set.source == "bundled" and not grader_set.verified:
        changed = len(grader_set.modified)
        click.echo(
            f"Warning: grading with MODIFIED bundled graders ({counted(changed, 'file')} "
            f"{'differs' if changed == 1 else 'differ'}).",
            err=True,
        )
    return grader_set


NO_SANDBOX_HELP = "Grade even where no sandbox works (every report will say so). Env: WORKBOOK_NO_SANDBOX=1."
# The same choice for a whole environment (a laptop without bubblewrap running the project's
# tests); reports record it exactly like the flag.
NO_SANDBOX_ENV = "WORKBOOK_NO_SANDBOX"


def sandbox_or_exit(grader_set: integrity.GraderSet, no_sandbox: bool) -> None:
    """Record the isolation in `grader_set` (so every report names it); exits when there is
    no working sandbox for someone else's code and --no-sandbox was not given."""
    from workbook.sandbox import isolation

    found = isolation()
    grader_set.isolation = found.label
    grader_set.no_sandbox = no_sandbox
    if found.active or no_sandbox:
        return
    raise click.ClickException(
        f"No sandbox works on this machine ({found.reason}). Without it, the code you grade can read and change "
        "anything your user can. Install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`), "
        "or pass --no-sandbox (every report will say so)."
    )


def _shard(value: str | None) -> Shard | None:
    from workbook.gradebook import Shard

    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from exc


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
    "-p", "--problem", "numbers", type=int, multiple=True, help="Grade only problem N (repeatable; default: all)."
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
def grade_command(
    submissions_dir: Path,
    out_dir: Path,
    jobs: int,
    problem_jobs: int,
    shard: str | None,
    numbers: tuple[int, ...],
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
    from there.
    """
    from workbook.classout import check_out_folder, release_out_lock
    from workbook.gradebook import submissions

    problems = _problems(numbers)
    chosen = _shard(shard)
    grader_set = grader_set_or_exit(graders, allow_modified_graders)
    sandbox_or_exit(grader_set, no_sandbox)
    # Every problem with OUT surfaces here, before a single submission is graded.
    skip = check_out_folder(submissions_dir, out_dir, html_path, chosen, resume)
    names = submissions(submissions_dir, skip)
    count = len(chosen.take(names) if chosen else names)
    click.echo(
        f"Grading {counted(count, 'submission')} ({counted(len(problems), 'problem')} each) "
        f"with {grader_set.label}, {jobs} at a time"
        f" ({grader_set.isolation}).",
        err=True,
    )
    settings = {"jobs": jobs, "problem_jobs": problem_jobs, "shard": chosen, "resume": resume, "skip": skip}
    try:
        documents = _grade_with_progress(submissions_dir, out_dir, problems, grader_set, settings, count)
    finally:
        release_out_lock()
    _write_html(html_path, documents)
    _summary(documents, out_dir, html_path)


def _grade_with_progress(
    submissions_dir: Path,
    out_dir: Path,
    problems: list[Problem],
    grader_set: integrity.GraderSet,
    settings: dict,
    count: int,
) -> list[dict]:
    """Grade the class with a progress line; on Ctrl-C or SIGTERM, say what was saved and
    exit 130 (a second Ctrl-C exits at once)."""
    from workbook import interrupts
    from workbook.classprogress import ClassProgress
    from workbook.gradebook import GRADEBOOK, Interrupted, grade_class

    progress = ClassProgress(count, sys.stderr)
    try:
        with interrupts.sigterm_as_ctrl_c():
            try:
                return grade_class(
                    submissions_dir, out_dir, problems, grader_set, progress=progress, on_kept=progress.keep, **settings
                )
            finally:
                progress.close()
    except Interrupted as stopped:
        click.echo(
            f"Interrupted: {counted(len(stopped.documents), 'submission')} graded, {len(stopped.missing)} not; "
            f"{out_dir / GRADEBOOK} is INCOMPLETE (run.json says so). "
            "Run the same command with --resume to finish.",
            err=True,
        )
        sys.exit(interrupts.EXIT_INTERRUPTED)


def _write_html(path: Path | None, documents: list[dict]) -> None:
    if path is None:
        return
    from workbook.classreport import class_report
    from workbook.reportfiles import atomic_write
    from workbook.safetext import log_safe

    try:
        # Titles in merged reports are untrusted too: no control sequence, no workflow command.
        atomic_write(path, log_safe(class_report(documents)))
    except OSError as exc:
        raise click.ClickException(f"cannot write the class report to {path}: {exc} (the gradebook is saved)") from exc


def _summary(documents: list[dict], out_dir: Path, html_path: Path | None) -> None:
    from workbook.classprogress import closing_summary
    from workbook.gradebook import GRADEBOOK
    from workbook.safetext import log_safe

    errors = [log_safe(d["submission"]) for d in documents if d.get("error")]
    sandbox = next((d["graders"].get("sandbox") for d in documents if d.get("graders", {}).get("sandbox")), None)
    click.echo(
        f"Graded {counted(len(documents), 'submission')}: {out_dir / GRADEBOOK}" + (f" ({sandbox})" if sandbox else "")
    )
    if html_path:
        click.echo(f"Class report: {html_path}")
    if documents:
        click.echo(closing_summary(documents), err=True)
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
def merge_command(out_dirs: tuple[Path, ...], destination: Path, html_path: Path | None) -> None:
    """Combine the --out folders of `workbook grade --shard` runs into one gradebook.

    Exit status 2, with one line naming the file, when a report or run file is not valid.
    """
    from workbook.gradebook import MergeError, merge
    from workbook.safetext import log_safe

    try:
        documents = merge(list(out_dirs), destination, list(load_manifest().problems))
    except (MergeError, ManifestError) as exc:
        # One line naming the bad file; exit 2 like any other unusable input.
        click.echo(f"Error: {log_safe(str(exc))}", err=True)
        sys.exit(2)
    _write_html(html_path, documents)
    _summary(documents, destination, html_path)


@click.group("dev")
def dev() -> None:
    """Tools for authors who edit the workbook's content or swap in their own."""


@dev.command("check")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Another workbook.toml.",
)
@click.option(
    "--exercises", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "exercises", help="The stubs."
)
@click.option(
    "--solutions", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "solutions", help="The solutions."
)
@click.option("--graders", type=click.Path(exists=True, file_okay=False, path_type=Path), help=GRADERS_OPTION_HELP)
@click.option("-p", "--problem", "numbers", type=int, multiple=True, help="Only problem N (repeatable).")
@click.option("--static", "static_only", is_flag=True, help="Skip grading the solutions and stubs (fast).")
@click.option("-j", "--jobs", type=click.IntRange(1, 16), default=2, show_default=True)
def dev_check_command(
    manifest_path: Path | None,
    exercises: Path,
    solutions: Path,
    graders: Path | None,
    numbers: tuple[int, ...],
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
            numbers=list(numbers) or None,
            run_graders=not static_only,
            jobs=jobs,
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


@dev.command("checksums")
@click.option("--check", "verify", is_flag=True, help="Only verify; exit 1 when the list is stale.")
def checksums_command(verify: bool) -> None:
    """Write graders/CHECKSUMS.sha256 after changing the bundled graders on purpose."""
    if verify:
        found = integrity.differences()
        if found:
            click.echo("\n".join(f"- {line}" for line in found))
            raise click.ClickException(f"graders/CHECKSUMS.sha256 is stale; run `{integrity.FIX_COMMAND}`.")
        click.echo("graders/CHECKSUMS.sha256 matches the bundled graders.")
        return
    count = integrity.write_checksums()
    click.echo(f"Wrote {integrity.CHECKSUMS.relative_to(ROOT)} ({counted(count, 'file')}).")

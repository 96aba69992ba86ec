"""The learner's loop: hint, reset, watch, run and doctor."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import click

from workbook import api
from workbook.clicontext import ProblemNumber, Session, pass_session, usage_errors
from workbook.here import problem_here
from workbook.manifest import Problem
from workbook.results import Status
from workbook.safetext import shown_path
from workbook.state import state_dir
from workbook.words import counted
from workbook.workspace import BUNDLE, BUNDLED_SOLUTIONS, exercises_folder

if TYPE_CHECKING:
    from workbook.backups import Backup

DEFAULT_PORT = 8000
WRAP = 88


def register(group: click.Group) -> None:
    """Add this module's commands to the `workbook` command group."""
    for command in (hint, reset, watch, run, doctor):
        group.add_command(command)


# --- shared helpers -------------------------------------------------------------------


def _problem_or_default(problem: Problem | None, session: Session) -> Problem:
    """`problem`; when None, the problem whose folder we are in, else the first one not yet passed."""
    return problem or api.default_problem(session.manifest, exercises_folder())


def _warn(note: str | None) -> None:
    if note:
        click.echo(note, err=True)


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, width=WRAP, initial_indent=indent, subsequent_indent=indent)


def stdin_is_interactive() -> bool:
    """A function of its own so tests can pretend a learner is at the keyboard."""
    return sys.stdin is not None and sys.stdin.isatty()


def _confirm(question: str, yes: bool) -> None:
    """Go on only with --yes or a typed "y"; otherwise stop with exit 1, nothing changed."""
    if yes:
        return
    if not stdin_is_interactive():
        click.echo(f"{question}\nNothing changed: nobody can answer here. Add --yes to confirm.", err=True)
        sys.exit(1)
    if not click.confirm(question, default=False):
        click.echo("Nothing changed.")
        sys.exit(1)


# --- hint -----------------------------------------------------------------------------


@click.command()
@click.argument("problem", metavar="[N]", type=ProblemNumber(), required=False)
@click.option("--all", "show_all", is_flag=True, help="Show every hint of the problem.")
@pass_session
def hint(session: Session, problem: Problem | None, show_all: bool) -> None:
    """Show the next hint for problem N (default: the problem whose folder you are in,
    else the first one not yet passed).

    Each call reveals one more hint; the workbook remembers how many you have seen.
    """
    problem = _problem_or_default(problem, session)
    style = session.style
    click.echo(style.bold(f"Problem {problem.number} · {problem.title}"))
    if problem.lesson:
        click.echo(style.dim(_wrap(f"Lesson: {problem.lesson}")))
    if not problem.hints:
        click.echo("This problem has no hints. Re-read the lesson sections above and its README.md.")
        return
    revealed = api.hint(problem, show_all=show_all)
    for index, text in revealed.shown:
        click.echo()
        click.echo(style.bold(f"  Hint {index + 1} of {len(problem.hints)}"))
        click.echo(_wrap(text, "    "))
    click.echo()
    if revealed.left:
        click.echo(style.dim(f"{revealed.left} more: `workbook hint {problem.number}`; all at once: `--all`."))
    else:
        click.echo(
            style.dim(f"That is every hint. Then: `workbook check {problem.number}` tells you what still fails.")
        )
    _warn(revealed.save_note)


# --- reset ----------------------------------------------------------------------------


@click.command()
@click.argument("problem", metavar="[N]", type=ProblemNumber(), required=False)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--list", "list_only", is_flag=True, help="List this problem's backups.")
@click.option("--restore", "restore_name", metavar="BACKUP", help="Put back a backup (a name from --list, or latest).")
@pass_session
def reset(session: Session, problem: Problem | None, yes: bool, list_only: bool, restore_name: str | None) -> None:
    """Restore the starter files of problem N (default: the problem whose folder you are
    in), after backing up your files.

    Your current files are first copied to a timestamped folder under
    .workbook/backups/; `--list` shows the backups and `--restore BACKUP` puts one back.
    """
    if list_only and restore_name:
        raise click.UsageError("Use either --list or --restore, not both.")
    problem = problem or _problem_of_this_folder(session)
    folder = exercises_folder() / problem.slug
    with usage_errors():
        if list_only:
            _list_backups(problem)
        elif restore_name:
            _restore(problem, folder, restore_name, yes)
        else:
            changed = api.starter_differences(problem, exercises_folder())
            if not changed:
                click.echo(f"Problem {problem.number} already has its starter files; nothing to reset.")
                return
            click.echo(f"These files of {shown_path(folder)}/ differ from the starter: {', '.join(changed)}")
            _confirm(f"Reset problem {problem.number} to its starter files (yours are backed up first)?", yes)
            _report_backup(problem, api.reset(problem, exercises_folder()).backup)
            click.echo(f"Problem {problem.number} has its starter files again.")


def _problem_of_this_folder(session: Session) -> Problem:
    """The problem whose folder we are in. Unlike `hint`, never "the first unsolved": a
    reset rewrites files, so a problem it was not told about must not be guessed."""
    here = problem_here(session.manifest, [exercises_folder()])
    if here is None:
        numbers = ", ".join(str(problem.number) for problem in session.manifest.problems)
        raise click.UsageError(
            f"Which problem? Give its number ({numbers}), or run reset in its folder, exercises/<problem>/."
        )
    return here


def _report_backup(problem: Problem, backup: Backup | None) -> None:
    if backup is None:
        return
    click.echo(f"Your files were saved to {backup.path}")
    click.echo(f"Undo with: workbook reset {problem.number} --restore {backup.name}")


def _list_backups(problem: Problem) -> None:
    from workbook.backups import backups_root, list_backups

    found = list_backups(problem.slug)
    if not found:
        click.echo(f"No backups of problem {problem.number} yet (they go to {backups_root(problem.slug)}).")
        return
    click.echo(f"Backups of problem {problem.number}, oldest first ({backups_root(problem.slug)}):")
    for backup in found:
        click.echo(f"  {backup.name:<20} {counted(backup.files, 'file')}  {backup.reason}")
    click.echo(f"Restore one with: workbook reset {problem.number} --restore {found[-1].name}")


def _restore(problem: Problem, folder: Path, name: str, yes: bool) -> None:
    backup = api.find_backup(problem, name)
    _confirm(
        f"Replace the files of problem {problem.number} with backup {backup.name} (yours are backed up first)?", yes
    )
    safety = api.restore(problem, exercises_folder(), backup)
    click.echo(f"Your files were saved to {safety.path}")
    click.echo(f"Restored backup {backup.name} into {shown_path(folder)}/")


# --- watch ----------------------------------------------------------------------------


@click.command()
@click.argument("problem", metavar="[N]", type=ProblemNumber(), required=False)
@click.option("-v", "--verbose", is_flag=True, help="Also show what your code printed during the first failing check.")
@pass_session
def watch(session: Session, problem: Problem | None, verbose: bool) -> None:
    """Re-check problem N (default: the problem whose folder you are in, else the first
    unsolved) every time you save one of its files.

    Moves on to the next unsolved problem once every check passes, unless you chose the
    problem (by number or by folder). Ctrl-C to quit.
    """
    # A shell that starts us in the background hands down SIGINT ignored; Ctrl-C (or an
    # editor integration's SIGINT) must still stop the watch.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with usage_errors():
            code = api.watch(session.manifest, problem, exercises_folder(), style=session.style, verbose=verbose)
    except KeyboardInterrupt:
        click.echo("\nStopped watching. Your progress is saved; `workbook watch` picks up where you left off.")
        code = 0
    sys.exit(code)


# --- run ------------------------------------------------------------------------------


@click.command("run")
@click.argument("problem", metavar="[N]", type=ProblemNumber(), required=False)
@click.option(
    "--port", type=click.IntRange(1, 65535), help=f"Port to serve on (default: {DEFAULT_PORT} or the next free one)."
)
@click.option("--no-reload", is_flag=True, help="Do not restart the server when you save a file.")
@click.option("--solution", is_flag=True, help="Serve the reference solution instead of your code.")
@click.option("--dry-run", is_flag=True, help="Print the uvicorn command instead of running it.")
@pass_session
def run(
    session: Session, problem: Problem | None, port: int | None, no_reload: bool, solution: bool, dry_run: bool
) -> None:
    """Serve your app for problem N (default: the problem whose folder you are in, else the
    first unsolved) on http://127.0.0.1 and restart it on every save."""
    problem = _problem_or_default(problem, session)
    folder = (BUNDLED_SOLUTIONS if solution else exercises_folder()) / problem.slug
    if not folder.is_dir():
        raise click.ClickException(f"There is no folder {folder}; get it back with `workbook reset {problem.number}`.")
    port = port or free_port(DEFAULT_PORT)
    scratch = state_dir() / "run" / problem.slug
    command = uvicorn_command(problem, folder, port, reload=not no_reload)
    style = session.style
    title = style.bold(f"Serving problem {problem.number} · {problem.title}")
    click.echo(title + style.dim(f"  ({shown_path(folder)})"))
    # Only URLs that answer: most apps have no route at "/", so the base URL is not shown.
    for label, url in served_urls(pages_folder(problem, folder), port):
        click.echo(f"  {label + ':':<11} {url}")
    click.echo(style.dim(f"  Files your app writes (e.g. a database) go to {shown_path(scratch)}/"))
    click.echo(style.dim("  " + ("Restarts when you save a file. " if not no_reload else "") + "Ctrl-C to stop."))
    if dry_run:
        click.echo(" ".join(command))
        return
    scratch.mkdir(parents=True, exist_ok=True)
    sys.exit(_serve(command, scratch, serve_environment(problem, pages_folder(problem, folder))))


def served_urls(folder: Path, port: int) -> list[tuple[str, str]]:
    """(label, URL) of what `run` serves: the interactive docs, and each HTML page of the
    problem folder (problem 3's chat page), served by workbook.serve on the same port."""
    from workbook.serve import page_paths

    urls = [("Try it", f"http://127.0.0.1:{port}/docs")]
    urls += [("In browser", f"http://127.0.0.1:{port}{path}") for path in page_paths(folder)]
    return urls


def pages_folder(problem: Problem, folder: Path) -> Path:
    """Where the HTML pages to serve are: the served folder, or, when it has none (the
    reference solutions hold only code), the problem's folder in exercises/."""
    return folder if any(folder.glob("*.html")) else exercises_folder() / problem.slug


def serve_environment(problem: Problem, pages: Path) -> dict[str, str]:
    """The environment uvicorn (and, through its reloader, each worker) runs in: it names
    the learner's module and the folder of the pages for workbook.serve."""
    from workbook.serve import FOLDER_ENV, MODULE_ENV

    return {**os.environ, MODULE_ENV: problem.module, FOLDER_ENV: str(pages.resolve())}


def free_port(preferred: int, attempts: int = 20) -> int:
    """`preferred` if nothing listens there, else the next free port after it."""
    for port in range(preferred, preferred + attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise click.ClickException(f"Ports {preferred}-{preferred + attempts - 1} are all busy; choose one with --port.")


def uvicorn_command(problem: Problem, folder: Path, port: int, *, reload: bool = True) -> list[str]:
    """uvicorn serving workbook.serve's wrapper of the learner's app (`problem.module`,
    found through --app-dir); run it with serve_environment()."""
    command = [sys.executable, "-m", "uvicorn", "workbook.serve:app", "--app-dir", str(folder)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    # Open WebSockets (the chat page) would otherwise hold a graceful shutdown open.
    command += ["--timeout-graceful-shutdown", "1"]
    if reload:
        command += ["--reload", "--reload-dir", str(folder)]
    return command


def _serve(command: list[str], cwd: Path, environment: dict[str, str]) -> int:
    """Run uvicorn until it ends or we get SIGINT/SIGTERM, then stop its whole tree."""
    from workbook.servetree import serve_until_signal

    code = serve_until_signal(command, cwd, environment)
    if code is None:
        click.echo("Server stopped.")
        return 0
    return code


# --- doctor ---------------------------------------------------------------------------


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Only print the problems found.")
@click.option("-v", "--verbose", is_flag=True, help="Also print where the workbook looks for things.")
@click.option("--no-grade", is_flag=True, help="Skip grading a reference solution (saves a few seconds).")
@pass_session
def doctor(session: Session, quiet: bool, verbose: bool, no_grade: bool) -> None:
    """Check that this machine is ready: Python, packages, bcrypt, folders, grading.

    Prints one line per finding; exit status 1 when any problem is found.
    """
    style = session.style
    if verbose:
        click.echo(style.dim(f"bundled problems {BUNDLE}; exercises {exercises_folder()}; state {state_dir()}"))
    report = api.doctor(exercises_folder(), BUNDLED_SOLUTIONS, grading=not no_grade)
    problems = report.problems
    for finding in report.findings:
        if not finding.ok:
            click.echo(f"{style.mark(Status.FAIL)} {finding.what}: {finding.fix}")
        elif finding.warning:
            click.echo(f"{style.note()} {finding.what}")
        elif not quiet:
            click.echo(f"{style.mark(Status.PASS)} {finding.what}")
    if problems:
        click.echo(
            f"{counted(len(problems), 'problem')} found; fix them in the order shown, then run `workbook doctor` again."
        )
        sys.exit(1)
    if not quiet:
        click.echo("Everything is ready. Start with `workbook watch` (or `workbook check`).")

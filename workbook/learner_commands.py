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

from workbook.manifest import ROOT, Manifest, ManifestError, Problem, load_manifest
from workbook.report import Style
from workbook.state import hints_revealed, load_state, record_hints_revealed, save_or_warn, state_dir
from workbook.words import counted

if TYPE_CHECKING:
    from workbook.backups import Backup

# Module attributes, not constants baked into functions, so tests can point them at copies.
EXERCISES = ROOT / "exercises"
SOLUTIONS = ROOT / "solutions"
DEFAULT_PORT = 8000
WRAP = 88


def register(group: click.Group) -> None:
    """Add this module's commands to the `workbook` command group."""
    for command in (hint, reset, watch, run, doctor):
        group.add_command(command)


# --- shared helpers -------------------------------------------------------------------


def _manifest() -> Manifest:
    try:
        return load_manifest()
    except ManifestError as exc:
        raise click.ClickException(f"{exc}. Restore workbook.toml from the workbook's repository.") from exc


def _problem(number: int | None) -> Problem:
    """Problem `number`; when None, the problem whose folder we are in, else the first one
    not yet passed."""
    manifest = _manifest()
    if number is None:
        from workbook.here import problem_here
        from workbook.milestones import next_unsolved

        here = problem_here(manifest, [EXERCISES])
        return here or next_unsolved(manifest, load_state()) or manifest.problems[0]
    try:
        return manifest.by_number(number)
    except KeyError:
        numbers = ", ".join(str(p.number) for p in manifest.problems)
        raise click.BadParameter(
            f"{number} is not a problem number; choose one of {numbers}.", param_hint="N"
        ) from None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _save(state: dict) -> None:
    note = save_or_warn(state)
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
@click.argument("number", metavar="[N]", type=int, required=False)
@click.option("--all", "show_all", is_flag=True, help="Show every hint of the problem.")
def hint(number: int | None, show_all: bool) -> None:
    """Show the next hint for problem N (default: the problem whose folder you are in,
    else the first one not yet passed).

    Each call reveals one more hint; the workbook remembers how many you have seen.
    """
    problem = _problem(number)
    style = Style.detect()
    hints = problem.hints
    click.echo(style.bold(f"Problem {problem.number} · {problem.title}"))
    if problem.lesson:
        click.echo(style.dim(_wrap(f"Lesson: {problem.lesson}")))
    if not hints:
        click.echo("This problem has no hints. Re-read the lesson sections above and its README.md.")
        return
    state = load_state()
    seen = hints_revealed(state, problem.slug)
    if show_all or seen >= len(hints):
        shown = range(len(hints))
        seen = len(hints)
    else:
        shown = range(seen, seen + 1)
        seen += 1
    for index in shown:
        click.echo()
        click.echo(style.bold(f"  Hint {index + 1} of {len(hints)}"))
        click.echo(_wrap(hints[index], "    "))
    click.echo()
    left = len(hints) - seen
    if left:
        click.echo(style.dim(f"{left} more: `workbook hint {problem.number}`; all at once: `--all`."))
    else:
        click.echo(
            style.dim(f"That is every hint. Then: `workbook check {problem.number}` tells you what still fails.")
        )
    record_hints_revealed(state, problem.slug, seen)
    _save(state)


# --- reset ----------------------------------------------------------------------------


@click.command()
@click.argument("number", metavar="N", type=int)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--list", "list_only", is_flag=True, help="List this problem's backups.")
@click.option("--restore", "restore_name", metavar="BACKUP", help="Put back a backup (a name from --list, or latest).")
def reset(number: int, yes: bool, list_only: bool, restore_name: str | None) -> None:
    """Restore the starter files of problem N, after backing up your files.

    Your current files are first copied to a timestamped folder under
    .workbook/backups/; `--list` shows the backups and `--restore BACKUP` puts one back.
    """
    from workbook import backups
    from workbook.starters import StarterError, starter_files

    if list_only and restore_name:
        raise click.UsageError("Use either --list or --restore, not both.")
    problem = _problem(number)
    folder = EXERCISES / problem.slug
    try:
        if list_only:
            _list_backups(problem)
        elif restore_name:
            _restore(problem, folder, restore_name, yes)
        else:
            changed = backups.changed_files(folder, starter_files(problem.slug))
            if not changed:
                click.echo(f"Problem {problem.number} already has its starter files; nothing to reset.")
                return
            click.echo(f"These files of {_shown(folder)}/ differ from the starter: {', '.join(changed)}")
            _confirm(f"Reset problem {problem.number} to its starter files (yours are backed up first)?", yes)
            backup = backups.reset(folder, problem.slug)
            _report_backup(problem, backup)
            click.echo(f"Problem {problem.number} has its starter files again.")
    except (StarterError, backups.BackupError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"{exc}. Your files were backed up before anything was written.") from exc


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
    from workbook.backups import find_backup, restore

    backup = find_backup(problem.slug, name)
    _confirm(
        f"Replace the files of problem {problem.number} with backup {backup.name} (yours are backed up first)?", yes
    )
    safety = restore(folder, problem.slug, backup)
    click.echo(f"Your files were saved to {safety.path}")
    click.echo(f"Restored backup {backup.name} into {_shown(folder)}/")


# --- watch ----------------------------------------------------------------------------


@click.command()
@click.argument("number", metavar="[N]", type=int, required=False)
@click.option("-v", "--verbose", is_flag=True, help="Also show what your code printed during the first failing check.")
@click.option("--max-runs", type=int, hidden=True, help="Stop after this many gradings (for tests).")
def watch(number: int | None, verbose: bool, max_runs: int | None) -> None:
    """Re-check problem N (default: the problem whose folder you are in, else the first
    unsolved) every time you save one of its files.

    Moves on to the next unsolved problem once every check passes, unless you chose the
    problem (by number or by folder). Ctrl-C to quit.
    """
    from workbook.engine import GraderError
    from workbook.here import problem_here
    from workbook.watcher import Watcher

    # A shell that starts us in the background hands down SIGINT ignored; Ctrl-C (or an
    # editor integration's SIGINT) must still stop the watch.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    explicit = number is not None or problem_here(_manifest(), [EXERCISES]) is not None
    problem = _problem(number)
    style = Style.detect()
    watcher = Watcher(_manifest(), EXERCISES, style=style, verbose=verbose, clear_screen=style.color or style.unicode)
    try:
        code = watcher.run(problem, max_runs=max_runs, stay=explicit)
    except KeyboardInterrupt:
        click.echo("\nStopped watching. Your progress is saved; `workbook watch` picks up where you left off.")
        code = 0
    except GraderError as exc:
        raise click.ClickException(f"{exc}. The workbook's graders/ folder is incomplete; reinstall it.") from exc
    sys.exit(code)


# --- run ------------------------------------------------------------------------------


@click.command("run")
@click.argument("number", metavar="[N]", type=int, required=False)
@click.option(
    "--port", type=click.IntRange(1, 65535), help=f"Port to serve on (default: {DEFAULT_PORT} or the next free one)."
)
@click.option("--no-reload", is_flag=True, help="Do not restart the server when you save a file.")
@click.option("--solution", is_flag=True, help="Serve the reference solution instead of your code.")
@click.option("--dry-run", is_flag=True, hidden=True, help="Print the uvicorn command instead of running it.")
def run(number: int | None, port: int | None, no_reload: bool, solution: bool, dry_run: bool) -> None:
    """Serve your app for problem N (default: the problem whose folder you are in, else the
    first unsolved) on http://127.0.0.1 and restart it on every save."""
    problem = _problem(number)
    folder = (SOLUTIONS if solution else EXERCISES) / problem.slug
    if not folder.is_dir():
        raise click.ClickException(f"There is no folder {folder}; get it back with `workbook reset {problem.number}`.")
    port = port or free_port(DEFAULT_PORT)
    scratch = state_dir() / "run" / problem.slug
    command = uvicorn_command(problem, folder, port, reload=not no_reload)
    style = Style.detect()
    click.echo(style.bold(f"Serving problem {problem.number} · {problem.title}") + style.dim(f"  ({_shown(folder)})"))
    # Only URLs that answer: most apps have no route at "/", so the base URL is not shown.
    for label, url in served_urls(pages_folder(problem, folder), port):
        click.echo(f"  {label + ':':<11} {url}")
    click.echo(style.dim(f"  Files your app writes (e.g. a database) go to {_shown(scratch)}/"))
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
    return folder if any(folder.glob("*.html")) else EXERCISES / problem.slug


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
def doctor(quiet: bool, verbose: bool, no_grade: bool) -> None:
    """Check that this machine is ready: Python, packages, bcrypt, folders, grading.

    Prints one line per finding; exit status 1 when any problem is found.
    """
    from workbook.doctor import run_all

    style = Style.detect()
    if verbose:
        click.echo(style.dim(f"workbook root {ROOT}; exercises {EXERCISES}; state {state_dir()}"))
    findings = run_all(EXERCISES, SOLUTIONS, grading=not no_grade)
    problems = [finding for finding in findings if not finding.ok]
    for finding in findings:
        if not finding.ok:
            click.echo(f"{style.mark('fail')} {finding.what}: {finding.fix}")
        elif finding.warning:
            click.echo(f"{click.style('note', fg='yellow') if style.color else 'note '} {finding.what}")
        elif not quiet:
            click.echo(f"{style.mark('pass')} {finding.what}")
    if problems:
        click.echo(
            f"{counted(len(problems), 'problem')} found; fix them in the order shown, then run `workbook doctor` again."
        )
        sys.exit(1)
    if not quiet:
        click.echo("Everything is ready. Start with `workbook watch` (or `workbook check`).")

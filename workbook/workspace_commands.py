"""`workbook init`, and the one-line answer for commands run outside a workspace."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import click

from workbook import workspace


class NotInWorkspace(click.ClickException):
    """`Error: no workbook workspace in ...`, one line."""

    # As for a usage error: the command cannot run here, and a script must not read it as
    # "checks failed" (1).
    exit_code = 2


class FolderNotEmpty(click.ClickException):
    """`workbook init` into a folder that holds something: one line, exit 2, since the
    argument is what must change (as for any usage error)."""

    exit_code = 2


class WorkbookGroup(click.Group):
    """The `workbook` group: a command that needs a workspace and finds none says, in one
    line, how to make one (instead of a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except workspace.NoWorkspace as exc:
            raise NotInWorkspace(str(exc)) from None


def register(group: click.Group) -> None:
    """Add `init` to the `workbook` command group."""
    group.add_command(init)


@click.command()
@click.argument("directory", default=workspace.DEFAULT_DIR, type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a workspace in DIRECTORY (default: ./fastapi-advanced-workbook): a fresh copy
    of the exercises to edit, and the folder where your progress is kept.

    Refuses a folder that exists and is not empty (exit status 2), so it never
    overwrites your work.
    """
    try:
        slugs = workspace.create(directory)
    except workspace.WorkspaceExists as exc:
        raise FolderNotEmpty(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot create the workspace {directory}: {exc}") from None
    click.echo(f"Created the workspace {directory} with {len(slugs)} problems in {directory / workspace.EXERCISES}/.")
    click.echo(f"Next: cd {_quoted(directory)} && workbook check 1")


def _quoted(path: Path) -> str:
    return str(path) if os.name == "nt" else shlex.quote(str(path))

"""What every `workbook` command shares through click's context object (`ctx.obj`): the
manifest, read once per process, and the output style. Also the one parameter type for a
problem number, so every command parses `N` the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

from workbook.api import UnusableInput, UsageProblem, WorkbookError
from workbook.manifest import Manifest, ManifestError, Problem, load_manifest
from workbook.report import Style


@dataclass
class Session:
    """`ctx.obj` of the `workbook` group. The manifest is read on first use, so commands
    that never need it (`doctor` with a broken manifest, `--help`) still run."""

    manifest_path: Path | None = None  # None: WORKBOOK_MANIFEST, else the bundled workbook.toml
    _manifest: Manifest | None = field(default=None, repr=False)
    _style: Style | None = field(default=None, repr=False)

    @property
    def manifest(self) -> Manifest:
        """The manifest; a ClickException (exit 1) saying how to fix it when it cannot be read."""
        if self._manifest is None:
            try:
                self._manifest = load_manifest(self.manifest_path)
            except ManifestError as exc:
                raise click.ClickException(f"{exc}. Restore workbook.toml from the workbook's repository.") from exc
        return self._manifest

    @property
    def style(self) -> Style:
        """Colour and Unicode as the terminal supports them (Style.detect, once)."""
        if self._style is None:
            self._style = Style.detect()
        return self._style

    def use_manifest(self, path: Path) -> None:
        """Read the problems from `path` from now on (`dev check --manifest`)."""
        self.manifest_path, self._manifest = path, None


def session(ctx: click.Context | None = None) -> Session:
    """The Session of the running command (a fresh one outside a `workbook` invocation)."""
    ctx = ctx or click.get_current_context(silent=True)
    return ctx.ensure_object(Session) if ctx is not None else Session()


pass_session = click.make_pass_decorator(Session, ensure=True)


class ProblemNumber(click.ParamType):
    """A problem number from the manifest, e.g. `2`; converts to its Problem. Any other
    value is a usage error (exit 2) naming the numbers there are."""

    name = "N"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Problem:
        if isinstance(value, Problem):
            return value
        manifest = session(ctx).manifest
        try:
            return manifest.by_number(int(str(value)))
        except (ValueError, KeyError):
            numbers = ", ".join(str(problem.number) for problem in manifest.problems)
            self.fail(f"{value!r} is not a problem number; choose one of {numbers}.", param, ctx)


class UnusableInputError(click.ClickException):
    """`Error: <what is wrong with the folder or file given>`, one line: the usage lines
    click adds to a usage error would bury it, and the option itself was well formed."""

    exit_code = 2  # a usage error all the same: the command line must change


@contextmanager
def usage_errors() -> Iterator[None]:
    """The library's errors as click's: a UsageProblem exits 2 (naming its option), an
    UnusableInput exits 2 in one line, any other WorkbookError exits 1, each with its
    one-line message."""
    try:
        yield
    except UnusableInput as exc:
        raise UnusableInputError(str(exc)) from exc
    except UsageProblem as exc:
        if exc.option:
            raise click.BadParameter(str(exc), param_hint=exc.option) from exc
        raise click.UsageError(str(exc)) from exc
    except WorkbookError as exc:
        raise click.ClickException(str(exc)) from exc

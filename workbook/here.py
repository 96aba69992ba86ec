"""Folder awareness (issue 14, item 5): run inside `exercises/<slug>/` or below it, the
commands that take an optional problem number take that folder's problem."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from workbook.manifest import Manifest, Problem


def problem_here(manifest: Manifest, roots: Iterable[Path], cwd: Path | None = None) -> Problem | None:
    """The problem whose folder `<root>/<slug>/` holds `cwd` (default: the current
    directory), trying each root in turn; None when the directory is in none of them
    (or no longer exists)."""
    try:
        where = (cwd or Path.cwd()).resolve()
    except OSError:
        return None
    by_slug = {problem.slug: problem for problem in manifest.problems}
    for root in roots:
        try:
            relative = where.relative_to(root.resolve())
        except ValueError:
            continue
        if relative.parts and relative.parts[0] in by_slug:
            return by_slug[relative.parts[0]]
    return None

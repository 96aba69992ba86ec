"""The workbook's generated files, and the one command that regenerates them.

Two files are derived from the content and committed, because an installed or editable
workbook needs them without git:

- `workbook/starters.json`: the pristine stubs of exercises/, which `workbook reset` restores
  (the learner edits exercises/ in place, so it cannot be its own reference);
- `graders/CHECKSUMS.sha256`: the bundled graders' checksums, which `workbook grade` verifies.

`workbook dev update` rewrites both; `workbook dev check` fails while either is stale.

The starter copy cannot be made at build time instead: an editable install is built once, and
from then on (often before) exercises/ holds the learner's work, so only a copy made from a
clean checkout by the authors is pristine. A wheel could carry exercises/ as package data, but
the editable checkout, the README's install, would still need this copy.
"""

from __future__ import annotations

from pathlib import Path

from workbook import integrity, starters
from workbook.manifest import ROOT

# One owner: the refusal to grade with modified graders names the same command.
UPDATE_COMMAND = integrity.FIX_COMMAND
STARTERS = Path("workbook") / "starters.json"
CHECKSUMS = Path("graders") / "CHECKSUMS.sha256"


def update(root: Path = ROOT) -> list[str]:
    """Rewrite every generated file of the workbook checkout at `root`; one line per file
    written, naming it relative to `root`."""
    archive = starters.build(root / "exercises")
    (root / STARTERS).write_text(starters.dumps(archive), encoding="utf-8")
    count = integrity.write_checksums(root / "graders", root / CHECKSUMS)
    return [
        f"Wrote {STARTERS.as_posix()} ({len(archive['problems'])} problems).",
        f"Wrote {CHECKSUMS.as_posix()} ({count} files).",
    ]


def stale(root: Path = ROOT) -> list[str]:
    """Why a generated file of the checkout at `root` no longer matches its source, one
    sentence each (at most five per file); empty when all are current."""
    found = [
        (STARTERS, "exercises/", starters.disagreements(root / "exercises", root / STARTERS)),
        (CHECKSUMS, "graders/", integrity.differences(root / "graders", root / CHECKSUMS)),
    ]
    return [
        f"{generated.as_posix()} is stale ({'; '.join(reasons[:5])}{'; …' if len(reasons) > 5 else ''}): "
        f"after changing {source} on purpose, run `{UPDATE_COMMAND}`"
        for generated, source, reasons in found
        if reasons
    ]

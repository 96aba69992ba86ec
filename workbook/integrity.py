"""Which graders graded a run, and whether the bundled ones are the ones the workbook shipped.

The bundled graders/ folder comes with a checksum list (graders/CHECKSUMS.sha256, in the
format `sha256sum` writes and `sha256sum -c` reads). `workbook grade` refuses to grade with
bundled graders that differ from it, unless told to; every report then says so.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbook.manifest import BUNDLED_GRADERS, has_probe_menu
from workbook.sandbox import isolation
from workbook.words import counted, plural

CHECKSUMS = BUNDLED_GRADERS / "CHECKSUMS.sha256"
FIX_COMMAND = "workbook dev update"
# Never part of a grader set: Python's caches, and the checksum list itself.
IGNORED_PARTS = {"__pycache__", ".pytest_cache"}


@dataclass
class GraderSet:
    """The graders a run used, as every report describes them."""

    source: str  # bundled | custom
    path: Path
    digest: str
    verified: bool | None  # None: a custom set, nothing to verify against
    modified: list[str] = field(default_factory=list)
    allow_modified: bool = False
    # Which isolation grades the run (workbook/sandbox.py) and whether --no-sandbox allowed none.
    isolation: str = field(default_factory=lambda: _isolation_label())
    no_sandbox: bool = False

    @property
    def label(self) -> str:
        if self.source == "custom":
            return f"custom graders at {self.path}"
        return "bundled graders" + ("" if self.verified else " (MODIFIED)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "path": str(self.path),
            "digest": self.digest,
            "verified": self.verified,
            "modified": list(self.modified),
            "allow_modified_graders": self.allow_modified,
            "sandbox": self.isolation,
            "no_sandbox": self.no_sandbox,
        }


def grader_files(folder: Path) -> list[str]:
    """Every file of a grader set, as sorted POSIX paths relative to `folder`."""
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        cached = IGNORED_PARTS & set(relative.parts) or path.suffix == ".pyc"
        if path.is_file() and not cached and relative.as_posix() != CHECKSUMS.name:
            files.append(relative.as_posix())
    return sorted(files)


def checksum_lines(folder: Path) -> list[str]:
    return [f"{_sha256(folder / name)}  {name}" for name in grader_files(folder)]


def digest(folder: Path) -> str:
    """One fingerprint for a whole grader set, so a report names exactly what graded it."""
    text = "\n".join(checksum_lines(folder))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_checksums(folder: Path = BUNDLED_GRADERS, destination: Path | None = None) -> int:
    destination = destination or CHECKSUMS
    lines = checksum_lines(folder)
    destination.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def differences(folder: Path = BUNDLED_GRADERS, checksums: Path | None = None) -> list[str]:
    """What differs from the checksum list, one sentence per file; empty when intact."""
    checksums = checksums or CHECKSUMS
    try:
        listed = _read_checksums(checksums)
    except OSError:
        return [f"the checksum list {checksums} is missing"]
    found = {name: _sha256(folder / name) for name in grader_files(folder)}
    problems = [f"{name}: changed" for name in sorted(listed) if name in found and found[name] != listed[name]]
    problems += [f"{name}: missing" for name in sorted(listed) if name not in found]
    problems += [f"{name}: not in the checksum list" for name in sorted(found) if name not in listed]
    return problems


def _isolation_label() -> str:
    return isolation().label


def describe(graders: Path | None, *, allow_modified: bool = False) -> GraderSet:
    """The grader set a run will use: `graders` (an instructor's folder) or the bundled one."""
    if graders is not None and Path(graders).resolve() != BUNDLED_GRADERS.resolve():
        folder = Path(graders).resolve()
        return GraderSet("custom", folder, digest(folder), None, allow_modified=allow_modified)
    modified = differences()
    return GraderSet("bundled", BUNDLED_GRADERS, digest(BUNDLED_GRADERS), not modified, modified, allow_modified)


def warning(grader_set: GraderSet) -> str | None:
    """What `grade` and `check --dir` print on stderr before they go ahead: a line when the
    bundled graders are modified (their reports say it too), and one when some graders
    still import the learner's code (no probe menu), or None."""
    lines = [line for line in (_modified_warning(grader_set), _in_process_warning(grader_set.path)) if line]
    return "\n".join(lines) or None


def _modified_warning(grader_set: GraderSet) -> str | None:
    if grader_set.source != "bundled" or grader_set.verified:
        return None
    count = len(grader_set.modified)
    differ = plural(count, "differs", "differ")
    return f"Warning: grading with MODIFIED bundled graders ({counted(count, 'file')} {differ})."


def _in_process_warning(folder: Path) -> str | None:
    """Graders without a probe menu run in the sandbox beside the code they grade (issue 11),
    where that code can change their verdicts."""
    with contextlib.suppress(OSError):
        beside = sorted(
            f.name for f in folder.iterdir() if f.is_dir() and any(f.glob("test_*.py")) and not has_probe_menu(f)
        )
        if beside:
            return (
                f"Warning: the graders of {', '.join(beside)} have no probes.py, so they run beside the "
                "submitted code, which can change their verdicts; graders/README.md shows how to move them "
                "to app hosts."
            )
    return None


def refusal(grader_set: GraderSet) -> str | None:
    """Why grading must not go ahead with these graders, or None when it may."""
    if grader_set.source != "bundled" or grader_set.verified or grader_set.allow_modified:
        return None
    listed = "\n".join(f"  - {line}" for line in grader_set.modified[:20])
    return (
        "The bundled graders differ from their checksum list (graders/CHECKSUMS.sha256):\n"
        f"{listed}\n"
        "Restore graders/ from the workbook's repository, grade with your own copy via --graders DIR, "
        "or pass --allow-modified-graders (every report will say so). "
        f"Authors who changed the graders on purpose run `{FIX_COMMAND}`."
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_checksums(path: Path) -> dict[str, str]:
    listed = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            value, _, name = line.partition("  ")
            listed[name.strip()] = value.strip()
    return listed

"""`workbook doctor`: is this machine ready to grade? One line per finding, and for each
problem one thing to do about it."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from workbook.manifest import ManifestError, load_manifest
from workbook.results import Status
from workbook.state import state_dir
from workbook.words import counted
from workbook.workspace import CODE_ROOT, IN_CHECKOUT

# Each check imports what it examines inside itself: on a broken install (a missing
# dependency, a damaged starters.json) that check fails with a finding, not the doctor.

PYPROJECT = CODE_ROOT / "pyproject.toml"
DISTRIBUTION = "fastapi-advanced-workbook"
FIX_INSTALL = (
    "run `pip install -e .` in the workbook folder (inside your virtual environment)"
    if IN_CHECKOUT
    else "reinstall the workbook's wheel with `pip install --force-reinstall` (inside your virtual environment)"
)


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str = ""
    # A warning is worth reading but does not make doctor fail.
    warning: bool = False


def minimum_python(pyproject: Path = PYPROJECT) -> tuple[int, int]:
    """The oldest Python the workbook supports, from pyproject.toml's requires-python (in
    a wheel install, from the installed package's metadata)."""
    try:
        if IN_CHECKOUT:
            text = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["requires-python"]
        else:
            text = metadata.metadata(DISTRIBUTION)["Requires-Python"] or ""
    except (OSError, KeyError, tomllib.TOMLDecodeError, metadata.PackageNotFoundError):
        return (3, 11)
    found = re.search(r">=\s*(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else (3, 11)


def check_python(version: tuple[int, int, int] | None = None) -> Iterator[Finding]:
    version = version or sys.version_info[:3]
    shown = ".".join(str(part) for part in version)
    minimum = minimum_python()
    if tuple(version[:2]) >= minimum:
        yield Finding(True, f"Python {shown} ({sys.executable})")
    else:
        needed = ".".join(map(str, minimum))
        yield Finding(False, f"Python {shown} is too old", f"install Python {needed} or newer and recreate the venv")


def pinned_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """pyproject.toml's dependencies; in a wheel install, the same list from the installed
    package's metadata (optional extras are skipped by their markers)."""
    if not IN_CHECKOUT:
        return list(metadata.requires(DISTRIBUTION) or [])
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return list(data.get("project", {}).get("dependencies", []))


def check_versions(
    requirements: list[str] | None = None, installed: Callable[[str], str] | None = None
) -> Iterator[Finding]:
    """Each dependency of pyproject.toml installed, at the version the workbook was tested with."""
    from packaging.requirements import InvalidRequirement, Requirement

    installed = installed or metadata.version

    try:
        requirements = pinned_requirements() if requirements is None else requirements
    except (OSError, tomllib.TOMLDecodeError, metadata.PackageNotFoundError) as exc:
        yield Finding(False, f"cannot read the dependency list: {exc}", "restore pyproject.toml, or " + FIX_INSTALL)
        return
    wrong, checked = [], 0
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        checked += 1
        try:
            version = installed(requirement.name)
        except metadata.PackageNotFoundError:
            wrong.append(Finding(False, f"{requirement.name} is not installed", FIX_INSTALL))
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            wrong.append(
                Finding(
                    False,
                    f"{requirement.name} {version} is installed, tested with {requirement.specifier}",
                    FIX_INSTALL,
                )
            )
    yield from wrong or [Finding(True, f"{counted(checked, 'dependency', 'dependencies')} at their tested versions")]


def check_bcrypt() -> Iterator[Finding]:
    """The graders hash passwords with bcrypt through passlib; some version pairs break it."""
    try:
        from passlib.context import CryptContext

        context = CryptContext(schemes=["bcrypt"], deprecated="auto", bcrypt__rounds=4)
        hashed = context.hash("doctor-check")
        works = context.verify("doctor-check", hashed) and not context.verify("wrong", hashed)
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        yield Finding(False, f"bcrypt hashing through passlib fails: {type(exc).__name__}: {exc}", FIX_INSTALL)
        return
    if works:
        yield Finding(True, "bcrypt hashing through passlib works")
    else:
        yield Finding(False, "bcrypt through passlib verifies the wrong password", FIX_INSTALL)


def check_folder(label: str, folder: Path, create: bool = False) -> Iterator[Finding]:
    """Present and writable, proven by writing and removing a temporary file."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            yield Finding(False, f"the {label} {folder} is missing", _restore_hint(label))
            return
        handle, name = tempfile.mkstemp(dir=folder, prefix=".doctor-")
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        yield Finding(False, f"the {label} {folder} is not writable ({exc.strerror or exc})", _permission_hint(folder))
        return
    yield Finding(True, f"the {label} {folder} is writable")


def _restore_hint(label: str) -> str:
    if label.startswith("exercises"):
        return "restore exercises/ from the workbook's repository (or a backup with `workbook reset N --list`)"
    return "create it, or point WORKBOOK_STATE_DIR at a folder you can write"


def _permission_hint(folder: Path) -> str:
    return f"give yourself write access (`chmod u+w {folder}`) or set WORKBOOK_STATE_DIR to a writable folder"


def check_problems(exercises: Path) -> Iterator[Finding]:
    try:
        manifest = load_manifest()
    except ManifestError as exc:
        yield Finding(False, str(exc), "restore workbook.toml from the workbook's repository")
        return
    missing = [p for p in manifest.problems if not (exercises / p.slug).is_dir()]
    for problem in missing:
        yield Finding(
            False,
            f"problem {problem.number}'s folder {problem.slug}/ is missing from {exercises}",
            f"get it back with `workbook reset {problem.number} --yes`",
        )
    if not missing:
        yield Finding(True, f"all {len(manifest.problems)} problem folders are present")


def check_starters() -> Iterator[Finding]:
    from workbook.starters import StarterError, load

    try:
        count = len(load()["problems"])
    except StarterError as exc:
        yield Finding(False, str(exc), "restore workbook/starters.json from the workbook's repository")
        return
    yield Finding(True, f"starter files of {counted(count, 'problem')} available for `workbook reset`")


def check_grading(solutions: Path) -> Iterator[Finding]:
    """Grade problem 1's reference solution: proves the whole engine works end to end."""
    from workbook.engine import GraderError, grade

    try:
        problem = load_manifest().problems[0]
        result = grade(problem, solutions)
    except (ManifestError, GraderError, IndexError, OSError) as exc:
        yield Finding(False, f"grading cannot start: {exc}", "restore graders/ and workbook.toml; then " + FIX_INSTALL)
        return
    if result.status == Status.PASS:
        yield Finding(
            True, f"grading works (problem {problem.number}'s reference solution: {result.passed}/{result.total})"
        )
        return
    first = next((c for c in result.checks if c.status != Status.PASS), None)
    detail = f": {first.id}: {(first.message or '').splitlines()[0] if first.message else first.kind}" if first else ""
    yield Finding(
        False,
        f"grading problem {problem.number}'s reference solution fails{detail}",
        "re-install (`pip install -e .`); if that does not help, report it with `workbook doctor -v` output",
    )


def check_sandbox() -> Iterator[Finding]:
    """Whether submitted code can be graded in the bubblewrap sandbox (issue 11)."""
    from workbook.sandbox import isolation

    found = isolation()
    if found.active:
        yield Finding(True, f"{found.label}: submissions are graded without network, in a read-only file system")
        return
    yield Finding(
        True,
        f"sandbox: none ({found.reason}); your own `workbook check` works, but `grade` and `check --dir` "
        "need the sandbox or --no-sandbox",
        "on Debian/Ubuntu: `sudo apt-get install bubblewrap`",
        warning=True,
    )


def check_platform() -> Iterator[Finding]:
    if os.name == "nt":
        yield Finding(
            True,
            "Windows: hint, reset and run work, but grading needs fork and Unix sockets: use WSL",
            warning=True,
        )


def run_all(exercises: Path, solutions: Path, grading: bool = True) -> list[Finding]:
    findings: list[Finding] = []
    for group in (
        check_python(),
        check_platform(),
        check_versions(),
        check_bcrypt(),
        check_folder("exercises folder", exercises),
        check_problems(exercises),
        check_starters(),
        check_sandbox(),
        check_folder("state folder", state_dir(), create=True),
    ):
        findings.extend(group)
    if grading:
        findings.extend(check_grading(solutions))
    return findings

"""The pristine starter files of every problem, so `workbook reset` works without git.

exercises/ is the learner's working copy, so it cannot also be the reference for "what the
starter looked like". The reference is workbook/starters.json: a text archive generated
from a clean exercises/ by the workbook's authors, so `reset` works in an editable checkout
where exercises/ holds the learner's work. `workbook dev update` rewrites it (with the other
generated files, workbook/generated.py); `workbook dev check` fails while it disagrees with
exercises/.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from workbook.workspace import BUNDLED_EXERCISES

ARCHIVE = Path(__file__).with_name("starters.json")
EXERCISES = BUNDLED_EXERCISES
VERSION = 1
# Things Python, editors and operating systems leave in a folder; never part of a starter.
IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints"}
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swo", "~")
IGNORED_NAMES = {".DS_Store", "Thumbs.db"}


class StarterError(Exception):
    """The starter archive is missing, unreadable or lacks a problem."""


def problem_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every file in a problem folder worth keeping, sorted."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in IGNORED_DIRS for part in relative.parts[:-1]) or not path.is_file():
            continue
        if path.name in IGNORED_NAMES or path.name.endswith(IGNORED_SUFFIXES):
            continue
        yield relative.as_posix(), path


def read_folder(folder: Path) -> dict[str, bytes]:
    return {relative: path.read_bytes() for relative, path in problem_files(folder)}


def build(exercises: Path = EXERCISES) -> dict:
    """The archive document for every problem folder in `exercises`."""
    problems = {}
    for folder in sorted(p for p in exercises.iterdir() if p.is_dir() and p.name not in IGNORED_DIRS):
        problems[folder.name] = {relative: _encode(data) for relative, data in read_folder(folder).items()}
    return {"version": VERSION, "generated_by": "workbook dev update", "problems": problems}


def _encode(data: bytes) -> dict[str, str]:
    entry = {"sha256": hashlib.sha256(data).hexdigest()}
    try:
        # Text keeps the archive readable in a diff; JSON escapes keep \r and tabs exact.
        entry["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        entry["base64"] = base64.b64encode(data).decode("ascii")
    return entry


def _decode(entry: dict[str, str]) -> bytes:
    data = entry["text"].encode("utf-8") if "text" in entry else base64.b64decode(entry["base64"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise StarterError("the starter archive is corrupt (a checksum does not match)")
    return data


def dumps(document: dict) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def load(archive: Path = ARCHIVE) -> dict:
    try:
        document = json.loads(archive.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StarterError(f"cannot read the starter archive {archive}: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise StarterError(f"the starter archive {archive} has an unknown format")
    return document


def starter_files(slug: str, archive: Path = ARCHIVE) -> dict[str, bytes]:
    """The original files of problem `slug`: relative path -> exact bytes."""
    entries = load(archive)["problems"].get(slug)
    if entries is None:
        raise StarterError(f"the starter archive has no files for {slug}")
    try:
        return {relative: _decode(entry) for relative, entry in entries.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise StarterError(f"the starter archive is corrupt: {exc!r}") from exc


def disagreements(exercises: Path = EXERCISES, archive: Path = ARCHIVE) -> list[str]:
    """Why exercises/ and the archive differ, one line each; empty when they agree."""
    try:
        recorded = load(archive)["problems"]
    except StarterError as exc:
        return [str(exc)]
    current = build(exercises)["problems"]
    lines = []
    for slug in sorted(set(recorded) | set(current)):
        old, new = recorded.get(slug, {}), current.get(slug, {})
        for relative in sorted(set(old) | set(new)):
            if relative not in old:
                lines.append(f"{slug}/{relative}: in exercises/ but not in the archive")
            elif relative not in new:
                lines.append(f"{slug}/{relative}: in the archive but not in exercises/")
            elif old[relative]["sha256"] != new[relative]["sha256"]:
                lines.append(f"{slug}/{relative}: content differs")
    return lines

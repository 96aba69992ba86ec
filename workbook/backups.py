"""Reset a problem to its starter files, never losing the learner's work.

Every reset or restore first copies the problem's current files into a new timestamped folder
under <state folder>/backups/<slug>/, and only then writes anything into the problem folder.
Files the learner added are backed up and left in place: resetting only rewrites the
starter files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workbook.starters import read_folder, starter_files
from workbook.state import state_dir

META = "backup.json"
STAMP = "%Y%m%d-%H%M%S"


class BackupError(Exception):
    """A backup is missing or could not be written."""


@dataclass(frozen=True)
class Backup:
    path: Path
    created: str
    reason: str
    files: int

    @property
    def name(self) -> str:
        return self.path.name


def backups_root(slug: str) -> Path:
    return state_dir() / "backups" / slug


def changed_files(folder: Path, starters: dict[str, bytes]) -> list[str]:
    """The starter files that differ from (or are missing in) `folder`."""
    current = read_folder(folder)
    return sorted(relative for relative, data in starters.items() if current.get(relative) != data)


def back_up(folder: Path, slug: str, reason: str) -> Backup:
    """Copy every file of `folder` into a new backup folder and return it."""
    files = read_folder(folder)
    root = backups_root(slug)
    root.mkdir(parents=True, exist_ok=True)
    target = _new_folder(root)
    for relative, data in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        shutil.copymode(folder / relative, path)
    created = datetime.now().isoformat(timespec="seconds")
    meta = {"problem": slug, "created": created, "reason": reason, "source": str(folder), "files": sorted(files)}
    (target / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return Backup(target, created, reason, len(files))


def _new_folder(root: Path) -> Path:
    """A fresh folder named after the current second; -2, -3... when resets come fast."""
    stamp = datetime.now().strftime(STAMP)
    for attempt in range(1, 1000):
        candidate = root / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise BackupError(f"cannot create a backup folder in {root}")


def list_backups(slug: str) -> list[Backup]:
    """The problem's backups, oldest first."""
    root = backups_root(slug)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        meta = _read_meta(path)
        files = sum(1 for p in path.rglob("*") if p.is_file() and p.name != META)
        found.append(Backup(path, str(meta.get("created", "?")), str(meta.get("reason", "")), files))
    return found


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def find_backup(slug: str, name: str) -> Backup:
    """A backup by folder name, by path, or `latest`."""
    backups = list_backups(slug)
    if name == "latest":
        if not backups:
            raise BackupError("there is no backup of this problem yet")
        return backups[-1]
    for backup in backups:
        if name in (backup.name, str(backup.path)) or Path(name).resolve() == backup.path.resolve():
            return backup
    raise BackupError(f"no backup called {name!r}; list them with --list")


def backup_contents(backup: Backup) -> dict[str, bytes]:
    return {relative: data for relative, data in read_folder(backup.path).items() if relative != META}


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write each file atomically (temporary file, then rename): an interrupted reset leaves
    every file either old or new, never half written."""
    for relative, data in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def reset(folder: Path, slug: str) -> Backup | None:
    """Back up `folder`, then restore the starter files. None when nothing differed."""
    starters = starter_files(slug)
    if not changed_files(folder, starters):
        return None
    backup = back_up(folder, slug, "before reset")
    write_files(folder, starters)
    return backup


def restore(folder: Path, slug: str, backup: Backup) -> Backup:
    """Back up `folder`, then write the files of `backup` into it."""
    files = backup_contents(backup)
    safety = back_up(folder, slug, f"before restoring {backup.name}")
    write_files(folder, files)
    return safety

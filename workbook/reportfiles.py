"""The files of a class run (OUT/submissions/NAME.json, gradebook.csv, run.json): written
atomically, named safely, and checked before `merge` trusts them.

A report read back from disk is untrusted (a shard's artifact can be edited by anyone who
can push to the repository), so `merge` validates it against the report's shape and never
derives a path from its contents other than through `report_name`.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from workbook.jsonout import to_data, to_json
from workbook.results import Status
from workbook.safetext import file_name, no_legacy_commands, valid_text

STATUSES = Status.graded()


def report_name(submission: str) -> str:
    """The report file of a submission (its shown name): safe, bounded, collision-free."""
    return file_name(submission, ".json")


def atomic_write(path: Path, text: str) -> None:
    """Write `text` as UTF-8 to `path` so that readers see either the old file or the new
    one, never a partial one (a temporary file in the same folder, then os.replace).
    Raises OSError when the folder cannot be written."""
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def cleaned(value: Any) -> Any:
    """A JSON value with every string made valid UTF-8 ("\\udcff" in a JSON file decodes to
    a lone surrogate, which no UTF-8 writer accepts)."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        return [cleaned(item) for item in value]
    if isinstance(value, dict):
        return {valid_text(key): cleaned(item) for key, item in value.items()}
    return value


def report_problem(document: Any) -> str | None:
    """What is wrong with a submission report, in a few words; None when it has the shape
    of the report `workbook grade` writes (formats.json_document plus `submission`)."""
    if not isinstance(document, dict):
        return "not a JSON object"
    if not isinstance(document.get("submission"), str) or not document["submission"].strip():
        return '"submission" is not a non-empty string'
    if not isinstance(document.get("problems"), list):
        return '"problems" is not a list'
    for index, entry in enumerate(document["problems"]):
        found = _entry_problem(entry)
        if found:
            return f"problems[{index}]: {found}"
    if not isinstance(document.get("graders", {}), dict):
        return '"graders" is not an object'
    if document.get("error") is not None and not isinstance(document["error"], str):
        return '"error" is neither a string nor null'
    return None


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    if not isinstance(entry.get("slug"), str):
        return '"slug" is not a string'
    if entry.get("status") not in STATUSES:
        return f'"status" is not one of {", ".join(STATUSES)}'
    for key in ("passed", "total", "score", "max_score"):
        if not _count(entry.get(key, 0)):
            return f'"{key}" is not a finite number >= 0'
    if isinstance(entry.get("number", 0), bool) or not isinstance(entry.get("number", 0), int):
        return '"number" is not a whole number'
    if not isinstance(entry.get("title", ""), str):
        return '"title" is not a string'
    checks = entry.get("checks", [])
    if not isinstance(checks, list):
        return '"checks" is not a list'
    for index, check in enumerate(checks):
        found = _check_problem(check)
        if found:
            return f"checks[{index}]: {found}"
    return None


def _check_problem(check: Any) -> str | None:
    """The class page reads id, title and status of every check."""
    if not isinstance(check, dict):
        return "not an object"
    if not isinstance(check.get("id"), str) or not isinstance(check.get("title", ""), str):
        return '"id" or "title" is not a string'
    if check.get("status") not in STATUSES:
        return f'"status" is not one of {", ".join(STATUSES)}'
    return None


def _count(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value >= 0


def dumps(document: Any) -> str:
    """A report as the workbook writes it (indented, UTF-8 text kept readable). No line of
    JSON can start with `::`; the legacy `##[` is neutralised, so `cat` in a CI log is safe."""
    # cleaned(): the workbook's own strings can carry a submission's undecodable folder name.
    return no_legacy_commands(to_json(cleaned(to_data(document))))

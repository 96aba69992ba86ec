"""The learner's progress, kept in .workbook/state.json in the workbook root.

Written atomically (temporary file, then rename); a missing or corrupt file simply means
"nothing checked yet", never a crash.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbook.manifest import ROOT

STATE_DIR = ROOT / ".workbook"
STATE_FILE = "state.json"
VERSION = 1


def state_path() -> Path:
    return Path(os.environ.get("WORKBOOK_STATE_DIR") or STATE_DIR) / STATE_FILE


def load_state() -> dict[str, Any]:
    try:
        data = json.loads(state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _empty()
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("problems"), dict):
        return _empty()
    return data


def _empty() -> dict[str, Any]:
    return {"version": VERSION, "problems": {}}


def save_state(data: dict[str, Any]) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def problem_status(data: dict[str, Any], slug: str) -> dict[str, Any] | None:
    entry = data["problems"].get(slug)
    return entry if isinstance(entry, dict) else None


def record_result(data: dict[str, Any], slug: str, status: str, passed: int, total: int) -> None:
    data["problems"][slug] = {
        "status": status,
        "passed": passed,
        "total": total,
        "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- hints and backups (the learner's loop) --------------------------------------------
# Hints live beside "problems", not inside an entry: record_result() rewrites entries whole.


def state_dir() -> Path:
    """The folder holding the state file, backups included."""
    return state_path().parent


def hints_revealed(data: dict[str, Any], slug: str) -> int:
    """How many of problem `slug`'s hints the learner has seen."""
    hints = data.get("hints")
    value = hints.get(slug, 0) if isinstance(hints, dict) else 0
    return value if isinstance(value, int) and value >= 0 else 0


def record_hints_revealed(data: dict[str, Any], slug: str, count: int) -> None:
    hints = data.get("hints")
    if not isinstance(hints, dict):
        hints = data["hints"] = {}
    hints[slug] = max(0, int(count))


def is_solved(data: dict[str, Any], slug: str) -> bool:
    return (problem_status(data, slug) or {}).get("status") == "pass"


def with_results(before: dict[str, Any], results: Iterable[Any]) -> dict[str, Any]:
    """The progress after grading: the state read *before* grading plus these results
    (ProblemResults), so nothing the graded code wrote to the state file meanwhile
    survives. The caller saves it."""
    data = copy.deepcopy(before)
    for result in results:
        record_result(data, result.problem.slug, result.status, result.passed, result.total)
    return data


def save_or_warn(data: dict[str, Any]) -> str | None:
    """Save the state; on failure the sentence to show the learner instead of a crash."""
    try:
        save_state(data)
    except OSError as exc:
        return f"Note: could not save your progress ({exc})."
    return None

"""The learner's progress, kept in .workbook/state.json in the learner's workspace.

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

from workbook.workspace import state_folder

STATE_FILE = "state.json"
VERSION = 1


def state_path() -> Path:
    """Raises workspace.NoWorkspace outside a workspace (wheel install)."""
    return state_folder() / STATE_FILE


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


def record_result(
    data: dict[str, Any],
    slug: str,
    status: str,
    passed: int,
    total: int,
    checks: dict[str, str] | None = None,
) -> None:
    """Record a problem's current result (`checks`: each check id's status, when known),
    keeping its best result so far under "best": breaking a solved problem lowers the
    current result, never the progress (see is_solved)."""
    previous = problem_status(data, slug)
    entry: dict[str, Any] = {
        "status": status,
        "passed": passed,
        "total": total,
        "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if checks is not None:
        entry["checks"] = dict(checks)
    entry["best"] = _better(best_result(previous), _summary(entry))
    data["problems"][slug] = entry


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
    """True once every check of the problem has passed in some run, even if it fails now:
    the progress counts what the learner achieved (issue 14: breaking a solved problem
    must not silently lower the count; `status` shows it failing now instead)."""
    return (best_result(problem_status(data, slug)) or {}).get("status") == "pass"


def fails_now(data: dict[str, Any], slug: str) -> bool:
    """Solved before, but the latest result does not pass."""
    entry = problem_status(data, slug)
    return is_solved(data, slug) and entry is not None and entry.get("status") != "pass"


def best_result(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The best result recorded for a problem entry; an entry written before "best"
    existed (older state files) is its own best."""
    if entry is None:
        return None
    best = entry.get("best")
    return best if isinstance(best, dict) else _summary(entry)


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry.get(key) for key in ("status", "passed", "total", "checked_at")}


def _better(best: dict[str, Any] | None, latest: dict[str, Any]) -> dict[str, Any]:
    """A pass beats anything; otherwise more passed checks win, and a tie goes to the latest."""
    if best is None:
        return latest
    if (best.get("status") == "pass") != (latest.get("status") == "pass"):
        return best if best.get("status") == "pass" else latest
    return latest if as_count(latest.get("passed")) >= as_count(best.get("passed")) else best


def as_count(value: Any) -> int:
    """A count read from the state file, which anyone can edit: a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def with_results(
    before: dict[str, Any], results: Iterable[Any], all_check_ids: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The progress after grading: the state read *before* grading plus these results
    (ProblemResults), so nothing the graded code wrote to the state file meanwhile
    survives. The caller saves it.

    `all_check_ids` (slug -> every check id of the problem) marks a partial run (`-k`):
    the checks it ran replace their earlier results, and the problem's current result is
    recomputed over all its checks; a check never run counts as not passed."""
    data = copy.deepcopy(before)
    for result in results:
        slug = result.problem.slug
        ran = {check.id: check.status for check in result.checks}
        if all_check_ids is None or slug not in all_check_ids:
            record_result(data, slug, result.status, result.passed, result.total, ran)
            continue
        merged = _merge_checks(problem_status(data, slug), all_check_ids[slug], ran)
        record_result(data, slug, _overall(merged), _passed(merged), len(merged), merged)
    return data


def _merge_checks(entry: dict[str, Any] | None, ids: list[str], ran: dict[str, str]) -> dict[str, str]:
    known = entry.get("checks") if entry else None
    if not isinstance(known, dict):
        # Older state files kept no per-check results; a passing entry means all passed.
        known = dict.fromkeys(ids, "pass") if entry and entry.get("status") == "pass" else {}
    return {check_id: str(ran.get(check_id, known.get(check_id, "not run"))) for check_id in ids}


def _passed(checks: dict[str, str]) -> int:
    return sum(status == "pass" for status in checks.values())


def _overall(checks: dict[str, str]) -> str:
    """The same rule as a graded problem's status (engine.ProblemResult.status)."""
    statuses = set(checks.values())
    if statuses == {"pass"}:
        return "pass"
    return "error" if statuses == {"error"} else "fail"


def save_or_warn(data: dict[str, Any]) -> str | None:
    """Save the state; on failure the sentence to show the learner instead of a crash."""
    try:
        save_state(data)
    except OSError as exc:
        return f"Note: could not save your progress ({exc})."
    return None

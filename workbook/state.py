"""The learner's progress, kept in .workbook/state.json in the learner's workspace.

Written atomically (temporary file, then rename); a missing or corrupt file simply means
"nothing checked yet", never a crash. The file is read into a `Progress` (dataclasses below)
and written back from one, in the same format: state files of older versions still load.

The format (version 1), keys sorted:
    {"version": 1,
     "problems": {SLUG: {"status": "pass" | "fail" | "error", "passed": N, "total": N,
                         "checked_at": ISO 8601 UTC, "checks": {CHECK_ID: STATUS, ...},
                         "best": {"status", "passed", "total", "checked_at"}}, ...},
     "hints": {SLUG: HINTS_SEEN, ...}}
"checks" (since the partial runs of `-k`) and "best" (since issue 14) may be missing in
older files; "hints" until the first hint is shown.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbook.jsonout import to_json
from workbook.results import Status, overall
from workbook.workspace import state_folder

STATE_FILE = "state.json"
VERSION = 1


def state_path() -> Path:
    """Raises workspace.NoWorkspace outside a workspace (wheel install)."""
    return state_folder() / STATE_FILE


def as_count(value: Any) -> int:
    """A count read from the state file, which anyone can edit: a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _graded_status(value: Any) -> Status:
    """A problem's status read from the file; anything but pass or error counts as fail."""
    status = Status.parse(value)
    return status if status in (Status.PASS, Status.ERROR) else Status.FAIL


@dataclass
class Attempt:
    """One result of a problem: its status and how many of its checks passed, when."""

    status: Status
    passed: int
    total: int
    checked_at: str | None = None  # ISO 8601, UTC, to the second; None in old files

    @classmethod
    def from_json(cls, data: Any) -> Attempt | None:
        """The attempt an entry of the file describes; None when it is not an object."""
        if not isinstance(data, dict):
            return None
        checked_at = data.get("checked_at")
        return cls(
            status=_graded_status(data.get("status")),
            passed=as_count(data.get("passed")),
            total=as_count(data.get("total")),
            checked_at=checked_at if isinstance(checked_at, str) else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "passed": self.passed, "total": self.total, "checked_at": self.checked_at}

    def better_than(self, other: Attempt) -> bool:
        """A pass beats anything; otherwise more passed checks win, and a tie goes to self
        (the latest, as record() asks it)."""
        if (self.status == Status.PASS) != (other.status == Status.PASS):
            return self.status == Status.PASS
        return self.passed >= other.passed


@dataclass
class ProblemProgress(Attempt):
    """A problem's entry: its latest result, each check's latest status when known, and
    its best result so far (None in files older than "best": the latest is the best)."""

    checks: dict[str, Status] | None = None
    best: Attempt | None = None

    @classmethod
    def from_json(cls, data: Any) -> ProblemProgress | None:
        latest = Attempt.from_json(data)
        if latest is None:
            return None
        checks = data.get("checks")
        return cls(
            **vars(latest),
            checks={str(k): Status.parse(v) or Status.NOT_RUN for k, v in checks.items()}
            if isinstance(checks, dict)
            else None,
            best=Attempt.from_json(data.get("best")),
        )

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if self.checks is not None:
            data["checks"] = dict(self.checks)
        if self.best is not None:
            data["best"] = self.best.to_json()
        return data

    @property
    def latest(self) -> Attempt:
        return Attempt(self.status, self.passed, self.total, self.checked_at)

    @property
    def best_result(self) -> Attempt:
        return self.best if self.best is not None else self.latest

    @property
    def solved(self) -> bool:
        """True once every check of the problem has passed in some run, even if it fails now:
        the progress counts what the learner achieved (issue 14: breaking a solved problem
        must not silently lower the count; `status` shows it failing now instead)."""
        return self.best_result.status == Status.PASS

    @property
    def fails_now(self) -> bool:
        """Solved before, but the latest result does not pass."""
        return self.solved and self.status != Status.PASS


@dataclass
class Progress:
    """The whole state file: each problem's entry by slug, and how many hints of each
    problem the learner has seen (None until the first; kept apart from the entries, which
    record_result() rewrites whole)."""

    problems: dict[str, ProblemProgress] = field(default_factory=dict)
    hints: dict[str, int] | None = None
    version: int = VERSION

    @classmethod
    def from_json(cls, data: Any) -> Progress:
        """The progress a file's JSON holds; an empty one when it is not a version-1 state.
        Entries and hint counts someone broke by hand are left out, never a crash."""
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("problems"), dict):
            return cls()
        problems = {slug: ProblemProgress.from_json(entry) for slug, entry in data["problems"].items()}
        hints = data.get("hints")
        return cls(
            problems={slug: entry for slug, entry in problems.items() if entry is not None},
            hints={slug: n for slug, n in hints.items() if isinstance(n, int) and n >= 0}
            if isinstance(hints, dict)
            else None,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": self.version, "problems": self.problems}
        if self.hints is not None:
            data["hints"] = self.hints
        return data


def load_state() -> Progress:
    try:
        data = json.loads(state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Progress()
    return Progress.from_json(data)


def save_state(data: Progress) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(to_json(data, sort_keys=True, ascii_only=True))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def problem_status(data: Progress, slug: str) -> ProblemProgress | None:
    return data.problems.get(slug)


def record_result(
    data: Progress,
    slug: str,
    status: str,
    passed: int,
    total: int,
    checks: Mapping[str, str] | None = None,
) -> None:
    """Record a problem's current result (`checks`: each check id's status, when known),
    keeping its best result so far under "best": breaking a solved problem lowers the
    current result, never the progress (see is_solved)."""
    previous = problem_status(data, slug)
    latest = Attempt(Status(status), passed, total, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    best = previous.best_result if previous is not None else None
    data.problems[slug] = ProblemProgress(
        **vars(latest),
        checks={check_id: Status(value) for check_id, value in checks.items()} if checks is not None else None,
        best=latest if best is None or latest.better_than(best) else best,
    )


# --- hints and backups (the learner's loop) --------------------------------------------


def state_dir() -> Path:
    """The folder holding the state file, backups included."""
    return state_path().parent


def hints_revealed(data: Progress, slug: str) -> int:
    """How many of problem `slug`'s hints the learner has seen."""
    return (data.hints or {}).get(slug, 0)


def record_hints_revealed(data: Progress, slug: str, count: int) -> None:
    if data.hints is None:
        data.hints = {}
    data.hints[slug] = max(0, int(count))


def is_solved(data: Progress, slug: str) -> bool:
    """See ProblemProgress.solved; False for a problem never checked."""
    entry = problem_status(data, slug)
    return entry is not None and entry.solved


def fails_now(data: Progress, slug: str) -> bool:
    """Solved before, but the latest result does not pass."""
    entry = problem_status(data, slug)
    return entry is not None and entry.fails_now


def with_results(
    before: Progress, results: Iterable[Any], all_check_ids: dict[str, list[str]] | None = None
) -> Progress:
    """The progress after grading: the state read *before* grading plus these results
    (ProblemResults), so nothing the graded code wrote to the state file meanwhile
    survives. The caller saves it.

    `all_check_ids` (slug -> every check id of the problem) marks a partial run (`-k`):
    the checks it ran replace their earlier results, and the problem's current result is
    recomputed over all its checks; a check never run counts as not passed."""
    data = copy.deepcopy(before)
    for result in results:
        slug = result.problem.slug
        ran = {check.id: Status(check.status) for check in result.checks}
        if all_check_ids is None or slug not in all_check_ids:
            record_result(data, slug, result.status, result.passed, result.total, ran)
            continue
        merged = _merge_checks(problem_status(data, slug), all_check_ids[slug], ran)
        passed = sum(status == Status.PASS for status in merged.values())
        # The same rule as a graded problem's status (engine.ProblemResult.status).
        record_result(data, slug, overall(merged.values()), passed, len(merged), merged)
    return data


def _merge_checks(entry: ProblemProgress | None, ids: list[str], ran: dict[str, Status]) -> dict[str, Status]:
    known = entry.checks if entry is not None else None
    if known is None:
        # Older state files kept no per-check results; a passing entry means all passed.
        known = dict.fromkeys(ids, Status.PASS) if entry is not None and entry.status == Status.PASS else {}
    return {check_id: ran.get(check_id, known.get(check_id, Status.NOT_RUN)) for check_id in ids}


def save_or_warn(data: Progress) -> str | None:
    """Save the state; on failure the sentence to show the learner instead of a crash."""
    try:
        save_state(data)
    except OSError as exc:
        return f"Note: could not save your progress ({exc})."
    return None

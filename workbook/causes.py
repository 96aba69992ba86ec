"""One root cause, shown once (issue 14, item 2).

Checks that did not pass for the same reason get the same `cause` id: the same import
error, the same exception raised by the learner's code at the same line, the same hang (a
check stopped where an earlier one hung counts as that hang), the same reason for not
running, the same wrong status for the same request (method and path, ids as {n}), the
same mismatch (the same first line of a failure message). Every other
failure is a cause of its own. The text report shows a shared cause
once with the checks it affects; JSON and the other formats keep one entry per check,
each carrying the id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from workbook.results import Kind, Status
from workbook.words import counted

if TYPE_CHECKING:  # engine imports this module: its type only, without the cycle
    from workbook.engine import CheckResult

# A frame line of grading.learner_frames: "  p1_dependency_chain/app.py, line 42, in create_user".
FRAME_LINE = re.compile(r"^\s+\S.*, line \d+, in \S+$")
SHARED_KINDS = (Kind.IMPORT, Kind.NOT_RUN, Kind.EXIT, Kind.INTERNAL)


def cause_key(check: CheckResult, by_id: dict[str, CheckResult]) -> str:
    """What makes two results fail for the same reason; unique per check when nothing does."""
    if check.status == Status.PASS:
        return ""
    if check.kind == Kind.TIMEOUT and check.blocked_by in by_id:
        check = by_id[check.blocked_by]
    if check.site:  # stopped, or failed after a wait, while the learner's code was stuck there
        return f"hang:{check.site.get('file')}:{check.site.get('function')}"
    if check.cause:  # a key the grading process gave (missing_answer_key)
        return f"given:{check.cause}"
    if check.kind in SHARED_KINDS:
        return f"{check.kind}:{check.message}"
    if check.kind == Kind.LEARNER:
        lines = (check.message or "").splitlines()
        frames = [line.strip() for line in lines if FRAME_LINE.match(line)]
        if lines and frames:
            return f"learner:{lines[0]}:{frames[-1]}"
    status = status_mismatch(check) if check.kind == Kind.ASSERTION else None
    if status is not None:
        # The same wrong status for the same request is one step to fix, whatever each
        # check goes on to say about why it needed that status.
        return f"status:{status}"
    if check.kind == Kind.ASSERTION and check.message:
        # The first line says what differed and what to change ("status 200, expected 201.
        # Creating a user should answer 201 Created."): checks that fail with the same first
        # line fail on one step for one reason, and a learner fixes them in one place.
        return f"mismatch:{check.message.splitlines()[0]}"
    return f"own:{check.id}"


# The first line of grading.expect_status's message: what differed, by its direction.
STATUS_MISMATCH = re.compile(
    r"^((?:refused with |admitted with )?status \d+, expected (?:a refusal with )?\d+(?: or \d+)*)\.(.*)$"
)
# The `sent:` line of grading.fail: "  sent:     POST /users/12?x=1 with body {...}".
SENT_REQUEST = re.compile(r"^\s+sent:\s+([A-Z]+) (/\S*)")
# A path segment holding a digit is an id (or other test data) of this run.
DATA_SEGMENT = re.compile(r"(?<=/)[^/]*\d[^/]*")


def status_mismatch(check: CheckResult) -> str | None:
    """ "status 200, expected 201 (POST /users)": the wrong status and the request it
    answered, with ids in the path shown as {n}; None unless the message is a status
    mismatch with the request it was sent for."""
    lines = (check.message or "").splitlines()
    mismatch = STATUS_MISMATCH.match(lines[0]) if lines else None
    sent = next((found for found in map(SENT_REQUEST.match, lines[1:]) if found), None)
    if mismatch is None or sent is None:
        return None
    path = DATA_SEGMENT.sub("{n}", sent.group(2).split("?", 1)[0])
    return f"{mismatch.group(1)} ({sent.group(1)} {path})"


# A word holding a digit is test data (a random user name, room or id), not the reason.
DATA_WORD = re.compile(r"\S*\d\S*")
JSON_OBJECT = re.compile(r"\{[^{}]*\}")
EVENT_TYPE = re.compile(r'"type":\s*"(\w+)"')


def missing_answer_key(message: str) -> str:
    """The reason of a failure after a wait that got no answer: its first line without the
    random data, so every check that waited in vain for the same event shares it."""
    first = message.splitlines()[0] if message else ""
    return "wait:" + DATA_WORD.sub("…", JSON_OBJECT.sub(_event_type, first))


def _event_type(match: re.Match[str]) -> str:
    # Which event was awaited is the reason; the room, user and count in it are data.
    kind = EVENT_TYPE.search(match.group(0))
    return f"{{type {kind.group(1)}}}" if kind else "{…}"


def assign_causes(checks: Sequence[CheckResult], prefix: str = "c") -> list[CheckResult]:
    """`checks` with `cause` set: "c1", "c2", ... in order of first appearance; "" for a pass."""
    by_id = {check.id: check for check in checks}
    ids: dict[str, str] = {}
    result = []
    for check in checks:
        key = cause_key(check, by_id)
        if key and key not in ids:
            ids[key] = f"{prefix}{len(ids) + 1}"
        result.append(replace(check, cause=ids.get(key, "")))
    return result


def groups(checks: Sequence[CheckResult]) -> dict[str, list[CheckResult]]:
    """The checks of each cause shared by two or more of them, by cause id, in check order."""
    members: dict[str, list[CheckResult]] = {}
    for check in checks:
        if check.cause:
            members.setdefault(check.cause, []).append(check)
    return {cause: found for cause, found in members.items() if len(found) > 1}


def headline(members: Sequence[CheckResult]) -> str:
    """ "19 checks could not run: <the first line of the shared message>"."""
    return "{}: {}".format(*headline_parts(members))


def headline_parts(members: Sequence[CheckResult]) -> tuple[str, str]:
    """The headline in two parts: the workbook's own words ("19 checks could not run") and
    the reason, which may quote learner text (a Markdown summary keeps it inert)."""
    first = members[0]
    verb = "could not run" if all(check.status == Status.ERROR for check in members) else "failed"
    if first.kind == Kind.TIMEOUT:
        verb = "were stopped"
    text = (first.message or "").splitlines()[0] if first.message else "no message"
    status = status_mismatch(first)
    if status is not None and all(status_mismatch(check) == status for check in members):
        text = status
    if first.raised and all(check.raised for check in members):
        # "app.py line 42 raised NameError: ...": the one place to fix (the same exception
        # type at the same line; its text may hold data that differs from check to check).
        text = first.raised
    return f"{counted(len(members), 'check')} {verb}", text


def details(members: Sequence[CheckResult]) -> list[str]:
    """The lines shown under a shared cause's headline: the first check's message without
    what the headline already says."""
    lines = (members[0].message or "").splitlines()
    mismatch = STATUS_MISMATCH.match(lines[0]) if lines and status_mismatch(members[0]) else None
    if mismatch is not None and len({(check.message or "").splitlines()[0] for check in members}) > 1:
        # The headline says what differed and for which request; why the first check needed
        # that status is still worth its line.
        why = mismatch.group(2).strip()
        return [why, *lines[1:]] if why else lines[1:]
    if members[0].raised:
        # The headline names the exception and its line; the first line is kept when it
        # says something else (what differed, or what to do about a library error).
        return [line for line in lines if not line.startswith("Your code raised ")]
    return lines[1:]

"""The words a result is made of: a check's status, what kind of failure it was, and the
phase a grading process is in. They are StrEnums, so a JSON document, a state file or a
CSV cell carries the very same strings as before ("pass", "timeout"), and a member compares
equal to its string.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Status(StrEnum):
    """A check's, or a problem's, result. NOT_RUN appears only in the progress file, for a
    check a partial run (`-k`) never ran."""

    PASS = "pass"
    FAIL = "fail"  # the learner's code ran and did something else than asked
    ERROR = "error"  # the learner's code could not be run or graded at all
    NOT_RUN = "not run"

    @classmethod
    def graded(cls) -> tuple[Status, ...]:
        """The statuses a grading can give (and a report may carry)."""
        return (cls.PASS, cls.FAIL, cls.ERROR)

    @classmethod
    def parse(cls, value: object) -> Status | None:
        """The status a string read from a file or an event names; None for anything else."""
        try:
            return cls(value) if isinstance(value, str) else None
        except ValueError:
            return None


def overall(statuses: Iterable[str]) -> Status:
    """A problem's status from its checks' statuses: pass when all pass, error when all are
    errors, else fail (also when there are none). One rule for the engine and the progress."""
    seen = set(statuses)
    if seen == {Status.PASS}:
        return Status.PASS
    return Status.ERROR if seen == {Status.ERROR} else Status.FAIL


class Kind(StrEnum):
    """What happened in a check (CheckResult.kind): the runner and the engine set it, causes
    groups by it, and JUnit's `type` and Gradescope's tags show it."""

    NONE = ""  # not said (a result made by hand)
    PASS = "pass"
    ASSERTION = "assertion"  # a check's assertion failed: the answer differed
    LEARNER = "learner"  # the learner's code raised, or ended the process
    IMPORT = "import"  # the learner's code could not be imported
    TIMEOUT = "timeout"  # stopped at a time limit
    EXIT = "exit"  # the grading process ended, or flooded its channel
    INTERNAL = "internal"  # the workbook itself failed
    NOT_RUN = "not-run"  # grading stopped (Ctrl-C) before this check ran

    @classmethod
    def parse(cls, value: object) -> Kind:
        """The kind a grading process reported; NONE for anything the workbook does not know."""
        try:
            return cls(value) if isinstance(value, str) else cls.NONE
        except ValueError:
            return cls.NONE


class Phase(StrEnum):
    """Where a grading process is, as the engine follows its events (engine._Watch)."""

    STARTUP = "startup"  # started, not yet ready
    READY = "ready"  # the runner is up; the learner's code is not imported yet
    IMPORT = "import"  # importing the learner's code, under the check time limit
    CHECKS = "checks"  # imported; between checks
    CHECK = "check"  # one check running, under the check time limit

    @property
    def unlimited(self) -> bool:
        """True in the phases no time limit applies to (the problem's deadline still does)."""
        return self in (Phase.READY, Phase.CHECKS)


# A check that could get no app host because the sandboxed server that starts them stopped
# (workbook/hostkit.StarterGone). Written by the runner; the engine recognises it by its start.
STARTER_STOPPED = (
    "Stopped: the process that starts your app in the sandbox stopped working ({reason}), so this "
    "check could not run. Does your code send signals to other processes (os.kill)?"
)

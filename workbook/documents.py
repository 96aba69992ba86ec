"""The JSON report as dataclasses: `Report` is what `check --format json` prints (report
version 1: what was graded, each check's result, points and the grader set), and
`ClassDocument` a submission's report in a class run (OUT/submissions/NAME.json), which
`grade` writes, `merge` and `--resume` read back, and the gradebook, the class page and the
closing summary are built from: report v1 plus the class run's own keys (error, timed_out,
submission, fingerprint, duration_s).

`to_json` writes the keys in that order; keys this version does not know are kept as they
were read (`extra`), so a report from a newer workbook survives a merge. `from_json`
expects a document reportfiles.report_problem accepted, and fills what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbook.results import Status
from workbook.safetext import shown_name

if TYPE_CHECKING:
    from pathlib import Path

    from workbook.engine import CheckResult, ProblemResult

REPORT_VERSION = 1


def points(value: float) -> float:
    """2.0 -> 2, so reports show points as people write them."""
    return int(value) if float(value).is_integer() else round(value, 4)


def percent(score: float, max_score: float) -> float:
    return round(100.0 * score / max_score, 2) if max_score else 0.0


def _known(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The keys of `data` not in `keys`: kept as they were."""
    return {key: value for key, value in data.items() if key not in keys}


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float:
    """A finite number >= 0 as the file wrote it (2 stays 2), else 0."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


@dataclass
class CheckEntry:
    """One check's result in a report (report v1's `checks` items)."""

    id: str
    title: str
    status: Status
    message: str | None = None
    duration_s: float = 0.0
    cause: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KEYS = ("id", "title", "status", "message", "duration_s", "cause")

    @classmethod
    def of(cls, check: CheckResult) -> CheckEntry:
        return cls(check.id, check.title, check.status, check.message, check.duration_s, check.cause or None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckEntry:
        return cls(
            id=_text(data.get("id"), "?"),
            title=_text(data.get("title"), _text(data.get("id"), "?")),
            status=Status.parse(data.get("status")) or Status.ERROR,
            message=_optional_text(data.get("message")),
            duration_s=_number(data.get("duration_s")),
            cause=_optional_text(data.get("cause")),
            extra=_known(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "message": self.message,
            "duration_s": self.duration_s,
            "cause": self.cause,
            **self.extra,
        }


@dataclass
class ProblemEntry:
    """One problem's result in a report (report v1's `problems` items, with points)."""

    number: int
    slug: str
    title: str
    status: Status
    passed: int = 0
    total: int = 0
    seed: int = 0
    checks: list[CheckEntry] = field(default_factory=list)
    score: float = 0
    max_score: float = 0
    extra: dict[str, Any] = field(default_factory=dict)

    KEYS = ("number", "slug", "title", "status", "passed", "total", "seed", "checks", "score", "max_score")

    @classmethod
    def of(cls, result: ProblemResult) -> ProblemEntry:
        problem = result.problem
        return cls(
            number=problem.number,
            slug=problem.slug,
            title=problem.title,
            status=result.status,
            passed=result.passed,
            total=result.total,
            seed=result.seed,
            checks=[CheckEntry.of(check) for check in result.checks],
            score=points(result.score),
            max_score=points(result.max_score),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProblemEntry:
        number = data.get("number")
        checks = data.get("checks")
        return cls(
            number=number if isinstance(number, int) and not isinstance(number, bool) else 0,
            slug=_text(data.get("slug"), "?"),
            title=_text(data.get("title"), _text(data.get("slug"), "?")),
            status=Status.parse(data.get("status")) or Status.ERROR,
            passed=int(_number(data.get("passed"))),
            total=int(_number(data.get("total"))),
            seed=data["seed"] if isinstance(data.get("seed"), int) else 0,
            checks=[CheckEntry.from_json(c) for c in checks if isinstance(c, dict)] if isinstance(checks, list) else [],
            score=_number(data.get("score")),
            max_score=_number(data.get("max_score")),
            extra=_known(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "slug": self.slug,
            "title": self.title,
            "status": self.status,
            "passed": self.passed,
            "total": self.total,
            "seed": self.seed,
            "checks": self.checks,
            "score": self.score,
            "max_score": self.max_score,
            **self.extra,
        }


@dataclass
class Report:
    """The report of one grading (`check --format json`): what was graded (`target`, shown
    as text), each problem's result, the points, and the grader set used (GraderSet.to_dict)."""

    target: str = ""
    problems: list[ProblemEntry] = field(default_factory=list)
    score: float = 0
    max_score: float = 0
    percent: float = 0.0
    graders: dict[str, Any] = field(default_factory=dict)
    version: int = REPORT_VERSION

    @classmethod
    def of(cls, results: list[ProblemResult], target: Path, graders: dict[str, Any]) -> Report:
        score, max_score = sum(r.score for r in results), sum(r.max_score for r in results)
        return cls(
            target=shown_name(str(target)),  # a folder name may hold undecodable bytes
            problems=[ProblemEntry.of(result) for result in results],
            score=points(score),
            max_score=points(max_score),
            percent=percent(score, max_score),
            graders=graders,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "target": self.target,
            "problems": self.problems,
            "score": self.score,
            "max_score": self.max_score,
            "percent": self.percent,
            "graders": self.graders,
        }


@dataclass
class ClassDocument(Report):
    """A submission's report. `error` says why the workbook could not grade or report it
    (None when it did); `timed_out` lists the problems where a check hit a time limit;
    `fingerprint` is the digest of the graded learner files that --resume compares."""

    submission: str = "?"
    error: str | None = None
    timed_out: list[int] | None = None  # None in the report of a submission not graded
    fingerprint: str | None = None
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    KEYS = (
        "version",
        "target",
        "problems",
        "score",
        "max_score",
        "percent",
        "graders",
        "error",
        "timed_out",
        "submission",
        "fingerprint",
        "duration_s",
    )

    @classmethod
    def from_report(cls, report: Report, submission: str) -> ClassDocument:
        return cls(**vars(report), submission=submission)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClassDocument:
        problems, graders, timed_out = data.get("problems"), data.get("graders"), data.get("timed_out")
        fingerprint = data.get("fingerprint")
        return cls(
            version=data["version"] if isinstance(data.get("version"), int) else REPORT_VERSION,
            target=_text(data.get("target")),
            problems=[ProblemEntry.from_json(p) for p in problems if isinstance(p, dict)]
            if isinstance(problems, list)
            else [],
            score=_number(data.get("score")),
            max_score=_number(data.get("max_score")),
            percent=_number(data.get("percent")),
            graders=graders if isinstance(graders, dict) else {},
            error=_optional_text(data.get("error")),
            timed_out=[n for n in timed_out if isinstance(n, int)] if isinstance(timed_out, list) else None,
            submission=_text(data.get("submission"), "?"),
            fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            duration_s=_number(data.get("duration_s")),
            extra=_known(data, cls.KEYS),
        )

    @classmethod
    def failed(cls, submission: str, graders: dict[str, Any], reason: str) -> ClassDocument:
        """The report of a submission the workbook could not grade or report, saying why."""
        return cls(submission=submission, graders=graders, error=reason)

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["error"] = self.error
        if self.timed_out is not None:
            data["timed_out"] = self.timed_out
        data.update(submission=self.submission, fingerprint=self.fingerprint, duration_s=self.duration_s)
        return {**data, **self.extra}

    def problem(self, slug: str) -> ProblemEntry | None:
        return next((entry for entry in self.problems if entry.slug == slug), None)

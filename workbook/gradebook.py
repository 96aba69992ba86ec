"""Grading a whole class: one folder per submission, a JSON report each, one gradebook.csv.

A submission is graded from a copy of the learner's work (workbook/target.py), so nothing
else in it (a conftest.py, a pytest.ini, a graders/ folder, a sitecustomize.py, a .pth
file) is ever loaded. Each problem runs in a child process of its own under the
engine's time limits, so a crashing, hanging or hostile submission only affects its own row.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbook.engine import ProblemResult, keep_warm
from workbook.formats import json_document, percent
from workbook.integrity import GraderSet
from workbook.manifest import Problem
from workbook.target import copy_submission

GRADEBOOK = "gradebook.csv"
REPORTS = "submissions"
RUN_FILE = "run.json"
# A grading process spends much of its time waiting (servers starting, time limits), so two
# problems of a submission at once keep two cores busy without starving the checks.
PROBLEM_JOBS = 2


# --- grading one submission -----------------------------------------------------------


def grade_sanitised(
    problems: list[Problem],
    source_root: Path,
    *,
    graders: Path | None = None,
    jobs: int = 1,
    on_result: Callable[[ProblemResult], None] | None = None,
    **options: Any,
) -> list[ProblemResult]:
    """Grade `problems` of `source_root` from a copy of the learner's work (the engine's
    graded target, workbook/target.py); results name `source_root`. Raises TargetError
    when `source_root` is a link."""
    from workbook.engine import grade_many, release

    with tempfile.TemporaryDirectory(prefix="workbook-submission-", ignore_cleanup_errors=True) as scratch:
        target = copy_submission(source_root, problems, Path(scratch) / "submission")
        try:
            return grade_many(
                problems,
                target.root,
                jobs=jobs,
                graders=graders,
                on_result=on_result,
                shown_root=target.shown,
                **options,
            )
        finally:
            release(target.root)


# --- a class ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as CI matrices count
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"{text!r} is not a shard; write I/N, e.g. 2/4") from None
        if not 1 <= index <= count:
            raise ValueError(f"shard {text!r}: I must be between 1 and N")
        return cls(index, count)

    def take(self, names: list[str]) -> list[str]:
        """Every N-th name of the sorted list, starting at the I-th: deterministic, and
        stubs and solutions spread evenly over the runners."""
        return sorted(names)[self.index - 1 :: self.count]


def submissions(folder: Path) -> list[str]:
    """The sub-folders of `folder`, each one submission (hidden folders are not)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def grade_class(
    submissions_dir: Path,
    out_dir: Path,
    problems: list[Problem],
    grader_set: GraderSet,
    *,
    jobs: int = 2,
    problem_jobs: int = PROBLEM_JOBS,
    shard: Shard | None = None,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Grade every submission (of this shard), `jobs` submissions at a time and
    `problem_jobs` problems of each at a time; write one JSON report each and the
    gradebook; returns the reports in name order."""
    names = submissions(submissions_dir)
    if shard is not None:
        names = shard.take(names)
    keep_warm()  # many gradings: fork them from a warm process instead of fresh interpreters
    reports_dir = out_dir / REPORTS
    reports_dir.mkdir(parents=True, exist_ok=True)
    graders = grader_set.path if grader_set.source == "custom" else None

    def one(name: str) -> dict[str, Any]:
        document = grade_submission(
            name, submissions_dir / name, problems, grader_set, graders=graders, jobs=problem_jobs, **options
        )
        (reports_dir / f"{name}.json").write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
        return document

    documents: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(one, name): name for name in names}
        for future in as_completed(futures):
            documents[futures[future]] = future.result()
            if progress:
                progress(futures[future])
    ordered = [documents[name] for name in sorted(documents)]
    _write_run(out_dir, problems, grader_set, shard, names)
    write_gradebook(out_dir / GRADEBOOK, ordered, problems)
    return ordered


def grade_submission(
    name: str,
    folder: Path,
    problems: list[Problem],
    grader_set: GraderSet,
    *,
    graders: Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One submission's JSON report. A failure of the workbook itself while grading it
    becomes an error in its own report, never the end of the class's run."""
    started = time.monotonic()
    try:
        results = grade_sanitised(problems, folder, graders=graders, **options)
        document = json_document(results, folder, grader_set)
        document["error"] = None
    except Exception as exc:  # noqa: BLE001 - one submission must never stop the class
        document = {"version": 1, "target": str(folder), "problems": [], "graders": grader_set.to_dict()}
        document.update(score=0, max_score=0, percent=0.0, error=f"{type(exc).__name__}: {exc}")
    document["submission"] = name
    document["duration_s"] = round(time.monotonic() - started, 2)
    return document


def _write_run(
    out_dir: Path, problems: list[Problem], grader_set: GraderSet, shard: Shard | None, names: list[str]
) -> None:
    run = {
        "problems": [p.slug for p in problems],
        "graders": grader_set.to_dict(),
        "shard": f"{shard.index}/{shard.count}" if shard else None,
        "submissions": names,
    }
    (out_dir / RUN_FILE).write_text(json.dumps(run, indent=2), encoding="utf-8")


# --- the gradebook ---------------------------------------------------------------------


def gradebook_columns(problems: list[Problem]) -> list[str]:
    columns = ["submission"]
    for p in problems:
        columns += [
            f"p{p.number}_status",
            f"p{p.number}_passed",
            f"p{p.number}_total",
            f"p{p.number}_score",
            f"p{p.number}_max_score",
        ]
    return [*columns, "score", "max_score", "percent", "graders", "allow_modified_graders", "error"]


def gradebook_row(document: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """One CSV row, read from a submission's JSON report (so `merge` rebuilds it exactly)."""
    row: dict[str, Any] = {"submission": document["submission"]}
    by_slug = {entry["slug"]: entry for entry in document.get("problems", [])}
    for p in problems:
        entry = by_slug.get(p.slug, {})
        row[f"p{p.number}_status"] = entry.get("status", "error")
        for key in ("passed", "total", "score", "max_score"):
            row[f"p{p.number}_{key}"] = entry.get(key, 0)
    score = sum(float(e.get("score", 0)) for e in by_slug.values())
    max_score = sum(float(e.get("max_score", 0)) for e in by_slug.values())
    graders = document.get("graders", {})
    row.update(
        score=_plain(score),
        max_score=_plain(max_score),
        percent=f"{percent(score, max_score):.2f}",
        graders=f"{graders.get('source', '?')} {graders.get('digest', '')}".strip(),
        allow_modified_graders=str(bool(graders.get("allow_modified_graders"))).lower(),
        error=document.get("error") or "",
    )
    return row


def write_gradebook(path: Path, documents: list[dict[str, Any]], problems: list[Problem]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=gradebook_columns(problems), lineterminator="\n")
    writer.writeheader()
    for document in sorted(documents, key=lambda d: d["submission"]):
        writer.writerow(gradebook_row(document, problems))
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _plain(value: float) -> str:
    return f"{value:g}"


# --- merging shards --------------------------------------------------------------------


class MergeError(Exception):
    """Shard outputs that cannot be combined into one gradebook."""


def read_reports(out_dir: Path, names: list[str] | None = None) -> list[dict[str, Any]]:
    """The reports in an --out folder: those of `names` (the run's submissions, so reports
    left there by an earlier run are not merged), else all."""
    folder = out_dir / REPORTS
    if not folder.is_dir():
        raise MergeError(f"{out_dir} holds no {REPORTS}/ folder: is it the --out folder of `workbook grade`?")
    paths = sorted(folder.glob("*.json")) if names is None else [folder / f"{name}.json" for name in names]
    try:
        return [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    except (OSError, ValueError) as exc:
        raise MergeError(f"cannot read a report in {folder}: {exc}") from exc


def merge(out_dirs: list[Path], destination: Path, manifest_problems: list[Problem]) -> list[dict[str, Any]]:
    """Combine the outputs of several shards into one folder and one gradebook, with the
    columns of the problems the shards graded."""
    documents: dict[str, dict[str, Any]] = {}
    digests = set()
    slugs: set[str] = set()
    runs = []
    for out_dir in out_dirs:
        run = _read_run(out_dir)
        runs.append(run)
        slugs.update(run.get("problems", []))
        for document in read_reports(out_dir, run.get("submissions")):
            name = document["submission"]
            if name in documents:
                raise MergeError(f"submission {name!r} was graded by more than one shard ({out_dir})")
            documents[name] = document
            digests.add(document.get("graders", {}).get("digest"))
    if len(digests) > 1:
        raise MergeError("the shards were graded with different grader sets; grade them again with the same graders")
    problems = [p for p in manifest_problems if p.slug in slugs] or list(manifest_problems)
    (destination / REPORTS).mkdir(parents=True, exist_ok=True)
    ordered = [documents[name] for name in sorted(documents)]
    for document in ordered:
        path = destination / REPORTS / f"{document['submission']}.json"
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    write_gradebook(destination / GRADEBOOK, ordered, problems)
    merged = {
        "problems": [p.slug for p in problems],
        "graders": next((r["graders"] for r in runs if "graders" in r), None),
        "shard": None,
        "merged_from": [r.get("shard") for r in runs],
        "submissions": sorted(documents),
    }
    (destination / RUN_FILE).write_text(json.dumps(merged, indent=2), encoding="utf-8")
    return ordered


def _read_run(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeError(
            f"{out_dir} holds no readable {RUN_FILE}: is it the --out folder of `workbook grade`?"
        ) from exc

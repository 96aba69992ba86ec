"""Grading a whole class: one folder per submission, a JSON report each, one gradebook.csv.

A submission is graded from a copy of the learner's work (workbook/target.py), so nothing
else in it (a conftest.py, a pytest.ini, a graders/ folder, a sitecustomize.py, a .pth
file) is ever loaded. Each problem runs in a child process of its own under the
engine's time limits, so a crashing, hanging or hostile submission only affects its own row.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from workbook import engine, interrupts
from workbook.documents import ClassDocument, percent
from workbook.engine import ProblemResult, keep_warm
from workbook.formats import json_document
from workbook.hidden import without_grader_source
from workbook.integrity import GraderSet
from workbook.jsonout import to_json
from workbook.manifest import Problem
from workbook.reportfiles import atomic_write, cleaned, dumps, report_name, report_problem
from workbook.results import Kind, Status
from workbook.safetext import csv_cell, no_legacy_commands, shown_name, valid_text
from workbook.target import copy_submission, learner_files
from workbook.words import counted, plural

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
    with tempfile.TemporaryDirectory(prefix="workbook-submission-", ignore_cleanup_errors=True) as scratch:
        target = copy_submission(source_root, problems, Path(scratch) / "submission")
        try:
            return engine.grade_many(
                problems,
                target.root,
                jobs=jobs,
                graders=graders,
                on_result=on_result,
                shown_root=target.shown,
                **options,
            )
        finally:
            engine.release(target.root)


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


# Folders an archive tool or an editor adds beside the submissions, never one of them:
# macOS's zip keeps resource forks in __MACOSX/ (hidden folders are left out by their dot).
NOT_SUBMISSIONS = frozenset({"__MACOSX"})


def submissions(folder: Path, skip: Iterable[Path] = ()) -> list[str]:
    """The sub-folders of `folder`, each one submission (hidden folders and __MACOSX are
    not), as the file system names them (undecodable bytes kept as surrogate escapes, so
    they stay usable as paths). Folders in `skip` (an --out inside SUBMISSIONS) are left out."""
    skipped = {path.resolve() for path in skip}
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_SUBMISSIONS and p.resolve() not in skipped
    )


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped `grade_class`; the reports and gradebook of what was
    finished are written (`documents`), the gradebook marked incomplete."""

    def __init__(self, documents: list[ClassDocument], missing: list[str]) -> None:
        super().__init__(f"interrupted with {counted(len(missing), 'submission')} not graded")
        self.documents = documents
        self.missing = missing


INTERRUPTED = "not graded: the run was interrupted (finish it with `workbook grade ... --resume`)"


def grade_class(
    submissions_dir: Path,
    out_dir: Path,
    problems: list[Problem],
    grader_set: GraderSet,
    *,
    jobs: int = 2,
    problem_jobs: int = PROBLEM_JOBS,
    shard: Shard | None = None,
    progress: Callable[[ClassDocument], None] | None = None,
    resume: bool = False,
    on_kept: Callable[[int], None] | None = None,
    skip: Iterable[Path] = (),
    **options: Any,
) -> list[ClassDocument]:
    """Grade every submission (of this shard), `jobs` submissions at a time and
    `problem_jobs` problems of each at a time. Each submission's report is written
    atomically as soon as it is graded, the gradebook at the end; with `resume`, reports of
    an earlier run whose learner files and graders are unchanged are kept (`on_kept` hears
    how many). Returns the reports in name order; raises Interrupted on Ctrl-C/SIGTERM
    after writing what was done."""
    names = submissions(submissions_dir, skip)
    if shard is not None:
        names = shard.take(names)
    keep_warm()  # many gradings: fork them from a warm process instead of fresh interpreters
    reports_dir = out_dir / REPORTS
    reports_dir.mkdir(parents=True, exist_ok=True)
    graders = grader_set.path if grader_set.source == "custom" else None
    _write_run(out_dir, problems, grader_set, shard, names, complete=False)
    documents: dict[str, ClassDocument] = {}

    def one(name: str) -> ClassDocument | None:
        document = grade_submission(
            name, submissions_dir / name, problems, grader_set, graders=graders, jobs=problem_jobs, **options
        )
        if engine.stopping():
            return None  # graded only in part: not a result
        return _save_report(reports_dir, name, document)

    def finished(name: str, document: ClassDocument) -> None:
        documents[name] = document
        if progress:
            progress(document)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        kept = _kept_reports(reports_dir, submissions_dir, names, problems, grader_set) if resume else {}
        documents.update(kept)
        if on_kept:
            on_kept(len(kept))
        futures: dict[Future, str] = {pool.submit(one, name): name for name in names if name not in kept}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                document = future.result()
                if document is not None:
                    finished(futures[future], document)
    except KeyboardInterrupt:
        interrupts.exit_on_next_signal()  # a second Ctrl-C while saving exits at once
        engine.stop_all()
        pool.shutdown(wait=False, cancel_futures=True)
        missing = [name for name in names if name not in documents]
        ordered = _finish(out_dir, problems, grader_set, shard, names, documents, missing)
        raise Interrupted(ordered, [shown_name(name) for name in missing]) from None
    pool.shutdown()
    return _finish(out_dir, problems, grader_set, shard, names, documents, [])


def _finish(
    out_dir: Path,
    problems: list[Problem],
    grader_set: GraderSet,
    shard: Shard | None,
    names: list[str],
    documents: dict[str, ClassDocument],
    missing: list[str],
) -> list[ClassDocument]:
    """Write the gradebook (a row for every submission; those not graded say so) and
    run.json, both atomically; the finished reports in name order."""
    ordered = [documents[name] for name in sorted(documents)]
    placeholders = [ClassDocument.failed(shown_name(name), grader_set.to_dict(), INTERRUPTED) for name in missing]
    write_gradebook(out_dir / GRADEBOOK, ordered + placeholders, problems)
    _write_run(out_dir, problems, grader_set, shard, names, complete=not missing)
    return ordered


def once_per_cause(document: ClassDocument) -> ClassDocument:
    """`document` with each repeated message stored once per cause: a later check of the
    same problem whose `cause` and message equal an earlier one's says "same as <id>" (an
    import error copied into every check turned a 5 MB message into a 95 MB report)."""
    problems = []
    for problem in document.problems:
        seen: dict[tuple[str, str], str] = {}
        checks = []
        for check in problem.checks:
            key = (check.cause or "", check.message or "")
            if key[0] and key[1] and key in seen:
                check = replace(check, message=f"same as check {seen[key]} (cause {key[0]})")
            elif key[0] and key[1]:
                seen[key] = check.id
            checks.append(check)
        problems.append(replace(problem, checks=checks))
    return replace(document, problems=problems)


def _save_report(reports_dir: Path, name: str, document: ClassDocument) -> ClassDocument:
    """Write one report atomically. A report that cannot be written (a value no writer
    accepts, a full disk) becomes an `error` report saying why: never the end of the run."""
    try:
        document = once_per_cause(document)
        atomic_write(reports_dir / report_name(document.submission), dumps(document))
        return document
    except Exception as exc:  # noqa: BLE001 - one submission must never stop the class
        reason = f"the workbook could not write this report: {type(exc).__name__}: {valid_text(exc)}"
        fallback = ClassDocument.failed(shown_name(name), document.graders, reason)
        fallback.fingerprint = document.fingerprint
        # Plain ASCII JSON of plain values: the one report that cannot fail to serialise.
        with contextlib.suppress(OSError):
            text = to_json(fallback, ascii_only=True, indent=None)
            atomic_write(reports_dir / report_name(fallback.submission), no_legacy_commands(text))
        return fallback


def fingerprint(folder: Path, problems: Iterable[Problem]) -> str:
    """A digest of the learner files the graded target would copy from `folder` (their
    paths and contents, workbook/target.py): equal digests mean the same graded input."""
    digest = hashlib.sha256()
    for problem in problems:
        problem_folder = folder / problem.slug
        if problem_folder.is_symlink() or not problem_folder.is_dir():
            continue
        for relative in learner_files(problem_folder, problem):
            digest.update(f"{problem.slug}/{relative.as_posix()}\0".encode())
            digest.update(hashlib.sha256((problem_folder / relative).read_bytes()).digest())
    return digest.hexdigest()


def _kept_reports(
    reports_dir: Path, submissions_dir: Path, names: list[str], problems: list[Problem], grader_set: GraderSet
) -> dict[str, ClassDocument]:
    """For --resume: the earlier reports that can stand, by submission folder name."""
    kept = {}
    for name in names:
        document = _reusable_report(reports_dir, name, submissions_dir / name, problems, grader_set)
        if document is not None:
            kept[name] = document
    return kept


def _reusable_report(
    reports_dir: Path, name: str, folder: Path, problems: list[Problem], grader_set: GraderSet
) -> ClassDocument | None:
    """The earlier report of `name` when it can stand (same files, same graders, same
    problems, no workbook error); else None: grade it again."""
    try:
        data = json.loads((reports_dir / report_name(shown_name(name))).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if report_problem(data):
        return None
    document = ClassDocument.from_json(cleaned(data))
    if document.error:
        return None
    same_graders = document.graders.get("digest") == grader_set.digest
    same_problems = [entry.slug for entry in document.problems] == [p.slug for p in problems]
    try:
        same_files = document.fingerprint == fingerprint(folder, problems)
    except OSError:
        return None
    return document if same_graders and same_problems and same_files else None


def grade_submission(
    name: str,
    folder: Path,
    problems: list[Problem],
    grader_set: GraderSet,
    *,
    graders: Path | None = None,
    **options: Any,
) -> ClassDocument:
    """One submission's JSON report. A failure of the workbook itself while grading it
    becomes an error in its own report, never the end of the class's run."""
    started = time.monotonic()
    try:
        digest = fingerprint(folder, problems)
        results = without_grader_source(grade_sanitised(problems, folder, graders=graders, **options))
        document = ClassDocument.from_report(json_document(results, folder, grader_set), shown_name(name))
        # Which problems hit a time limit, for the closing summary of `grade`.
        document.timed_out = [r.problem.number for r in results if any(c.kind == Kind.TIMEOUT for c in r.checks)]
    except Exception as exc:  # noqa: BLE001 - one submission must never stop the class
        document = ClassDocument.failed(name, grader_set.to_dict(), f"{type(exc).__name__}: {valid_text(exc)}")
        document.target = shown_name(str(folder))
        digest = None
    document.submission = shown_name(name)
    document.fingerprint = digest  # what --resume compares
    document.duration_s = round(time.monotonic() - started, 2)
    return document


def _write_run(
    out_dir: Path,
    problems: list[Problem],
    grader_set: GraderSet,
    shard: Shard | None,
    names: list[str],
    *,
    complete: bool,
) -> None:
    run = {
        "problems": [p.slug for p in problems],
        "graders": grader_set.to_dict(),
        "shard": f"{shard.index}/{shard.count}" if shard else None,
        "submissions": [shown_name(name) for name in names],
        "complete": complete,
    }
    atomic_write(out_dir / RUN_FILE, dumps(run))


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
    return [*columns, "score", "max_score", "percent", "graders", "allow_modified_graders", "sandbox", "error"]


def gradebook_row(document: ClassDocument, problems: list[Problem]) -> dict[str, Any]:
    """One CSV row, read from a submission's JSON report (so `merge` rebuilds it exactly)."""
    row: dict[str, Any] = {"submission": document.submission}
    by_slug = {entry.slug: entry for entry in document.problems}
    for p in problems:
        entry = by_slug.get(p.slug)
        row[f"p{p.number}_status"] = str(entry.status if entry else Status.ERROR)
        for key in ("passed", "total", "score", "max_score"):
            row[f"p{p.number}_{key}"] = getattr(entry, key) if entry else 0
    score = sum(float(e.score) for e in by_slug.values())
    max_score = sum(float(e.max_score) for e in by_slug.values())
    graders = document.graders
    row.update(
        score=_plain(score),
        max_score=_plain(max_score),
        percent=f"{percent(score, max_score):.2f}",
        graders=f"{graders.get('source', '?')} {graders.get('digest', '')}".strip(),
        allow_modified_graders=str(bool(graders.get("allow_modified_graders"))).lower(),
        # The isolation it was graded in, "--no-sandbox" included (issue 11: every report says).
        sandbox=(graders.get("sandbox") or "unknown") + (" (--no-sandbox)" if graders.get("no_sandbox") else ""),
        error=document.error or "",
    )
    return row


def write_gradebook(path: Path, documents: list[ClassDocument], problems: list[Problem]) -> None:
    """Write gradebook.csv atomically; every text cell opens as text in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=gradebook_columns(problems), lineterminator="\n")
    writer.writeheader()
    for document in sorted(documents, key=lambda d: d.submission):
        writer.writerow({key: csv_cell(value) for key, value in gradebook_row(document, problems).items()})
    atomic_write(path, buffer.getvalue())


def _plain(value: float) -> str:
    return f"{value:g}"


# --- merging shards --------------------------------------------------------------------


class MergeError(Exception):
    """Shard outputs that cannot be combined into one gradebook."""


def read_reports(out_dir: Path, names: list[str] | None = None) -> list[ClassDocument]:
    """The reports in an --out folder: those of `names` (the run's submissions, so reports
    left there by an earlier run are not merged), else all. Each is validated; a bad one
    raises MergeError naming its file in one line."""
    folder = out_dir / REPORTS
    if not folder.is_dir():
        raise MergeError(f"{out_dir} holds no {REPORTS}/ folder: is it the --out folder of `workbook grade`?")
    if names is None:
        paths = sorted(folder.glob("*.json"))
    else:
        paths = [folder / report_name(valid_text(name)) for name in names if isinstance(name, str)]
    return [_read_report(path) for path in paths]


def _read_report(path: Path) -> ClassDocument:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeError(f"{shown_name(str(path))}: not a readable report ({_one_line(exc)})") from None
    problem = report_problem(document)
    if problem:
        raise MergeError(f"{shown_name(str(path))}: not a workbook report ({problem})")
    return ClassDocument.from_json(cleaned(document))


def _one_line(exc: Exception) -> str:
    return " ".join(valid_text(exc).split())[:200]


def merge(out_dirs: list[Path], destination: Path, manifest_problems: list[Problem]) -> list[ClassDocument]:
    """Combine the outputs of several shards into one folder and one gradebook, with the
    columns of the problems the shards graded. Every file is written inside `destination`
    under a name `report_name` derives, whatever the reports say. Raises MergeError, also
    when `destination` is one of `out_dirs` or when some shard of a sharded run is missing."""
    if any(destination.resolve() == out_dir.resolve() for out_dir in out_dirs):
        raise MergeError(
            f"--out {shown_name(str(destination))} is one of the folders to merge; merge into a new folder"
        )
    runs = [_read_run(out_dir) for out_dir in out_dirs]
    # Before any report: two shards of different splits also share submission names.
    _check_shard_counts(runs)
    _check_same_problems(out_dirs, runs, manifest_problems)
    slugs = set(runs[0]["problems"])
    documents: dict[str, ClassDocument] = {}
    digests = set()
    for out_dir, run in zip(out_dirs, runs, strict=True):
        for document in read_reports(out_dir, run["submissions"]):
            name = document.submission
            if name in documents:
                raise MergeError(f"submission {name!r} was graded by more than one shard ({out_dir})")
            documents[name] = document
            digests.add(document.graders.get("digest"))
    if len(digests) > 1:
        raise MergeError("the shards were graded with different grader sets; grade them again with the same graders")
    _check_every_shard(runs)
    problems = [p for p in manifest_problems if p.slug in slugs] or list(manifest_problems)
    ordered = [documents[name] for name in sorted(documents)]
    try:
        (destination / REPORTS).mkdir(parents=True, exist_ok=True)
        for document in ordered:
            atomic_write(destination / REPORTS / report_name(document.submission), dumps(document))
        write_gradebook(destination / GRADEBOOK, ordered, problems)
        merged = {
            "problems": [p.slug for p in problems],
            "graders": next((r["graders"] for r in runs if "graders" in r), None),
            "shard": None,
            "merged_from": [r.get("shard") for r in runs],
            "submissions": sorted(documents),
            "complete": True,
        }
        atomic_write(destination / RUN_FILE, dumps(merged))
    except OSError as exc:
        where = shown_name(str(destination))
        raise MergeError(f"cannot write the merged gradebook into {where}: {_one_line(exc)}") from None
    return ordered


def _check_same_problems(out_dirs: list[Path], runs: list[dict[str, Any]], manifest_problems: list[Problem]) -> None:
    """Shards graded on different problems give rows of different maximum scores, so the
    merged percents would not compare: refuse, naming both folders and their problems."""
    first = runs[0]["problems"]
    for out_dir, run in zip(out_dirs, runs, strict=True):
        if run["problems"] != first:
            raise MergeError(
                f"the shards were graded on different problems: {shown_name(str(out_dirs[0]))} on "
                f"{_problem_list(first, manifest_problems)}, {shown_name(str(out_dir))} on "
                f"{_problem_list(run['problems'], manifest_problems)}; grade them again with the same -p options"
            )


def _problem_list(slugs: list[Any], manifest_problems: list[Problem]) -> str:
    """ "problems 1, 2" (by the manifest's numbers; a slug it does not know, as it is)."""
    numbers = {problem.slug: str(problem.number) for problem in manifest_problems}
    shown = [numbers.get(slug, valid_text(slug)) for slug in slugs]
    return f"{plural(len(shown), 'problem')} {', '.join(shown)}" if shown else "no problems"


def _shards(runs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The (I, N) of each run graded with --shard I/N."""
    found = []
    for run in runs:
        text = run.get("shard")
        if isinstance(text, str) and (match := re.fullmatch(r"(\d+)/(\d+)", text)):
            found.append((int(match[1]), int(match[2])))
    return found


def _check_shard_counts(runs: list[dict[str, Any]]) -> None:
    """Shards of different splits (1/2 and 2/3) share some submissions and miss others:
    refuse them before any report is read, saying the counts differ."""
    totals = {total for _, total in _shards(runs)}
    if len(totals) > 1:
        labels = ", ".join(sorted({run["shard"] for run in runs if isinstance(run.get("shard"), str)}))
        raise MergeError(
            f"the shard counts differ ({labels}): merge the shards of one run, all graded with the same --shard I/N"
        )


def _check_every_shard(runs: list[dict[str, Any]]) -> None:
    """A gradebook merged from shards 1/4, 2/4 and 4/4 silently drops a quarter of the class:
    refuse it."""
    parsed = _shards(runs)
    if not parsed:
        return
    total = parsed[0][1]
    missing = sorted(set(range(1, total + 1)) - {index for index, _ in parsed})
    if missing:
        named = ", ".join(f"{index}/{total}" for index in missing)
        raise MergeError(f"shard {named} is missing: merge every shard of the run (or grade the missing ones)")


def _read_run(out_dir: Path) -> dict[str, Any]:
    path = out_dir / RUN_FILE
    try:
        run = cleaned(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise MergeError(
            f"{out_dir} holds no readable {RUN_FILE}: is it the --out folder of `workbook grade`? ({_one_line(exc)})"
        ) from None
    if not isinstance(run, dict) or not isinstance(run.get("problems"), list):
        raise MergeError(f"{path}: not a run file of `workbook grade` (no list of problems)")
    if not isinstance(run.get("submissions"), list):
        raise MergeError(f"{path}: not a run file of `workbook grade` (no list of submissions)")
    if run.get("complete") is False:
        raise MergeError(
            f"{out_dir} holds an interrupted run (shard {run.get('shard') or 'all'}); "
            "finish it with `workbook grade ... --resume` first"
        )
    return run

"""`workbook dev check`: what an author must know before shipping edited or swapped-in content.

Every solution passes all its checks, every untouched stub fails (unless the manifest marks
it `stub_may_pass = true`), every stub has `# TODO` guidance, every hint says something,
every file the manifest names exists, check ids are unique within a problem, no
`TODO(author)` placeholder of `workbook dev new` is left for learners to read, and the
generated files (workbook/generated.py) match what they are generated from.
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from workbook.engine import GraderError, ProblemResult, discover_checks, grade
from workbook.generated import stale
from workbook.manifest import Manifest, ManifestError, Problem, load_manifest
from workbook.results import Status
from workbook.scaffold import AUTHOR_TODO

TODO = re.compile(r"#\s*TODO\b")


@dataclass
class Findings:
    """What is wrong, one sentence per item, grouped by problem ("" for the manifest)."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.items.append((where, what))

    def __bool__(self) -> bool:
        return bool(self.items)

    def lines(self) -> list[str]:
        return [f"- {where}: {what}" if where else f"- {what}" for where, what in self.items]


def dev_check(
    manifest_path: Path,
    exercises: Path,
    solutions: Path,
    *,
    graders: Path | None = None,
    numbers: list[int] | None = None,
    run_graders: bool = True,
    jobs: int = 2,
    generated_root: Path | None = None,
) -> Findings:
    """What is wrong with the content; `generated_root` also checks that checkout's
    generated files (only meaningful when `exercises` and `graders` are its own)."""
    findings = Findings()
    if generated_root is not None:
        for line in stale(generated_root):
            findings.add("", line)
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        findings.add("", str(exc))
        return findings
    _check_manifest(manifest, findings)
    problems = [p for p in manifest.problems if numbers is None or p.number in numbers]
    for problem in problems:
        _check_static(problem, exercises, solutions, graders, findings)
        _check_author_todos(problem, manifest_path, [exercises, solutions], graders, findings)
    if run_graders:
        _check_by_grading(problems, exercises, solutions, graders, jobs, findings)
    return findings


def _check_manifest(manifest: Manifest, findings: Findings) -> None:
    for label, values in (
        ("number", [p.number for p in manifest.problems]),
        ("slug", [p.slug for p in manifest.problems]),
    ):
        for value, count in Counter(values).items():
            if count > 1:
                findings.add("workbook.toml", f"problem {label} {value!r} is used {count} times")


def _check_static(problem: Problem, exercises: Path, solutions: Path, graders: Path | None, findings: Findings) -> None:
    where = f"problem {problem.number} ({problem.slug})"
    if not problem.files:
        findings.add(where, "the manifest names no learner files (`files`)")
    for root, label in ((exercises, "stub"), (solutions, "solution")):
        for relative in problem.files:
            if not (root / problem.slug / relative).is_file():
                findings.add(
                    where,
                    f"the manifest names {relative}, but the {label} {root / problem.slug / relative} does not exist",
                )
    stub_texts = [_read(exercises / problem.slug / relative) for relative in problem.files]
    if any(stub_texts) and not any(TODO.search(text) for text in stub_texts):
        findings.add(where, "the stub has no `# TODO` comment telling the learner what to write")
    if not problem.hints:
        findings.add(where, "the manifest gives no hints")
    for index, hint in enumerate(problem.hints, start=1):
        if not str(hint).strip():
            findings.add(where, f"hint {index} is empty")
    _check_graders(problem, graders, where, findings)


def _check_author_todos(
    problem: Problem, manifest_path: Path, roots: list[Path], graders: Path | None, findings: Findings
) -> None:
    """One finding per file that still holds a `TODO(author)` placeholder of `workbook dev
    new`: learners would read it (`workbook hint N` shows the manifest's hints as they are)."""
    where = f"problem {problem.number} ({problem.slug})"
    fields = [("the title", problem.title), ("the lesson", problem.lesson)]
    fields += [(f"hint {index}", hint) for index, hint in enumerate(problem.hints, start=1)]
    in_manifest = [label for label, text in fields if AUTHOR_TODO in text]
    if in_manifest:
        findings.add(where, f"{AUTHOR_TODO} left in {manifest_path.name} ({', '.join(in_manifest)}); replace it")
    grader_dir = (problem if graders is None else _with_graders(problem, graders)).grader_dir
    corpus = manifest_path.parent / "tests" / "corpus" / f"{problem.slug}.toml"
    files = [path for root in (*roots, grader_dir.parent) for path in _files_under(root / problem.slug)]
    for path in [*files, corpus]:
        count = _read(path).count(AUTHOR_TODO)
        if count:
            shown = path.relative_to(manifest_path.parent) if path.is_relative_to(manifest_path.parent) else path
            findings.add(where, f"{AUTHOR_TODO} left in {shown} ({count}x); replace it")


def _files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts)


def _check_graders(problem: Problem, graders: Path | None, where: str, findings: Findings) -> None:
    grader_problem = problem if graders is None else _with_graders(problem, graders)
    try:
        checks = discover_checks(grader_problem)
    except (GraderError, SyntaxError, OSError) as exc:
        findings.add(where, f"its graders cannot be read: {exc}")
        return
    for check_id, count in Counter(c.id for c in checks).items():
        if count > 1:
            findings.add(where, f"check id {check_id!r} is defined {count} times in {grader_problem.grader_dir}")
    known = {c.id for c in checks}
    for check_id in problem.weights:
        if check_id not in known:
            findings.add(where, f"the manifest gives a weight to {check_id!r}, which is no check of this problem")


def _check_by_grading(
    problems: list[Problem],
    exercises: Path,
    solutions: Path,
    graders: Path | None,
    jobs: int,
    findings: Findings,
) -> None:
    runnable = [p for p in problems if (exercises / p.slug).is_dir() or (solutions / p.slug).is_dir()]
    tasks = [(p, root, label) for p in runnable for root, label in ((solutions, "solution"), (exercises, "stub"))]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_grade_quietly, p, root, graders) for p, root, _ in tasks]
        outcomes = [future.result() for future in futures]
    for (problem, root, label), outcome in zip(tasks, outcomes, strict=True):
        where = f"problem {problem.number} ({problem.slug})"
        if isinstance(outcome, str):
            findings.add(where, f"grading the {label} failed: {outcome}")
        elif label == "solution" and outcome.status != Status.PASS:
            for check in outcome.checks:
                if check.status != Status.PASS:
                    first = (check.message or "").splitlines()[0] if check.message else check.status
                    findings.add(where, f"the solution fails check {check.id!r}: {first}")
        elif label == "stub" and outcome.status == Status.PASS and not problem.stub_may_pass:
            findings.add(
                where,
                f"the untouched stub in {root / problem.slug} passes every check: is it already solved? "
                "(mark `stub_may_pass = true` in the manifest if that is intended)",
            )


def _grade_quietly(problem: Problem, root: Path, graders: Path | None) -> ProblemResult | str:
    try:
        return grade(problem, root, graders=graders)
    except (GraderError, OSError, SyntaxError) as exc:
        return str(exc)


def _with_graders(problem: Problem, graders: Path) -> Problem:
    return replace(problem, graders=graders.resolve())


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""

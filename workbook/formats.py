"""Machine-readable reports for the tools instructors and CI already use.

- `json`: the workbook's own report (documents.Report), with scores and the grader set.
- `junit`: JUnit XML (testsuites/testsuite/testcase) as CI systems display it.
- `exercism`: results.json of Exercism's test-runner interface, version 3.
- `gradescope`: results.json of Gradescope's autograder specification.
- `github`: GitHub Actions workflow commands (`::error file=...,line=...`) and a markdown
  job summary (appended to $GITHUB_STEP_SUMMARY when set).
"""

from __future__ import annotations

import os
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbook import causes
from workbook.documents import Report, percent, points
from workbook.engine import CheckResult, GraderError, ProblemResult, check_sources, discover_checks
from workbook.hidden import declared_hidden, is_private, without_grader_source
from workbook.integrity import GraderSet
from workbook.jsonout import to_json
from workbook.report import FORMATS as REPORT_FORMATS
from workbook.report import rerun_for
from workbook.results import Kind, Status
from workbook.safetext import log_safe, markdown_code, no_legacy_commands, shown_path, valid_text
from workbook.words import plural

FORMATS = REPORT_FORMATS
EXERCISM_OUTPUT_LIMIT = 500
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
# Characters XML 1.0 cannot carry at all; learner output may contain them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# A trimmed traceback line or a syntax error: "p1_dependency_chain/app.py, line 87".
_WHERE = re.compile(r"(?P<file>[\w./-]+\.py), line (?P<line>\d+)")


def render(output_format: str, results: list[ProblemResult], target: Path, graders: GraderSet) -> str:
    renderers: dict[str, Callable[[list[ProblemResult], Path, GraderSet], str]] = {
        "json": json_document_text,
        "junit": junit,
        "exercism": exercism,
        "gradescope": gradescope,
        "github": github,
    }
    # No report made with an instructor's private graders carries their code; and whatever
    # a path or a message holds, the report is valid UTF-8.
    rendered = renderers[output_format](without_grader_source(results), target, graders)
    return no_legacy_commands(valid_text(rendered))


# --- scores ----------------------------------------------------------------------------


def totals(results: list[ProblemResult]) -> tuple[float, float]:
    return sum(r.score for r in results), sum(r.max_score for r in results)


# --- json ------------------------------------------------------------------------------


def json_document(results: list[ProblemResult], target: Path, graders: GraderSet) -> Report:
    """The JSON report (version 1, workbook.documents.Report): what was graded, each check's
    result, the points per problem and in total, and the grader set used."""
    return Report.of(results, target, graders.to_dict())


def json_document_text(results: list[ProblemResult], target: Path, graders: GraderSet) -> str:
    # The documented keys of report v1 (version, target, problems) stay as they are; points
    # and the grader set used are added beside them, as every report must carry them.
    return to_json(json_document(results, target, graders))


# --- JUnit XML -------------------------------------------------------------------------


def junit(results: list[ProblemResult], target: Path, graders: GraderSet) -> str:
    root = ET.Element("testsuites", name="workbook")
    for result in results:
        root.append(_junit_suite(result, graders))
    _set_counts(root, results)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_suite(result: ProblemResult, graders: GraderSet) -> ET.Element:
    problem = result.problem
    suite = ET.Element("testsuite", name=f"{problem.number}. {problem.title}", timestamp=_now(), hostname=_host())
    _set_counts(suite, [result])
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("slug", problem.slug),
        ("target", str(result.target / problem.slug)),
        ("score", points(result.score)),
        ("max_score", points(result.max_score)),
        ("graders", graders.label),
        ("graders_digest", graders.digest),
        ("allow_modified_graders", str(graders.allow_modified).lower()),
        ("sandbox", result.isolation),
        ("no_sandbox", str(graders.no_sandbox).lower()),
        ("seed", result.seed),
        # Jenkins' JUnit schema (junit-4.xsd) allows no <properties> in a <testcase>, only in
        # a <testsuite>: each check's cause is a suite property named after the check.
        *((f"cause.{check.id}", check.cause) for check in result.checks if check.cause),
    ):
        ET.SubElement(properties, "property", name=name, value=_xml_text(str(value)))
    for check in result.checks:
        suite.append(_junit_case(result, check))
    return suite


def _junit_case(result: ProblemResult, check: CheckResult) -> ET.Element:
    case = ET.Element(
        "testcase",
        name=_xml_text(check.title),
        classname=f"workbook.{result.problem.slug}.{check.id}",
        time=f"{check.duration_s:.3f}",
    )
    if check.status != Status.PASS:
        message = _xml_text(check.message or "")
        tag = "failure" if check.status == Status.FAIL else "error"
        element = ET.SubElement(case, tag, message=message.splitlines()[0] if message else "", type=check.kind)
        element.text = message + f"\n\nre-run only this check: {rerun_for(result, check.id)}"
    if check.output:
        ET.SubElement(case, "system-out").text = _xml_text(check.output)
    return case


def _set_counts(element: ET.Element, results: list[ProblemResult]) -> None:
    checks = [c for r in results for c in r.checks]
    element.set("tests", str(len(checks)))
    element.set("failures", str(sum(c.status == Status.FAIL for c in checks)))
    element.set("errors", str(sum(c.status == Status.ERROR for c in checks)))
    element.set("skipped", "0")
    element.set("time", f"{sum(c.duration_s for c in checks):.3f}")


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat()


def _host() -> str:
    return socket.gethostname() or "localhost"


def _xml_text(text: str) -> str:
    # CI systems print JUnit messages in their logs: no control sequence, no workflow command.
    return _XML_ILLEGAL.sub("\ufffd", log_safe(text))


# --- Exercism test-runner interface v3 -------------------------------------------------


def exercism(results: list[ProblemResult], target: Path, graders: GraderSet) -> str:
    document: dict[str, Any] = {"version": 3, "status": _exercism_status(results)}
    if document["status"] == Status.ERROR:
        # The interface's "error": the code could not be run at all (e.g. a syntax error).
        first = next(c for r in results for c in r.checks)
        document["message"] = first.message or "Your code could not be graded."
    tests = []
    for result in results:
        # Private graders' code is never shown, nor that of checks marked HIDDEN.
        sources = {} if is_private(result.problem) else check_sources(result.problem)
        for hidden_id in declared_hidden(result.problem):
            sources.pop(hidden_id, None)
        for check in result.checks:
            tests.append(_exercism_test(result, check, sources.get(check.id, "")))
    document["tests"] = tests
    # Not part of the interface; Exercism ignores it. It records which graders graded the run.
    document["workbook"] = {"graders": graders.to_dict()}
    return to_json(document)


def _exercism_status(results: list[ProblemResult]) -> Status:
    checks = [c for r in results for c in r.checks]
    if checks and all(c.status == Status.PASS for c in checks):
        return Status.PASS
    if checks and all(c.status == Status.ERROR and c.kind == Kind.IMPORT for c in checks):
        return Status.ERROR
    return Status.FAIL


def _exercism_test(result: ProblemResult, check: CheckResult, source: str) -> dict[str, Any]:
    problem = result.problem
    test: dict[str, Any] = {
        "name": f"Problem {problem.number}: {check.title}",
        "status": check.status,
        # The grader's code for this check, and how to run it alone.
        "test_code": f"{source}\n\n# Run only this check: {rerun_for(result, check.id)}".lstrip(),
        "task_id": problem.number,
        # The interface wants no message on a passing test, and output only when there is some.
        "message": None if check.status == Status.PASS else (check.message or "This check did not pass."),
        "output": _truncate(check.output, EXERCISM_OUTPUT_LIMIT) if check.output else None,
    }
    return test


def _truncate(text: str, limit: int) -> str:
    marker = "\n[output truncated]"
    return text if len(text) <= limit else text[: limit - len(marker)] + marker


# --- Gradescope autograder results -----------------------------------------------------


def gradescope(results: list[ProblemResult], target: Path, graders: GraderSet) -> str:
    score, max_score = totals(results)
    tests, lines = [], []
    for result in results:
        private, marked = _hidden_checks(result), declared_hidden(result.problem)
        seen = []
        for index, check in enumerate(result.checks, start=1):
            visibility = "hidden" if check.id in marked else "after_published" if check.id in private else "visible"
            tests.append(_gradescope_test(result, check, f"{result.problem.number}.{index}", visibility))
            if visibility == "visible":
                seen.append(check)
        lines.append(_gradescope_line(result, seen))
    document = {
        "score": points(score),
        "max_score": points(max_score),
        "execution_time": round(sum(c.duration_s for r in results for c in r.checks), 3),
        "output": "\n".join(lines),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"graders": graders.to_dict()},
    }
    return to_json(document)


def _gradescope_line(result: ProblemResult, visible: list[CheckResult]) -> str:
    """The top-level summary of one problem. Learners see it at once, so it counts only the
    checks they can see: "7/23 checks" beside 20 visible tests would tell them that hidden
    (or not yet published) checks exist, and how many."""
    passed, total = sum(check.status == Status.PASS for check in visible), len(visible)
    return f"Problem {result.problem.number}. {result.problem.title}: {passed}/{total} {plural(total, 'check')}"


def _gradescope_test(result: ProblemResult, check: CheckResult, number: str, visibility: str) -> dict[str, Any]:
    weight = result.problem.weight(check.id)
    output = check.message or ""
    if check.output and visibility == "visible":  # what the code printed is withheld from hidden checks
        output += "\n\nYour code printed:\n" + check.output
    return {
        "name": f"Problem {result.problem.number}: {check.title}",
        "name_format": "text",
        "number": number,
        "score": points(weight if check.status == Status.PASS else 0),
        "max_score": points(weight),
        "status": "passed" if check.status == Status.PASS else "failed",
        "output": output,
        "output_format": "text",
        # Checks only an instructor's private graders have stay hidden until grades are
        # published; checks a grader marks HIDDEN are never shown to learners.
        "visibility": visibility,
        "tags": [result.problem.slug, check.kind or check.status],
        "extra_data": {"cause": check.cause or None},
    }


def _hidden_checks(result: ProblemResult) -> set[str]:
    """The checks of an instructor's private graders that the bundled graders lack."""
    if result.problem.graders is None:
        return set()
    try:
        bundled = {c.id for c in discover_checks(replace(result.problem, graders=None))}
    except (GraderError, OSError, SyntaxError):
        bundled = set()
    return {c.id for c in result.checks} - bundled


# --- GitHub Actions --------------------------------------------------------------------


def github(results: list[ProblemResult], target: Path, graders: GraderSet) -> str:
    """Workflow commands for the log; the markdown summary goes to $GITHUB_STEP_SUMMARY
    when it is set, and after the commands otherwise."""
    lines = []
    if graders.source == "bundled" and not graders.verified:
        lines.append(
            f"::warning title=Modified graders::{_escape_data(graders.label + ': ' + ', '.join(graders.modified))}"
        )
    for result in results:
        # GitHub shows only the first few annotations of a step: one per distinct failure
        # (an import error fails every check with the same message).
        seen: set[str] = set()
        for check in result.checks:
            if check.status != Status.PASS and (check.message or check.id) not in seen:
                seen.add(check.message or check.id)
                lines.append(github_annotation(result, check))
    summary = github_summary(results, graders)
    if not _append_summary(os.environ.get(SUMMARY_ENV), summary):
        lines.append(summary)  # no job summary to write to: the log gets it instead
    return "\n".join(lines) + "\n"


def _append_summary(path: str | None, summary: str) -> bool:
    """Append to the job summary file; False when there is none, or it cannot be written."""
    if not path:
        return False
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(summary + "\n")
    except OSError:
        return False
    return True


def github_annotation(result: ProblemResult, check: CheckResult) -> str:
    problem = result.problem
    file, line = learner_location(result, check)
    properties = {"file": _workspace_path(file), "line": str(line) if line else None}
    properties["title"] = f"Problem {problem.number}: {check.title}"
    rendered = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items() if value)
    message = (check.message or "This check did not pass.") + f"\nre-run: {rerun_for(result, check.id)}"
    return f"::error {rendered}::{_escape_data(log_safe(message))}"


def learner_location(result: ProblemResult, check: CheckResult) -> tuple[Path, int | None]:
    """The learner's file and line a failure points at (the innermost learner frame in
    the message), else the problem's main learner file."""
    slug = result.problem.slug
    found = [m for m in _WHERE.finditer(check.message or "") if m.group("file").startswith(slug + "/")]
    if found:
        return result.target / found[-1].group("file"), int(found[-1].group("line"))
    return result.target / slug / result.problem.files[0], None


def github_summary(results: list[ProblemResult], graders: GraderSet) -> str:
    """The job summary in GitHub-flavoured Markdown: points, a table of problems, and what
    did not pass, one line per cause. Every string learner code or a submission could set
    (messages, check and problem titles, paths) is an inert code span (safetext.markdown_code)."""
    score, max_score = totals(results)
    lines = [
        "## Workbook results",
        "",
        f"**{points(score)} / {points(max_score)} points ({percent(score, max_score):g} %)**"
        + f" · graded with {_graders_label(graders)}"
        + (" · `--allow-modified-graders`" if graders.allow_modified else "")
        + f" · {graders.isolation}"
        + (" · `--no-sandbox`" if graders.no_sandbox else ""),
        "",
        "| Problem | Status | Checks | Points |",
        "| --- | --- | --- | --- |",
    ]
    marks = {Status.PASS: "✅ pass", Status.FAIL: "❌ fail", Status.ERROR: "⚠️ error"}
    for r in results:
        title = f"{r.problem.number}. {markdown_code(r.problem.title, in_table=True)}"
        lines.append(
            f"| {title} | {marks[r.status]} | {r.passed}/{r.total} | {points(r.score)}/{points(r.max_score)} |"
        )
    failures = [line for r in results for line in _summary_failures(r)]
    if failures:
        lines += ["", "<details><summary>Checks that did not pass</summary>", "", *failures, "", "</details>"]
    return "\n".join(lines)


def _graders_label(graders: GraderSet) -> str:
    # A custom graders' folder is a path someone chose: shown, never interpreted.
    if graders.source == "custom":
        return f"custom graders at {markdown_code(shown_path(graders.path, posix=True))}"
    return graders.label


def _summary_failures(result: ProblemResult) -> list[str]:
    """A line per check that did not pass, except that a cause two or more checks share
    (workbook.causes) gets one line saying how many checks it affects, as the text report does."""
    shared = causes.groups(result.checks)
    number = result.problem.number
    lines = []
    shown: set[str] = set()
    for check in result.checks:
        if check.status == Status.PASS or check.cause in shown:
            continue
        if check.cause in shared:
            shown.add(check.cause)
            lead, reason = causes.headline_parts(shared[check.cause])
            lines.append(f"- **Problem {number}: {lead}** ({check.status}): {_md(reason)}")
        else:
            message = f": {_md(check.message)}" if check.message else ""
            lines.append(f"- **Problem {number}: {_md(check.title)}** ({check.status}){message}")
    return lines


def _workspace_path(path: Path) -> str:
    """Annotations need a path relative to the repository (GITHUB_WORKSPACE, else cwd)."""
    return shown_path(path, Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd()), posix=True)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _md(text: str) -> str:
    """The first line of learner text, for a Markdown line: escaped controls, an inert code span."""
    lines = log_safe(text).splitlines()
    return markdown_code(lines[0]) if lines else ""

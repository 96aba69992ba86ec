"""Report formats for CI and instructors, each checked against its published field list:
JUnit XML, Exercism's test-runner interface v3, Gradescope's autograder results, GitHub
Actions workflow commands; plus scores and weights."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import MANIFEST, SOLUTIONS, write_problem

from workbook import cli, formats, integrity
from workbook.causes import assign_causes
from workbook.engine import CheckResult, ProblemResult, grader_weights
from workbook.jsonout import to_data

P1 = MANIFEST.by_number(1)
P2 = MANIFEST.by_number(2)
LONG_OUTPUT = "printed \x00 line\n" * 80  # longer than Exercism's 500 characters, with a NUL
TRACEBACK = (
    "POST /users made your code raise KeyError: 'id'\n"
    "  p1_dependency_chain/app.py, line 40, in create_user\n"
    "    return rows['id']\n"
    "  p1_dependency_chain/app.py, line 87, in insert\n"
    "    return cursor.fetchone()['id']"
)


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)


def sample_results(target: Path) -> list[ProblemResult]:
    """Two problems: one with a pass, a failure in learner code (with output) and a
    timeout; one whose every check hit the same import error. P1 weighs one check 3."""
    p1 = replace(P1, weights={"list_starts_empty": 3.0})
    first = ProblemResult(
        problem=p1,
        target=target,
        seed=7,
        checks=[
            CheckResult("list_starts_empty", "GET /users starts empty", "pass", None, 0.01, "pass"),
            CheckResult(
                "create_user_answers_201", "POST answers 201 <&>", "fail", TRACEBACK, 0.02, "learner", LONG_OUTPUT
            ),
            CheckResult(
                "one_connection_per_request", "One connection", "error", "Stopped: 5 s, 100% used", 5.0, "timeout"
            ),
        ],
    )
    message = "Python cannot read p2_role_based_access/app.py, line 12: invalid syntax."
    second = ProblemResult(
        problem=P2,
        target=target,
        seed=7,
        checks=[CheckResult(f"c{i}", f"Check {i}", "error", message, 0.0, "import") for i in range(3)],
    )
    return [first, second]


def bundled() -> integrity.GraderSet:
    return integrity.GraderSet("bundled", integrity.BUNDLED_GRADERS, "sha256:abc", True)


# --- points ------------------------------------------------------------------------------


def test_weighted_score_and_max_score_reach_the_json_report(tmp_path):
    results = sample_results(tmp_path)
    document = to_data(formats.json_document(results, tmp_path, bundled()))
    assert results[0].score == 3 and results[0].max_score == 5
    assert (document["problems"][0]["score"], document["problems"][0]["max_score"]) == (3, 5)
    assert (document["score"], document["max_score"], document["percent"]) == (3, 8, 37.5)
    assert document["graders"]["source"] == "bundled"
    assert document["graders"]["allow_modified_graders"] is False


def test_a_grader_may_declare_weights_and_the_manifest_overrides_them(tmp_path):
    folder = tmp_path / "graders" / P1.slug
    folder.mkdir(parents=True)
    (folder / "test_x.py").write_text('WEIGHTS = {"a": 2, "b": 5}\n\ndef test_a():\n    """A."""\n', encoding="utf-8")
    problem = replace(P1, graders=tmp_path / "graders", weights={"b": 1})
    assert grader_weights(problem) == {"a": 2.0, "b": 5.0}
    merged = replace(problem, weights={**grader_weights(problem), **problem.weights})
    assert (merged.weight("a"), merged.weight("b"), merged.weight("other")) == (2.0, 1.0, 1.0)


# --- JUnit XML ---------------------------------------------------------------------------


def test_junit_follows_the_junit_xml_schema(tmp_path):
    results = sample_results(tmp_path)
    root = ET.fromstring(formats.junit(results, tmp_path, bundled()).encode("utf-8"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 2
    for suite, result in zip(suites, results, strict=True):
        for attribute in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp", "hostname"):
            assert suite.get(attribute), attribute
        assert int(suite.get("tests")) == len(suite.findall("testcase")) == result.total
        assert int(suite.get("failures")) == len(suite.findall("testcase/failure"))
        assert int(suite.get("errors")) == len(suite.findall("testcase/error"))
        float(suite.get("time"))
        properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
        assert {"score", "max_score", "graders", "allow_modified_graders"} <= set(properties)
        for case, check in zip(suite.findall("testcase"), result.checks, strict=True):
            assert case.get("name") == check.title
            assert case.get("classname") == f"workbook.{result.problem.slug}.{check.id}"
            float(case.get("time"))
            outcome = case.find("failure") if check.status == "fail" else case.find("error")
            if check.status == "pass":
                assert case.find("failure") is None and case.find("error") is None
            else:
                assert outcome is not None and outcome.get("message") and outcome.get("type") == check.kind
                assert f"workbook check {result.problem.number} -k {check.id}" in outcome.text
    assert int(root.get("tests")) == 6 and int(root.get("errors")) == 4 and int(root.get("failures")) == 1
    system_out = suites[0].find("testcase[2]/system-out").text
    assert "\x00" not in system_out and "printed" in system_out


# The content models of Jenkins' JUnit schema (junit-4.xsd, the one pytest's docs quote as
# what Jenkins validates against): each element's children, in order, as a regex over tags.
JUNIT_CHILDREN = {
    "testsuites": r"(testsuite )*",
    "testsuite": r"(properties )?(testcase )*(system-out )?(system-err )?",
    "properties": r"(property )+",
    "testcase": r"(skipped )?(error )*(failure )*(system-out )*(system-err )*",
}


def test_junit_elements_nest_as_the_jenkins_schema_allows_and_causes_are_suite_properties(tmp_path):
    first, second = sample_results(tmp_path)
    shared = [replace(check, cause="raised:app.py:12:SyntaxError") for check in second.checks]
    root = ET.fromstring(formats.junit([first, replace(second, checks=shared)], tmp_path, bundled()).encode("utf-8"))
    for element in root.iter():
        if element.tag in JUNIT_CHILDREN:
            children = "".join(f"{child.tag} " for child in element)
            assert re.fullmatch(JUNIT_CHILDREN[element.tag], children), f"<{element.tag}> holds {children}"
    suite = root.findall("testsuite")[1]
    causes = {p.get("name"): p.get("value") for p in suite.findall("properties/property") if "cause" in p.get("name")}
    assert causes == {f"cause.{check.id}": "raised:app.py:12:SyntaxError" for check in shared}


# --- Exercism ----------------------------------------------------------------------------


def check_exercism_v3(document: dict) -> None:
    """The fields of results.json in Exercism's test-runner interface, version 3."""
    assert document["version"] == 3
    assert document["status"] in ("pass", "fail", "error")
    if document["status"] == "error":
        assert isinstance(document["message"], str) and document["message"]
    assert set(document) <= {"version", "status", "message", "tests", "workbook"}
    assert isinstance(document["tests"], list)
    for test in document["tests"]:
        assert set(test) == {"name", "status", "message", "output", "test_code", "task_id"}
        assert isinstance(test["name"], str) and test["name"]
        assert test["status"] in ("pass", "fail", "error")
        assert (test["message"] is None) == (test["status"] == "pass")
        assert test["output"] is None or (isinstance(test["output"], str) and len(test["output"]) <= 500)
        assert isinstance(test["test_code"], str)
        assert isinstance(test["task_id"], int) and test["task_id"] >= 1


def test_exercism_results_follow_interface_v3_in_check_order(tmp_path):
    results = sample_results(tmp_path)
    document = json.loads(formats.exercism(results, tmp_path, bundled()))
    check_exercism_v3(document)
    assert document["status"] == "fail"
    expected = [f"Problem {r.problem.number}: {c.title}" for r in results for c in r.checks]
    assert [t["name"] for t in document["tests"]] == expected
    assert [t["task_id"] for t in document["tests"]] == [1, 1, 1, 2, 2, 2]
    assert document["tests"][1]["output"].endswith("[output truncated]")


def test_exercism_status_is_error_when_the_code_cannot_run(tmp_path):
    document = json.loads(formats.exercism(sample_results(tmp_path)[1:], tmp_path, bundled()))
    check_exercism_v3(document)
    assert document["status"] == "error"
    assert "cannot read" in document["message"]


# --- Gradescope --------------------------------------------------------------------------


def check_gradescope(document: dict) -> None:
    """The fields of results.json in Gradescope's autograder specification."""
    visibilities = {"hidden", "after_due_date", "after_published", "visible"}
    assert isinstance(document["score"], (int, float))
    assert isinstance(document["max_score"], (int, float))
    assert document["visibility"] in visibilities and document["stdout_visibility"] in visibilities
    assert isinstance(document["output"], str)
    assert isinstance(document["execution_time"], (int, float))
    for test in document["tests"]:
        assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(test)
        assert isinstance(test["name"], str)
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert test["status"] in ("passed", "failed")
        assert isinstance(test["output"], str)
        assert test["visibility"] in visibilities
        assert test["output_format"] in ("text", "html", "simple_format", "md", "ansi")
    assert sum(t["score"] for t in document["tests"]) == document["score"]
    assert sum(t["max_score"] for t in document["tests"]) == document["max_score"]


def test_gradescope_results_follow_the_autograder_specification(tmp_path):
    document = json.loads(formats.gradescope(sample_results(tmp_path), tmp_path, bundled()))
    check_gradescope(document)
    assert (document["score"], document["max_score"]) == (3, 8)
    assert [t["number"] for t in document["tests"][:3]] == ["1.1", "1.2", "1.3"]
    assert document["tests"][0] | {"score": 3, "max_score": 3, "status": "passed"} == document["tests"][0]
    assert "Your code printed" in document["tests"][1]["output"]
    assert document["extra_data"]["graders"]["source"] == "bundled"
    assert document["output"] == "\n".join([f"Problem 1. {P1.title}: 1/3 checks", f"Problem 2. {P2.title}: 0/3 checks"])


def test_gradescope_summary_counts_only_the_checks_learners_can_see(tmp_path):
    private = tmp_path / "graders" / P1.slug
    private.mkdir(parents=True)
    (private / "test_private.py").write_text(
        'HIDDEN = {"secret_rule"}\n\n\ndef test_secret_rule():\n    """Secret."""\n\n\n'
        'def test_later_rule():\n    """Shown once grades are published."""\n',
        encoding="utf-8",
    )
    checks = [
        CheckResult("list_starts_empty", "GET /users starts empty", "pass", None, 0.01, "pass"),
        CheckResult("secret_rule", "Secret", "fail", "no", 0.01, "learner"),
        CheckResult("later_rule", "Later", "fail", "no", 0.01, "learner"),
    ]
    result = ProblemResult(problem=replace(P1, graders=tmp_path / "graders"), target=tmp_path, seed=7, checks=checks)
    document = json.loads(formats.gradescope([result], tmp_path, bundled()))
    check_gradescope(document)
    assert [test["visibility"] for test in document["tests"]] == ["visible", "hidden", "after_published"]
    assert document["output"] == f"Problem 1. {P1.title}: 1/1 check"


# --- GitHub Actions ----------------------------------------------------------------------

COMMAND = re.compile(r"^::(error|warning|notice)(?: ((?:[a-z]+=[^,:\r\n]*)(?:,[a-z]+=[^,:\r\n]*)*))?::([^\r\n]*)$")


def unescape(text: str) -> str:
    return text.replace("%0A", "\n").replace("%0D", "\r").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def test_github_annotations_point_at_the_learners_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = formats.github(sample_results(tmp_path), tmp_path, bundled())
    commands = [line for line in output.splitlines() if line.startswith("::")]
    # one per distinct failure: the three identical import errors make one annotation
    assert len(commands) == 3
    parsed = []
    for line in commands:
        match = COMMAND.match(line)
        assert match, line
        properties = dict(item.split("=", 1) for item in match.group(2).split(","))
        parsed.append((match.group(1), {k: unescape(v) for k, v in properties.items()}, unescape(match.group(3))))
    kind, properties, message = parsed[0]
    assert kind == "error"
    assert properties == {
        "file": "p1_dependency_chain/app.py",
        "line": "87",
        "title": "Problem 1: POST answers 201 <&>",
    }
    assert message.startswith("POST /users made your code raise KeyError")
    assert "Stopped: 5 s, 100% used" in parsed[1][2]
    assert "line" not in parsed[1][1] and parsed[1][1]["file"] == "p1_dependency_chain/app.py"
    assert (parsed[2][1]["file"], parsed[2][1]["line"]) == ("p2_role_based_access/app.py", "12")
    assert "## Workbook results" in output  # no $GITHUB_STEP_SUMMARY: the summary follows


def test_github_summary_goes_to_the_step_summary_file(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    output = formats.github(sample_results(tmp_path), tmp_path, bundled())
    assert "## Workbook results" not in output
    text = summary.read_text(encoding="utf-8")
    assert "| Problem | Status | Checks | Points |" in text
    assert "| 1. `Dependency injection chain` | ❌ fail | 1/3 | 3/5 |" in text
    assert "**3 / 8 points (37.5 %)**" in text


HOSTILE_MARKDOWN = (
    "![tracker](https://evil.example/pixel.png?u=grader) [Download your grade fix](https://evil.example/phish) **bold**"
)


def failing_lines(summary: str) -> list[str]:
    return [line for line in summary.splitlines() if line.startswith("- ")]


def test_github_summary_shows_learner_text_as_inert_code_spans(tmp_path):
    hostile = ProblemResult(
        problem=replace(P1, title="Chain | <b>[x](https://evil.example)</b>"),
        target=tmp_path,
        checks=[
            CheckResult("a", "[Title](https://evil.example) `x`", "error", HOSTILE_MARKDOWN + "\nmore", 0.0, "import"),
        ],
    )
    summary = formats.github_summary([hostile], bundled())
    assert "| 1. `Chain \\| <b>[x](https://evil.example)</b>` | ⚠️ error | 0/1 | 0/1 |" in summary, summary
    assert failing_lines(summary) == [
        f"- **Problem 1: `` [Title](https://evil.example) `x` ``** (error): `{HOSTILE_MARKDOWN}`",
    ]


def test_github_summary_shows_a_shared_cause_once_with_the_number_of_checks(tmp_path):
    first, second = sample_results(tmp_path)
    second.checks = assign_causes(second.checks)
    first.checks = assign_causes(first.checks)
    summary = formats.github_summary([first, second], bundled())
    assert failing_lines(summary) == [
        "- **Problem 1: `POST answers 201 <&>`** (fail): `POST /users made your code raise KeyError: 'id'`",
        "- **Problem 1: `One connection`** (error): `Stopped: 5 s, 100% used`",
        "- **Problem 2: 3 checks could not run** (error):"
        " `Python cannot read p2_role_based_access/app.py, line 12: invalid syntax.`",
    ]


# --- the command line --------------------------------------------------------------------


def test_check_output_writes_the_report_and_keeps_the_human_summary(tmp_path):
    report = tmp_path / "junit.xml"
    result = CliRunner().invoke(cli.main, ["check", "1", "--solutions", "--format", "junit", "--output", str(report)])
    assert result.exit_code == 0, result.output
    assert "checks passed" in result.output  # the human summary
    root = ET.parse(report).getroot()
    assert int(root.get("tests")) > 0 and root.get("failures") == "0" and root.get("errors") == "0"


def test_check_dir_loads_only_the_learner_files(tmp_path):
    marker = tmp_path / "loaded"
    evil = f"open({str(marker)!r}, 'w').write('x')\n"
    solution = (SOLUTIONS / P1.slug / "app.py").read_text(encoding="utf-8")
    root = write_problem(tmp_path / "sub", P1, {"app.py": solution, "conftest.py": evil, "sitecustomize.py": evil})
    (root / P1.slug / "pytest.ini").write_text("[pytest]\naddopts = -x --collect-only\n", encoding="utf-8")
    result = CliRunner().invoke(cli.main, ["check", "1", "--dir", str(root), "--format", "exercism"])
    document = json.loads(result.stdout)
    check_exercism_v3(document)
    assert document["status"] == "pass", result.output
    assert not marker.exists()


def test_exercism_test_code_is_the_graders_code_for_that_check():
    from workbook.engine import grade
    from workbook.formats import render
    from workbook.integrity import describe
    from workbook.manifest import ROOT, load_manifest

    problem = load_manifest().by_number(1)
    result = grade(problem, ROOT / "solutions", only=["list_starts_empty"])
    document = json.loads(render("exercism", [result], ROOT / "solutions", describe(None)))
    (test,) = document["tests"]
    assert test["test_code"].startswith("def test_list_starts_empty(")
    rerun = f"# Run only this check: workbook check 1 -k list_starts_empty --solutions --seed {result.seed}"
    assert test["test_code"].endswith(rerun)

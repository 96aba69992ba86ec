"""Typed results (issue 12, item 3): the Status and Kind enums keep the strings every
document carried, one JSON writer serves every format, a class report reads and writes
back unchanged, and the terminal drawing answers NO_COLOR."""

from __future__ import annotations

import enum
import io
import json
from dataclasses import dataclass
from pathlib import Path

from workbook.documents import ClassDocument
from workbook.jsonout import to_data, to_json
from workbook.reportfiles import dumps
from workbook.results import Kind, Phase, Status, overall
from workbook.terminal import LiveCount, Style


def test_statuses_and_kinds_are_the_strings_the_documents_carry():
    assert [str(s) for s in Status] == ["pass", "fail", "error", "not run"]
    assert json.dumps({"status": Status.PASS, "kind": Kind.NOT_RUN}) == '{"status": "pass", "kind": "not-run"}'
    assert (Status.parse("fail"), Status.parse("passed"), Status.parse(None)) == (Status.FAIL, None, None)
    assert (Kind.parse("timeout"), Kind.parse("made up")) == (Kind.TIMEOUT, Kind.NONE)
    assert [phase.unlimited for phase in Phase] == [False, True, False, True, False]


def test_a_problem_passes_only_when_every_check_passes_and_errs_only_when_every_check_errs():
    assert overall(["pass", "pass"]) == Status.PASS
    assert overall(["error", "error"]) == Status.ERROR
    assert overall(["pass", "error"]) == Status.FAIL
    assert overall(["pass", "not run"]) == Status.FAIL
    assert overall([]) == Status.FAIL


class Colour(enum.Enum):
    RED = "red"


@dataclass
class Sample:
    name: str
    where: Path
    colour: Colour
    tags: tuple[str, ...]


def test_to_json_writes_dataclasses_in_field_order_with_enums_and_paths_as_text():
    sample = Sample("é", Path("/tmp/x"), Colour.RED, ("a",))

    assert to_data(sample) == {"name": "é", "where": "/tmp/x", "colour": "red", "tags": ["a"]}
    assert to_json({"b": 1, "a": sample}) == (
        '{\n  "b": 1,\n  "a": {\n    "name": "é",\n    "where": "/tmp/x",\n    "colour": "red",\n'
        '    "tags": [\n      "a"\n    ]\n  }\n}'
    )
    assert to_json({"b": 1, "a": "é"}, sort_keys=True, ascii_only=True, indent=None) == '{"a": "\\u00e9", "b": 1}'


REPORT = {
    "version": 1,
    "target": "class/ann",
    "problems": [
        {
            "number": 1,
            "slug": "p1_dependency_chain",
            "title": "Dependency chain",
            "status": "fail",
            "passed": 1,
            "total": 2,
            "seed": 7,
            "checks": [
                {"id": "a", "title": "A", "status": "pass", "message": None, "duration_s": 0.01, "cause": None},
                {"id": "b", "title": "B", "status": "error", "message": "x", "duration_s": 5.0, "cause": "c1"},
            ],
            "score": 1,
            "max_score": 2.5,
        }
    ],
    "score": 1,
    "max_score": 2.5,
    "percent": 40.0,
    "graders": {"source": "bundled", "digest": "sha256:abc"},
    "error": None,
    "timed_out": [1],
    "submission": "ann",
    "fingerprint": "f00",
    "duration_s": 3.25,
    "from_a_newer_workbook": {"kept": True},
}


def test_a_class_report_reads_and_writes_back_byte_identical_unknown_keys_included():
    written = dumps(REPORT)

    document = ClassDocument.from_json(json.loads(written))

    assert document.problems[0].checks[1].status == Status.ERROR
    assert document.extra == {"from_a_newer_workbook": {"kept": True}}
    assert dumps(document) == written


def test_the_report_of_a_submission_not_graded_says_why_and_scores_nothing():
    document = ClassDocument.failed("bo", {"source": "bundled"}, "the run was interrupted")

    assert to_data(document) == {
        "version": 1,
        "target": "",
        "problems": [],
        "score": 0,
        "max_score": 0,
        "percent": 0.0,
        "graders": {"source": "bundled"},
        "error": "the run was interrupted",
        "submission": "bo",
        "fingerprint": None,
        "duration_s": 0.0,
    }


class Terminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def test_style_draws_colour_and_symbols_on_a_terminal_only_without_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert Style.detect(Terminal()) == Style(color=True, unicode=True)
    assert Style.detect(io.StringIO()) == Style(color=False, unicode=False)
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Style.detect(Terminal())
    assert plain == Style(color=False, unicode=True)
    assert [plain.mark(status) for status in Status.graded()] == ["✔", "✘", "!"]
    assert Style(color=False, unicode=False).mark("error") == "ERROR"
    assert Style(color=False, unicode=False).bar(1, 4) == "[#####...............]"


def test_the_live_count_draws_on_a_terminal_and_stays_silent_when_piped():
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        count = LiveCount(2, stream)
        count.check_done(None)
    assert terminal.getvalue() == "\r  grading: 1/2 checks done "
    assert pipe.getvalue() == ""

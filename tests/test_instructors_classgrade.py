"""Grading a class that holds the odd values nobody has to craft (issue 15): lone surrogates
and escape sequences in learner messages, non-UTF-8 and very long folder names, formula
names, a 5 MB message, hostile reports for `merge`, an OUT inside SUBMISSIONS, two shards
into one OUT, Ctrl-C, and hidden checks. Every class is on problem 1, and every odd value
comes from an import error, so only one submission runs the real checks."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import MANIFEST, SOLUTIONS, process_running

from workbook import cli, gradebook, integrity
from workbook.classout import LOCK_FILE
from workbook.classprogress import ClassProgress, closing_summary
from workbook.documents import ClassDocument
from workbook.engine import discover_checks
from workbook.jsonout import to_data
from workbook.safetext import MESSAGE_LIMIT

P1 = MANIFEST.by_number(1)
TOTAL = len(discover_checks(P1))
SOLUTION = (SOLUTIONS / P1.slug / "app.py").read_text(encoding="utf-8")
WORKFLOW = Path(__file__).resolve().parent.parent / "examples" / "grade-class.yml"
# What GitHub Actions would act on: `::` at the start of a line after whitespace, or a
# legacy `##[` anywhere.
WORKFLOW_COMMAND = re.compile(r"^\s*::|##\[", re.MULTILINE)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
HOSTILE_TEXT = (
    "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[8mhidden\\n::error::owned\\n  ::stop-commands::tok\\n::add-mask::x ##[add-mask]y"
)
LONG_NAME = "n" * 252
LATIN1_NAME = b"Jos\xe9"


@pytest.fixture(autouse=True)
def current_checksums(tmp_path, monkeypatch):
    """A checksum list matching the graders as they are now (another test checks the shipped one)."""
    path = tmp_path / "CHECKSUMS.sha256"
    monkeypatch.setattr(integrity, "CHECKSUMS", path)
    integrity.write_checksums(destination=path)
    return path


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def learner(root: Path, name: str | bytes, source: str) -> Path:
    """One submission of problem 1 (a bytes name is a folder name that is not UTF-8)."""
    folder = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(name))))
    (folder / P1.slug).mkdir(parents=True)
    (folder / P1.slug / "app.py").write_text(source, encoding="utf-8")
    return folder


def failing_import(message_expression: str) -> str:
    """Learner code whose import raises RuntimeError(<expression>)."""
    return f"raise RuntimeError({message_expression})\n"


def odd_class(root: Path) -> dict[str, str]:
    """A class holding every odd value; returns each submission's name as the gradebook shows it."""
    learner(root, "alice", SOLUTION)
    learner(root, "surrogate", failing_import('"lone \\udcff surrogate"'))
    learner(root, LATIN1_NAME, failing_import('"latin-1 folder"'))
    learner(root, LONG_NAME, failing_import('"long name"'))
    learner(root, "=HYPERLINK(1)", failing_import('"formula"'))
    learner(root, "+1", failing_import('"plus"'))
    learner(root, "@SUM", failing_import('"at"'))
    learner(root, "escapes", failing_import(f'"{HOSTILE_TEXT}"'))
    learner(root, "huge", failing_import('"A" * 5_000_000'))
    names = ["alice", "surrogate", "Jos\\xe9", LONG_NAME, "=HYPERLINK(1)", "+1", "@SUM", "escapes", "huge"]
    return {name: name for name in names}


def gradebook_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "gradebook.csv", encoding="utf-8", newline="") as handle:
        return {row["submission"]: row for row in csv.DictReader(handle)}


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def assert_no_workflow_command(text: str, where: str) -> None:
    found = WORKFLOW_COMMAND.findall(text)
    assert not found, f"{where}: a line could start a workflow command: {found[:3]}"


def assert_safe_csv(out: Path) -> None:
    raw = (out / "gradebook.csv").read_bytes()
    text = raw.decode("utf-8")  # opens as UTF-8 text, or raises
    assert_no_workflow_command(text, "gradebook.csv")
    with open(out / "gradebook.csv", encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            for cell in row:
                assert not cell.startswith(FORMULA_START), f"a spreadsheet would run the cell {cell[:40]!r}"


def test_gradebook_cells_from_a_folder_name_hold_no_raw_control_character(tmp_path):
    class_dir = tmp_path / "class"
    learner(class_dir, "ann\nbo\rcy\x1b[2J", failing_import('"broken"'))
    result = run("grade", str(class_dir), "--out", str(tmp_path / "out"), "-p", "1")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "gradebook.csv").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 2, text  # the header and one row, each on one line
    assert not re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f]", text.replace("\n", "")), text
    assert list(gradebook_rows(tmp_path / "out")) == ["ann\\x0abo\\x0dcy\\x1b[2J"]


def test_a_class_of_odd_values_is_graded_end_to_end(tmp_path):
    class_dir = tmp_path / "class"
    expected = odd_class(class_dir)
    out = class_dir / "_grades"  # an OUT inside SUBMISSIONS is not graded as a submission
    html = tmp_path / "report.html"
    result = run("grade", str(class_dir), "--out", str(out), "-p", "1", "-j", "2", "--html", str(html))
    assert result.exit_code == 0, result.output
    assert "--out is inside SUBMISSIONS" in result.stderr, result.stderr

    book = gradebook_rows(out)
    shown = {name.removeprefix("'") for name in book}
    assert shown == set(expected), sorted(shown ^ set(expected))
    assert book["alice"]["p1_status"] == "pass" and book["alice"]["p1_passed"] == str(TOTAL)
    for name, row in book.items():
        assert row["error"] == "", f"{name}: {row['error']}"
        if name != "alice":
            assert (row["p1_status"], row["p1_total"]) == ("error", str(TOTAL)), name
    assert_safe_csv(out)
    assert "'=HYPERLINK(1)" in book and "'+1" in book and "'@SUM" in book

    reports = sorted((out / "submissions").glob("*.json"))
    assert len(reports) == len(expected), [p.name for p in reports]
    for path in reports:
        assert len(path.name.encode()) <= 255
        text = path.read_text(encoding="utf-8")  # valid UTF-8
        assert len(text) < 40 * MESSAGE_LIMIT, f"{path.name}: {len(text)} characters"
        document = json.loads(text)
        assert_no_workflow_command(text, path.name)
        for string in strings_in(document):  # decoded, as `jq -r` would print them
            assert_no_workflow_command(string, f"{path.name}, decoded")
            assert "\x1b" not in string, f"{path.name} holds a raw escape sequence"
        assert document["submission"] in expected
    huge = json.loads(next(p for p in reports if p.name.startswith("huge")).read_text(encoding="utf-8"))
    message = huge["problems"][0]["checks"][0]["message"]
    first_id = huge["problems"][0]["checks"][0]["id"]
    for check in huge["problems"][0]["checks"][1:]:  # stored once per cause
        assert check["message"].startswith(f"same as check {first_id} (cause "), check["message"][:200]
    assert re.search(r"… \(\d+ more characters cut\)", message), message[-200:]
    surrogate = json.loads((out / "submissions" / "surrogate.json").read_text(encoding="utf-8"))
    assert "lone \ufffd surrogate" in surrogate["problems"][0]["checks"][0]["message"]

    run_file = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run_file["complete"] is True and "_grades" not in run_file["submissions"]
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "\x1b" not in page
    assert_no_workflow_command(result.stdout + result.stderr, "grade's output")


@pytest.mark.parametrize("output_format", ["text", "json", "junit", "exercism", "gradescope", "github"])
def test_every_format_of_hostile_learner_text_is_valid_and_starts_no_workflow_command(
    tmp_path, monkeypatch, output_format
):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    source = failing_import(f'"{HOSTILE_TEXT} and a lone \\udcff"')
    folder = learner(tmp_path / "class", LATIN1_NAME, source)
    report = tmp_path / "report.out"
    result = run("check", "1", "--dir", str(folder), "--format", output_format, "--output", str(report))
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (result.exception, result.output)
    text = report.read_bytes().decode("utf-8")  # valid UTF-8, or this raises
    assert "pwned" in text, text[:500]
    if output_format in ("text", "json", "junit", "github"):  # the formats that name the folder
        assert "Jos" in text, text[:500]
    assert "\x1b" not in text and "\x07" not in text, repr(text[:300])
    assert_no_workflow_command(text if output_format != "github" else _annotation_data(text), output_format)
    if output_format == "junit":
        ET.fromstring(text.encode("utf-8"))
    elif output_format not in ("text", "github"):
        json.loads(text)
    printed = run("check", "1", "--dir", str(folder), "-v")
    assert isinstance(printed.exception, SystemExit) and printed.exit_code == 1, (printed.exception, printed.output)
    assert "\x1b" not in printed.output and "\\x1b]0;pwned" in printed.output
    assert_no_workflow_command(printed.output, "check -v on a terminal")


def _annotation_data(text: str) -> str:
    """The github format's own lines are workflow commands; what learner text could add is
    inside them, after the command's second `::`."""
    return "\n".join(line.split("::", 2)[-1] if line.startswith("::error") else line for line in text.splitlines())


# --- merge and OUT --------------------------------------------------------------------


def graded_shards(tmp_path: Path) -> tuple[Path, list[Path]]:
    class_dir = tmp_path / "class"
    for name in ("frank", "grace", "heidi"):
        (class_dir / name).mkdir(parents=True)  # submitted nothing: graded without a process
    shards = []
    for index in (1, 2):
        shards.append(tmp_path / f"shard-{index}")
        result = run("grade", str(class_dir), "--out", str(shards[-1]), "-p", "1", "--shard", f"{index}/2")
        assert result.exit_code == 0, result.output
    return class_dir, shards


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (lambda path: path.write_text("{not json", encoding="utf-8"), "frank.json"),
        (lambda path: path.write_text("[1, 2]", encoding="utf-8"), "frank.json"),
        (lambda path: _edit(path, problems="all of them"), "frank.json"),
        (lambda path: _edit(path, submission=7), "frank.json"),
        (lambda path: path.unlink(), "frank.json"),
        (lambda path: _edit_problem(path, score="NaN-ish"), "frank.json"),
        (lambda path: _edit_problem(path, score=float("inf")), "frank.json"),
        (lambda path: _edit_problem(path, number="one"), "frank.json"),
        (lambda path: _edit_problem(path, checks=[{"id": 1, "status": "pass"}]), "frank.json"),
        (lambda path: (path.parent.parent / "run.json").write_text('{"x": 1}', encoding="utf-8"), "run.json"),
    ],
)
def test_merge_names_a_malformed_report_in_one_line_and_exits_2(tmp_path, tamper, named):
    _, shards = graded_shards(tmp_path)
    tamper(shards[0] / "submissions" / "frank.json")
    result = run("merge", *map(str, shards), "--out", str(tmp_path / "merged"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert named in result.stderr, result.stderr
    assert not (tmp_path / "merged" / "gradebook.csv").exists()


def _edit(path: Path, **changes) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    document.update(changes)
    path.write_text(json.dumps(document), encoding="utf-8")


def _edit_problem(path: Path, **changes) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    document["problems"][0].update(changes)
    path.write_text(json.dumps(document), encoding="utf-8")


def test_merge_never_writes_outside_out_whatever_a_report_says(tmp_path):
    _, shards = graded_shards(tmp_path)
    _edit(shards[0] / "submissions" / "frank.json", submission="../../escaped")
    _edit(shards[1] / "submissions" / "grace.json", submission="=cmd|' /C calc'!A0\udcff")
    heidi = json.loads((shards[0] / "submissions" / "heidi.json").read_text(encoding="utf-8"))
    heidi["problems"][0]["checks"][0]["title"] = "</title><script>x</script>\n::error::owned"
    (shards[0] / "submissions" / "heidi.json").write_text(json.dumps(heidi), encoding="utf-8")
    merged = tmp_path / "deep" / "merged"
    result = run("merge", *map(str, shards), "--out", str(merged), "--html", str(merged / "report.html"))
    assert result.exit_code == 0, result.output
    page = (merged / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert_no_workflow_command(page, "report.html")
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()} - {
        p.relative_to(tmp_path) for shard in shards for p in shard.rglob("*") if p.is_file()
    }
    outside = [p for p in written if p.parts[:2] != ("deep", "merged") and p.name != "CHECKSUMS.sha256"]
    assert outside == [], outside
    assert len(list((merged / "submissions").glob("*.json"))) == 3
    assert_safe_csv(merged)


def test_merge_into_an_out_that_cannot_be_created_says_so_in_one_line(tmp_path):
    _, shards = graded_shards(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    result = run("merge", *map(str, shards), "--out", str(blocker / "merged"))
    assert result.exit_code == 2, result.output
    assert "cannot write the merged gradebook" in result.stderr and "Traceback" not in result.output


def test_two_shards_into_one_out_are_refused_before_grading(tmp_path):
    class_dir, shards = graded_shards(tmp_path)
    before = (shards[0] / "gradebook.csv").read_text(encoding="utf-8")
    result = run("grade", str(class_dir), "--out", str(shards[0]), "-p", "1", "--shard", "2/2")
    assert result.exit_code == 2, result.output
    assert "holds the run of shard 1/2, not 2/2" in result.output, result.output
    assert (shards[0] / "gradebook.csv").read_text(encoding="utf-8") == before


def test_a_second_grade_writing_into_the_same_out_at_once_is_refused(tmp_path):
    class_dir = tmp_path / "class"
    (class_dir / "frank").mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / LOCK_FILE, "a", encoding="utf-8") as held:  # another grade, still running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run("grade", str(class_dir), "--out", str(out), "-p", "1")
    assert result.exit_code == 1, result.output
    assert "another `workbook grade` is writing into" in result.output, result.output
    assert not (out / "gradebook.csv").exists()


def test_an_out_that_is_submissions_itself_or_cannot_be_written_is_refused_before_grading(tmp_path):
    class_dir = tmp_path / "class"
    (class_dir / "frank").mkdir(parents=True)
    same = run("grade", str(class_dir), "--out", str(class_dir), "-p", "1")
    assert same.exit_code == 2 and "is SUBMISSIONS itself" in same.output, same.output
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    blocked = run("grade", str(class_dir), "--out", str(blocker / "out"), "-p", "1")
    assert blocked.exit_code == 2 and "cannot write into the folder" in blocked.output, blocked.output
    no_html = run("grade", str(class_dir), "--out", str(tmp_path / "out"), "-p", "1", "--html", str(blocker / "r.html"))
    assert no_html.exit_code == 2 and "--html" in no_html.output, no_html.output
    assert not (tmp_path / "out" / "gradebook.csv").exists()


# --- a run is never lost ----------------------------------------------------------------


def test_a_report_the_writer_cannot_write_becomes_an_error_row(tmp_path, monkeypatch):
    class_dir = tmp_path / "class"
    for name in ("frank", "grace"):
        (class_dir / name).mkdir(parents=True)
    real_dumps = gradebook.dumps

    def crashing_dumps(document):
        if to_data(document).get("submission") == "grace":
            raise ValueError("no writer takes this")
        return real_dumps(document)

    monkeypatch.setattr(gradebook, "dumps", crashing_dumps)
    out = tmp_path / "out"
    result = run("grade", str(class_dir), "--out", str(out), "-p", "1")
    assert result.exit_code == 0, result.output
    book = gradebook_rows(out)
    assert sorted(book) == ["frank", "grace"]
    assert book["grace"]["error"] == "the workbook could not write this report: ValueError: no writer takes this"
    assert json.loads((out / "submissions" / "grace.json").read_text(encoding="utf-8"))["error"].startswith(
        "the workbook could not write"
    )


def test_resume_keeps_unchanged_reports_and_regrades_changed_ones(tmp_path, monkeypatch):
    class_dir = tmp_path / "class"
    learner(class_dir, "ivan", failing_import('"one"'))
    learner(class_dir, "judy", failing_import('"two"'))
    out = tmp_path / "out"
    assert run("grade", str(class_dir), "--out", str(out), "-p", "1").exit_code == 0
    graded: list[str] = []
    real = gradebook.grade_submission

    def counting(name, *args, **kwargs):
        graded.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(gradebook, "grade_submission", counting)
    (class_dir / "judy" / P1.slug / "app.py").write_text(failing_import('"changed"'), encoding="utf-8")
    result = run("grade", str(class_dir), "--out", str(out), "-p", "1", "--resume")
    assert result.exit_code == 0, result.output
    assert graded == ["judy"]
    assert "Kept 1 report of the earlier run" in result.stderr, result.stderr
    assert sorted(gradebook_rows(out)) == ["ivan", "judy"]
    judy = json.loads((out / "submissions" / "judy.json").read_text(encoding="utf-8"))
    assert "changed" in judy["problems"][0]["checks"][0]["message"]


def _endless_class(root: Path, tag: str, count: int) -> None:
    """Submissions whose import never ends, each naming its process `tag` first. The name
    (/proc/PID/comm) is what the test can see from outside: the sandbox lets a submission
    write nowhere but its own scratch folder."""
    looping = f"open('/proc/self/comm', 'w').write({tag!r})\nwhile True:\n    pass\n"
    for index in range(count):
        learner(root, f"loop{index}", looping)


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from workbook.cli import main; main()", *args],
        cwd=Path(cli.__file__).parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.05)


def _process_tag() -> str:
    return "wb" + secrets.token_hex(6)  # a process name holds at most 15 characters


def _looping(tag: str) -> list[int]:
    """The host's process ids of the learner processes named `tag`."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            named = entry.name.isdigit() and (entry / "comm").read_text().strip() == tag
            if named and process_running(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_a_folder_name_that_is_not_utf8_missing_a_problem_is_still_reported(tmp_path):
    """The engine's own message names the folder ("no folder p2_... in Jos\\xe9"): that
    text, not only the learner's, must reach the report as valid UTF-8 (red-team finding)."""
    class_dir, out = tmp_path / "class", tmp_path / "out"
    learner(class_dir, b"Jos\xe9", (SOLUTIONS / P1.slug / "app.py").read_text(encoding="utf-8"))
    result = run("grade", str(class_dir), "--out", str(out), "-p", "1", "-p", "2")
    assert result.exit_code == 0, result.output
    row = gradebook_rows(out)["Jos\\xe9"]
    assert (row["p1_status"], row["p2_status"], row["error"]) == ("pass", "error", ""), row
    (report,) = (out / "submissions").glob("*.json")
    message = json.loads(report.read_text(encoding="utf-8"))["problems"][1]["checks"][0]["message"]
    assert message.startswith("There is no folder p2_role_based_access/ in ") and "Jos\\xe9" in message, message


def test_ctrl_c_stops_grade_within_2_s_and_saves_an_incomplete_gradebook(tmp_path):
    class_dir, pids, out = tmp_path / "class", _process_tag(), tmp_path / "out"
    _endless_class(class_dir, pids, 4)
    proc = _start(["grade", str(class_dir), "--out", str(out), "-p", "1", "-j", "2"])
    _wait_for(lambda: len(_looping(pids)) >= 2, 60, "two gradings starting")
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("grade did not stop within 2 s of Ctrl-C")
    stderr = proc.stderr.read()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "INCOMPLETE" in stderr, stderr
    book = gradebook_rows(out)
    assert sorted(book) == [f"loop{i}" for i in range(4)]
    assert all(row["error"].startswith("not graded: the run was interrupted") for row in book.values()), book
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["complete"] is False
    _wait_for(lambda: not _looping(pids), 2, "every grading process ending")
    merged = run("merge", str(out), "--out", str(tmp_path / "merged"))
    assert merged.exit_code == 2 and "interrupted run" in merged.stderr, merged.output


def test_a_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path):
    class_dir, pids, out = tmp_path / "class", _process_tag(), tmp_path / "out"
    _endless_class(class_dir, pids, 3)
    proc = _start(["grade", str(class_dir), "--out", str(out), "-p", "1", "-j", "2"])
    _wait_for(lambda: _looping(pids), 60, "a grading starting")
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("grade did not exit within 2 s of three Ctrl-C")
    stderr = proc.stderr.read()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_sigterm_stops_grade_like_ctrl_c(tmp_path):
    class_dir, pids, out = tmp_path / "class", _process_tag(), tmp_path / "out"
    _endless_class(class_dir, pids, 2)
    proc = _start(["grade", str(class_dir), "--out", str(out), "-p", "1"])
    _wait_for(lambda: _looping(pids), 60, "a grading starting")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("grade did not stop within 2 s of SIGTERM")
    assert proc.returncode == 130, proc.stderr.read()
    assert sorted(gradebook_rows(out)) == ["loop0", "loop1"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_check_within_2_s(tmp_path, signum):
    pids = _process_tag()
    _endless_class(tmp_path / "class", pids, 1)
    proc = _start(["check", "1", "--dir", str(tmp_path / "class" / "loop0")])
    _wait_for(lambda: _looping(pids), 60, "the grading starting")
    proc.send_signal(signum)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"check did not stop within 2 s of {signal.Signals(signum).name}")
    stderr = proc.stderr.read()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    _wait_for(lambda: not _looping(pids), 2, "the grading process ending")


# --- hidden checks ----------------------------------------------------------------------

HIDDEN_CHECK = '''HIDDEN = {"secret_rule_holds"}


def test_secret_rule_holds(host):
    """The app keeps the instructor's secret rule."""
    assert host.client().get("/openapi.json").json()["info"]["title"] != "the-secret-rule-value-4711"
'''


def private_graders(tmp_path: Path) -> Path:
    private = tmp_path / "my-graders"
    shutil.copytree(integrity.BUNDLED_GRADERS, private, ignore=shutil.ignore_patterns("__pycache__"))
    (private / P1.slug / "test_secret.py").write_text(HIDDEN_CHECK, encoding="utf-8")
    return private


def leaking_submission(tmp_path: Path) -> Path:
    """A submission that prints the private graders' source into its import error."""
    source = (
        "import os, pathlib\n"
        "folder = pathlib.Path(os.environ['WORKBOOK_GRADERS'])\n"
        "raise RuntimeError('\\n'.join(p.read_text() for p in sorted(folder.rglob('test_secret.py'))))\n"
    )
    return learner(tmp_path / "class", "mallory", source)


def test_reports_made_with_private_graders_never_contain_their_source(tmp_path):
    private, folder = private_graders(tmp_path), leaking_submission(tmp_path)
    for output_format in ("json", "junit", "exercism", "gradescope", "github"):
        result = run("check", "1", "--dir", str(folder), "--graders", str(private), "--format", output_format)
        assert result.exit_code == 1, result.output
        assert "the-secret-rule-value-4711" not in result.stdout, output_format
        assert "def test_secret_rule_holds" not in result.stdout, output_format
    exercism = json.loads(
        run("check", "1", "--dir", str(folder), "--graders", str(private), "--format", "exercism").stdout
    )
    assert {test["test_code"].split(":")[0] for test in exercism["tests"]} == {"# Run only this check"}
    graded = run("grade", str(tmp_path / "class"), "--out", str(tmp_path / "out"), "-p", "1", "--graders", str(private))
    assert graded.exit_code == 0, graded.output
    assert "the-secret-rule-value-4711" not in (tmp_path / "out" / "submissions" / "mallory.json").read_text("utf-8")


def test_gradescope_hides_checks_marked_hidden_and_withholds_their_output(tmp_path):
    private = private_graders(tmp_path)
    printing = learner(
        tmp_path / "class", "nina", SOLUTION.replace("app = FastAPI(", "print('printed-4242')\napp = FastAPI(", 1)
    )
    result = run("check", "1", "--dir", str(printing), "--graders", str(private), "--format", "gradescope")
    document = json.loads(result.stdout)
    secret = [
        test for test in document["tests"] if test["name"] == "Problem 1: The app keeps the instructor's secret rule."
    ]
    assert [(t["visibility"], t["status"]) for t in secret] == [("hidden", "passed")], secret
    assert "printed-4242" not in secret[0]["output"]
    visible = {test["visibility"] for test in document["tests"] if test not in secret}
    assert visible == {"visible"}, visible


# --- progress ---------------------------------------------------------------------------


class FakeTerminal:
    def __init__(self, tty: bool) -> None:
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_progress_shows_done_total_rate_and_time_left():
    terminal = FakeTerminal(tty=True)
    progress = ClassProgress(300, terminal)
    progress({"submission": "a"})
    assert re.fullmatch(r"\r\x1b\[2KGraded 1/300 · [\d.]+ per minute · about .+ left", terminal.text), terminal.text
    log = FakeTerminal(tty=False)
    quiet = ClassProgress(20, log)
    for _ in range(20):
        quiet({"submission": "a"})
    assert len(log.text.splitlines()) == 10 and log.text.splitlines()[-1].startswith("Graded 20/20 · ")


def test_the_closing_summary_names_the_slowest_and_those_that_hit_a_time_limit():
    documents = [
        ClassDocument(submission="ann", duration_s=3.0, timed_out=[]),
        ClassDocument(submission="bo\x1b[2J", duration_s=95.0, timed_out=[1]),
        ClassDocument(submission="cy", duration_s=12.0, timed_out=[]),
        ClassDocument(submission="di\nname", duration_s=1.0, timed_out=[2]),
    ]
    # One line, whatever the folder names hold.
    assert closing_summary(documents) == (
        "Slowest: bo\\x1b[2J (1 min 35 s), cy (12 s), ann (3 s). Hit a time limit: bo\\x1b[2J, di\\x0aname."
    )


# --- the example CI workflow --------------------------------------------------------------

SHARD_COMMAND = (
    'workbook grade submissions/ --out "out/shard-${{ matrix.shard }}" --shard "${{ matrix.shard }}/${{ env.SHARDS }}"'
)
MERGE_COMMAND = "workbook merge shards/shard-* --out grades --html grades/report.html"


def test_the_example_workflow_shards_and_merges_with_the_commands_it_names(tmp_path, monkeypatch):
    workflow = WORKFLOW.read_text(encoding="utf-8")
    # The workbook reads its manifest and graders from its own folder: installed editable.
    needles = (SHARD_COMMAND, MERGE_COMMAND, "apt-get install -y bubblewrap", "-e ./.workbook", "SHARDS: 4")
    for needle in (*needles, "shard: [1, 2, 3, 4]", "apparmor_restrict_unprivileged_userns=0"):
        assert needle in workflow, f"examples/grade-class.yml no longer says {needle!r}"
    assert workflow.count("actions/upload-artifact@") == 2 and "actions/download-artifact@" in workflow
    monkeypatch.chdir(tmp_path)
    for name in ("ann", "bo", "cy", "di", "eve"):
        (tmp_path / "submissions" / name).mkdir(parents=True)
    learner(tmp_path / "submissions", "fay", SOLUTION)
    for shard in (1, 2, 3, 4):
        out = f"shards/shard-{shard}"  # download-artifact puts each artifact in a folder of its name
        result = run("grade", "submissions/", "--out", out, "--shard", f"{shard}/4", "-j", "2", "-p", "1")
        assert result.exit_code == 0, result.output
    merged = run(
        "merge",
        *sorted(str(p) for p in Path("shards").glob("shard-*")),
        "--out",
        "grades",
        "--html",
        "grades/report.html",
    )
    assert merged.exit_code == 0, merged.output
    book = gradebook_rows(Path("grades"))
    assert sorted(book) == ["ann", "bo", "cy", "di", "eve", "fay"]
    assert book["fay"]["p1_status"] == "pass"
    assert Path("grades/report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_merge_refuses_a_missing_shard_and_an_out_that_is_one_of_its_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("ann", "bo", "cy"):
        (tmp_path / "submissions" / name).mkdir(parents=True)
    for shard in (1, 2):
        result = run("grade", "submissions/", "--out", f"shard-{shard}", "--shard", f"{shard}/2", "-p", "1")
        assert result.exit_code == 0, result.output
    before = sorted(str(p) for p in Path("shard-1").rglob("*"))

    partial = run("merge", "shard-1", "--out", "grades")
    assert partial.exit_code == 2, partial.output
    assert "shard 2/2 is missing" in partial.stderr, partial.stderr
    assert not Path("grades").exists()

    onto_input = run("merge", "shard-1", "shard-2", "--out", "shard-1")
    assert onto_input.exit_code == 2, onto_input.output
    assert "is one of the folders to merge" in onto_input.stderr, onto_input.stderr
    assert sorted(str(p) for p in Path("shard-1").rglob("*")) == before


# --- an instructor's try-out: refusals that keep the gradebook right ---------------------


def empty_submissions(root: Path, *names: str) -> Path:
    """Submissions of nothing: graded without a child process, so a class of them is fast."""
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_merge_refuses_shards_graded_on_different_problems(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty_submissions(tmp_path / "subs", "ann", "bo", "cy")
    assert run("grade", "subs", "--out", "s1", "--shard", "1/2", "-p", "1").exit_code == 0
    assert run("grade", "subs", "--out", "s2", "--shard", "2/2", "-p", "1", "-p", "2").exit_code == 0
    result = run("merge", "s1", "s2", "--out", "sm")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "Error: the shards were graded on different problems: s1 on problem 1, s2 on problems 1, 2; "
        "grade them again with the same -p options\n"
    )
    assert not Path("sm").exists()


def test_merge_of_shards_of_different_counts_says_the_counts_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # 1/2 takes ann, cy, eve and 2/3 takes bo, eve: eve is in both.
    empty_submissions(tmp_path / "subs", "ann", "bo", "cy", "dan", "eve")
    assert run("grade", "subs", "--out", "half", "--shard", "1/2", "-p", "1").exit_code == 0
    assert run("grade", "subs", "--out", "third", "--shard", "2/3", "-p", "1").exit_code == 0
    result = run("merge", "half", "third", "--out", "sm")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "Error: the shard counts differ (1/2, 2/3): merge the shards of one run, all graded with the same --shard I/N\n"
    )


def test_merge_says_merged_and_times_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty_submissions(tmp_path / "subs", "ann", "bo", "cy")
    for shard in (1, 2):
        assert run("grade", "subs", "--out", f"s{shard}", "--shard", f"{shard}/2", "-p", "1").exit_code == 0
    result = run("merge", "s1", "s2", "--out", "sm")
    assert result.exit_code == 0, result.output
    sandbox = json.loads(Path("sm/submissions/ann.json").read_text(encoding="utf-8"))["graders"]["sandbox"]
    assert result.stdout == f"Merged 3 submissions: sm/gradebook.csv ({sandbox})\n"
    assert result.stderr == ""


def test_grading_again_into_an_out_holding_a_run_is_refused_unless_resumed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty_submissions(tmp_path / "subs", "ann", "bo")
    Path("out").mkdir()  # an empty OUT is fine
    first = run("grade", "subs", "--out", "out", "-p", "1")
    assert first.exit_code == 0, first.output
    assert "Slowest:" in first.stderr, first.stderr
    before = {path: path.read_bytes() for path in Path("out").rglob("*") if path.is_file()}

    again = run("grade", "subs", "--out", "out", "-p", "1")
    assert again.exit_code == 2, again.output
    assert again.stderr == (
        "Error: out already holds a graded run, which grading again would replace: add --resume to continue it "
        "(reports whose files and graders did not change are kept), or choose another --out.\n"
    )
    assert {path: path.read_bytes() for path in Path("out").rglob("*") if path.is_file()} == before

    resumed = run("grade", "subs", "--out", "out", "-p", "1", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "Kept 2 reports of the earlier run" in resumed.stderr, resumed.stderr
    assert "Slowest:" not in resumed.stderr, resumed.stderr  # it graded nothing: no stale timings


def test_an_out_holding_a_gradebook_without_a_run_file_is_not_overwritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty_submissions(tmp_path / "subs", "ann")
    Path("marks").mkdir()
    Path("marks/gradebook.csv").write_text("my own marks\n", encoding="utf-8")
    result = run("grade", "subs", "--out", "marks", "-p", "1")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "Error: marks already holds a gradebook.csv that grading would replace; choose another --out "
        "(or move the file away).\n"
    )
    assert Path("marks/gradebook.csv").read_text(encoding="utf-8") == "my own marks\n"


@pytest.mark.parametrize(
    ("folders", "message"),
    [
        ((), "Error: no submission folders in subs: SUBMISSIONS must hold one folder per submission, each laid out"),
        (("__MACOSX", ".git"), "Error: no submission folders in subs"),
        ((P1.slug, "notes"), f"Error: subs looks like one submission (it holds problem folders such as {P1.slug})"),
    ],
)
def test_a_class_folder_without_submissions_is_refused_in_one_line(tmp_path, monkeypatch, folders, message):
    monkeypatch.chdir(tmp_path)
    Path("subs").mkdir()
    empty_submissions(tmp_path / "subs", *folders)
    result = run("grade", "subs", "--out", "out", "-p", "1")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert not Path("out").exists()


def test_hidden_folders_and_macosx_are_not_graded_as_submissions(tmp_path):
    class_dir = empty_submissions(tmp_path / "class", "ann", "__MACOSX", ".git", ".idea")
    result = run("grade", str(class_dir), "--out", str(tmp_path / "out"), "-p", "1")
    assert result.exit_code == 0, result.output
    assert sorted(gradebook_rows(tmp_path / "out")) == ["ann"]

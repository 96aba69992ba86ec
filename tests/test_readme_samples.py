"""The README's sample outputs match real runs (issue 14, item 9).

They are compared by shape and counts, not message bodies (those are reworded often): the
header, the check lines shown (mark and title, in the real order), the re-run command of
each failing check shown, the summary and progress lines of `workbook check 1` on the
untouched stub; and the JSON sample's keys, check count, ids and titles. On a mismatch the
failure shows the real output, ready to paste into the README.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner
from support import MANIFEST, ROOT, learner_workspace

from workbook import cli
from workbook.engine import discover_checks
from workbook.report import Style

P1 = MANIFEST.by_number(1)
README = (ROOT / "README.md").read_text(encoding="utf-8")
CHECK_LINE = re.compile(r"^  ([✔✘!]) (.+)$")
RERUN = re.compile(r"re-run only (this check|the first):")


@dataclass
class TextShape:
    header: str = ""
    checks: list[tuple[str, str]] = field(default_factory=list)  # (mark, title)
    reruns: dict[str, str] = field(default_factory=dict)  # title -> its re-run line
    summary: tuple[str, ...] = ()  # (passed, total) of the "N/M checks passed" line
    progress: tuple[str, ...] = ()  # (solved, problems) of the progress line
    elided: bool = False


def text_shape(text: str) -> TextShape:
    lines = text.strip("\n").splitlines()
    shape = TextShape(header=lines[0] if lines else "")
    for line in lines[1:]:
        matched = CHECK_LINE.match(line)
        if matched:
            shape.checks.append((matched[1], matched[2]))
        elif RERUN.search(line) and shape.checks:
            shape.reruns[shape.checks[-1][1]] = line.strip()
        elif summary := re.match(r"  .*?(\d+)/(\d+) checks passed", line):
            shape.summary = summary.groups()  # counts only: the line may gain a seed or a time
        elif progress := re.match(r"Workbook progress .*?(\d+) of (\d+) problems solved", line):
            shape.progress = progress.groups()
        elif line.strip() == "...":
            shape.elided = True
    return shape


def readme_block(language: str, first_line: str = "") -> str:
    blocks = re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if block.startswith(first_line)]
    assert found, f"README.md has no ```{language} block starting with {first_line!r}"
    return found[0]


@pytest.fixture
def learner_run(tmp_path, monkeypatch):
    """`workbook check ...` as a learner runs it from the workbook folder on a terminal
    (symbols, no colours), on a fresh copy of the stubs and fresh progress."""
    learner_workspace(tmp_path, monkeypatch)
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(Style, "detect", classmethod(lambda cls, stream=None: cls(color=False, unicode=True)))

    def run(*args: str) -> str:
        return CliRunner().invoke(cli.main, list(args)).output

    return run


def is_in_order(part: list, whole: list) -> bool:
    remaining = iter(whole)
    return all(item in remaining for item in part)


def test_the_check_sample_has_the_real_shape_and_counts(learner_run):
    real_output = learner_run("check", "1")
    sample_block = readme_block("text", "$ workbook check 1\n")
    sample, real = text_shape(sample_block.split("\n", 1)[1]), text_shape(real_output)
    paste = f"the README's `workbook check 1` sample no longer matches a real run; the real output:\n{real_output}"

    assert real.summary and real.progress and real.checks, f"the real output's shape is not recognised\n{paste}"
    assert sample.header == real.header, paste
    assert sample.summary == real.summary, paste  # e.g. "2/19 checks passed": the check count
    assert sample.progress == real.progress, paste
    assert sample.checks, paste
    assert is_in_order(sample.checks, real.checks), paste
    assert sample.elided or sample.checks == real.checks, paste
    ids = {check.title: check.id for check in discover_checks(P1)}
    for mark, title in sample.checks:
        if mark != "✔":  # a check of its own names its id; a shared cause ("N checks failed: ...") its first
            assert f"-k {ids.get(title, '')}" in sample.reruns.get(title, ""), paste


def key_sets(document: dict) -> dict[str, set[str]]:
    problem = document["problems"][0]
    return {"report": set(document), "problem": set(problem), "check": set(problem["checks"][0])}


def test_the_json_sample_has_the_real_keys_and_counts(learner_run):
    real = json.loads(learner_run("check", "1", "--format", "json"))
    sample = json.loads(readme_block("json"))
    ci_section = README[README.index("## For CI") :]
    paste = f"the README's JSON sample no longer matches a real run; the real report:\n{json.dumps(real)[:3000]}"

    real_keys, sample_keys = key_sets(real), key_sets(sample)
    for level, keys in real_keys.items():
        assert sample_keys[level] <= keys, f"{level} keys the real report lacks: {sample_keys[level] - keys}\n{paste}"
        unmentioned = {key for key in keys - sample_keys[level] if f"`{key}`" not in ci_section}
        assert not unmentioned, f"{level} keys neither in the sample nor named: {unmentioned}\n{paste}"
    (problem,) = sample["problems"]
    (real_problem,) = real["problems"]
    for key in ("number", "slug", "title", "total"):
        assert problem[key] == real_problem[key], f"{key}: {problem[key]!r}, really {real_problem[key]!r}\n{paste}"
    titles = {check["id"]: check["title"] for check in real_problem["checks"]}
    for check in problem["checks"]:
        assert check["id"] in titles, paste
        assert titles[check["id"]].startswith(check["title"].removesuffix("...").rstrip()), paste


def test_the_library_example_runs_as_written_in_a_workspace(tmp_path, monkeypatch):
    learner_workspace(tmp_path / "workspace", monkeypatch)
    state = tmp_path / "state"
    env = {key: value for key, value in os.environ.items() if not key.startswith("WORKBOOK_")}
    env["WORKBOOK_STATE_DIR"] = str(state)
    example = readme_block("python", "from pathlib import Path")
    ran = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path / "workspace",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    ids = [check.id for check in discover_checks(P1) if "settings" in check.id]
    exit_code, checks = ran.stdout.split(" ", 1)
    assert exit_code in ("0", "1") and [found for found in ids if f"('{found}', " in checks] == ids, ran.stdout
    assert (state / "state.json").is_file()  # recorded, as `workbook check` records

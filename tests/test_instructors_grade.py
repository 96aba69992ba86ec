"""Grading a class end to end: the gradebook rows, hostile submissions kept to their own
row, sharding and merging, the class report, and the integrity of the graders."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import EXERCISES, MANIFEST, SOLUTIONS, build_case, corpus

from workbook import cli, integrity
from workbook.engine import discover_checks, grade
from workbook.gradebook import Shard
from workbook.sandbox import isolation
from workbook.target import TargetError, copy_submission

P1 = MANIFEST.by_number(1)
TOTAL = len(discover_checks(P1))
SOLUTION = (SOLUTIONS / P1.slug / "app.py").read_text(encoding="utf-8")
STUB = (EXERCISES / P1.slug / "app.py").read_text(encoding="utf-8")


@pytest.fixture
def current_checksums(tmp_path, monkeypatch):
    """A checksum list matching the graders as they are now, so these tests do not depend
    on the shipped list being current (a test of its own checks that)."""
    path = tmp_path / "CHECKSUMS.sha256"
    monkeypatch.setattr(integrity, "CHECKSUMS", path)
    integrity.write_checksums(destination=path)
    return path


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def submission(root: Path, name: str, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / name


def small_class(root: Path) -> Path:
    submission(root, "alice", {f"{P1.slug}/app.py": SOLUTION})
    submission(root, "bob", {f"{P1.slug}/app.py": STUB})
    (root / "frank").mkdir()  # submitted nothing
    return root


def hostile_class(root: Path, marker: Path) -> Path:
    small_class(root)
    build_case(P1, corpus(P1)["wrong"][0], root / "carol")
    submission(root, "dave", {f"{P1.slug}/app.py": SOLUTION + "\nwhile True:\n    pass\n"})
    # Every file a test runner or Python itself might pick up, each leaving a trace if run.
    evil = f"open({str(marker)!r}, 'a').write(__file__ + '\\n')\n"
    submission(
        root,
        "eve",
        {
            f"{P1.slug}/app.py": STUB,
            f"{P1.slug}/conftest.py": evil + "def pytest_runtest_call(item):\n    pass\n",
            f"{P1.slug}/pytest.ini": "[pytest]\naddopts = -p no:python\n",
            f"{P1.slug}/sitecustomize.py": evil,
            f"{P1.slug}/evil.pth": "import os; " + evil,
            f"{P1.slug}/graders/{P1.slug}/test_dependency_chain.py": evil + "def test_everything():\n    pass\n",
            "conftest.py": evil,
        },
    )
    submission(root, "gina", {f"{P1.slug}/app.py": "import os\nos._exit(0)\n"})
    return root


def rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "gradebook.csv", encoding="utf-8", newline="") as handle:
        return {row["submission"]: row for row in csv.DictReader(handle)}


def test_a_class_is_graded_with_every_submission_in_its_own_row(tmp_path, current_checksums):
    marker = tmp_path / "loaded.txt"
    class_dir = hostile_class(tmp_path / "class", marker)
    out, html = tmp_path / "out", tmp_path / "report.html"
    result = run("grade", str(class_dir), "--out", str(out), "-p", "1", "-j", "2", "--html", str(html))
    assert result.exit_code == 0, result.output
    book = rows(out)
    assert sorted(book) == ["alice", "bob", "carol", "dave", "eve", "frank", "gina"]
    assert {name: book[name]["p1_total"] for name in book} == dict.fromkeys(book, str(TOTAL))
    passed = {name: int(book[name]["p1_passed"]) for name in book}
    assert book["alice"]["p1_status"] == "pass" and book["alice"]["percent"] == "100.00"
    assert 0 < passed["carol"] < TOTAL and book["carol"]["p1_status"] == "fail"
    assert passed["bob"] < TOTAL and book["bob"]["p1_status"] == "fail"
    assert passed["eve"] == passed["bob"]  # the injected files changed nothing...
    assert not marker.exists(), marker.read_text()  # ...because none of them was loaded
    for name in ("dave", "frank", "gina"):
        assert (passed[name], book[name]["p1_status"]) == (0, "error"), name
    assert all(book[name]["error"] == "" for name in book)
    assert book["alice"]["allow_modified_graders"] == "false"
    assert {row["sandbox"] for row in book.values()} == {isolation().label}
    assert isolation().label in html.read_text(encoding="utf-8")

    report = json.loads((out / "submissions" / "dave.json").read_text(encoding="utf-8"))
    assert report["submission"] == "dave" and report["graders"]["source"] == "bundled"
    assert {c["status"] for c in report["problems"][0]["checks"]} == {"error"}
    assert "module level" in report["problems"][0]["checks"][0]["message"]
    frank = json.loads((out / "submissions" / "frank.json").read_text(encoding="utf-8"))
    assert str(class_dir / "frank") in frank["problems"][0]["checks"][0]["message"]  # not the copy's path

    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    # the check the class struggles with most comes first
    first_row = page.split("<tr", 2)[2]
    assert "0 % (0/7)" in first_row or "14 % (1/7)" in first_row


def test_shards_merged_equal_an_unsharded_run(tmp_path, current_checksums):
    class_dir = small_class(tmp_path / "class")
    whole, merged = tmp_path / "whole", tmp_path / "merged"
    assert run("grade", str(class_dir), "--out", str(whole), "-p", "1").exit_code == 0
    shards = []
    for index in (1, 2):
        shards.append(tmp_path / f"shard{index}")
        result = run("grade", str(class_dir), "--out", str(shards[-1]), "-p", "1", "--shard", f"{index}/2")
        assert result.exit_code == 0, result.output
    assert sorted(rows(shards[0])) == ["alice", "frank"] and sorted(rows(shards[1])) == ["bob"]
    result = run("merge", *map(str, shards), "--out", str(merged))
    assert result.exit_code == 0, result.output
    assert (merged / "gradebook.csv").read_text() == (whole / "gradebook.csv").read_text()
    assert sorted(p.name for p in (merged / "submissions").iterdir()) == ["alice.json", "bob.json", "frank.json"]
    again = run("merge", str(shards[0]), str(shards[0]), "--out", str(tmp_path / "twice"))
    assert again.exit_code == 2 and "more than one shard" in again.output


def test_shards_are_deterministic_and_cover_every_submission():
    names = [f"s{i:02}" for i in range(11)]
    shares = [Shard.parse(f"{i}/3").take(list(reversed(names))) for i in (1, 2, 3)]
    assert sorted(sum(shares, [])) == names
    assert shares == [Shard.parse(f"{i}/3").take(names) for i in (1, 2, 3)]
    for bad in ("0/3", "4/3", "x", "1/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_submission_copy_keeps_every_py_file_and_leaves_out_what_changes_how_grading_runs(tmp_path):
    left_out = ("conftest.py", "sitecustomize.py", "usercustomize.py", "setup.py", "pytest.ini", "tox.ini", "x.pth")
    files = {f"{P1.slug}/app.py": "x = 1\n", f"{P1.slug}/schemas.py": "y = 2\n", f"{P1.slug}/lib/util.py": ""}
    files |= {f"{P1.slug}/{name}": "" for name in left_out} | {
        f"{P1.slug}/graders/test_x.py": "",
        f"{P1.slug}/notes.txt": "",
    }
    source = submission(tmp_path / "class", "zoe", files)
    (source / P1.slug / "helpers.py").symlink_to(source / P1.slug / "app.py")
    # A hard link: in a shared class folder, it may be a classmate's file.
    os.link(source / P1.slug / "notes.txt", source / P1.slug / "copied.py")
    (source / P1.slug / "big.py").write_bytes(b"#" * 2_000_001)
    os.mkfifo(source / P1.slug / "pipe.py")
    linked = submission(tmp_path / "class", "yan", {})
    (linked / P1.slug).mkdir(parents=True)
    (linked / P1.slug / "app.py").symlink_to(SOLUTIONS / P1.slug / "app.py")
    copy = copy_submission(source, MANIFEST.problems, tmp_path / "copy")
    kept = sorted(p.relative_to(copy.root).as_posix() for p in copy.root.rglob("*") if p.is_file())
    assert kept == [f"{P1.slug}/app.py", f"{P1.slug}/lib/util.py", f"{P1.slug}/schemas.py"]
    assert copy.shown == source.resolve()
    assert not list(copy_submission(linked, [P1], tmp_path / "copy2").root.rglob("*.py"))


def test_a_submission_folder_that_is_a_link_is_refused_with_a_clear_message(tmp_path):
    real = submission(tmp_path / "elsewhere", "real", {f"{P1.slug}/app.py": SOLUTION})
    link = tmp_path / "class" / "mallory"
    link.parent.mkdir()
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(TargetError, match="is a symbolic link"):
        copy_submission(link, [P1], tmp_path / "copy")
    result = run("check", "1", "--dir", str(link), "--format", "json")
    assert result.exit_code == 2, result.output
    assert "is a symbolic link" in result.output


# --- integrity ---------------------------------------------------------------------------


def test_the_shipped_checksum_list_matches_the_bundled_graders():
    found = integrity.differences()
    assert not found, (
        "graders/CHECKSUMS.sha256 is stale:\n"
        + "\n".join(found)
        + f"\nIf the graders changed on purpose, run `{integrity.FIX_COMMAND}` and commit the list."
    )


def test_modified_graders_are_refused_unless_allowed_and_then_recorded(tmp_path, monkeypatch):
    stale = tmp_path / "CHECKSUMS.sha256"
    lines = integrity.checksum_lines(integrity.BUNDLED_GRADERS)
    stale.write_text("\n".join(["0" * 64 + lines[0][64:], *lines[1:]]) + "\n", encoding="utf-8")
    monkeypatch.setattr(integrity, "CHECKSUMS", stale)
    class_dir = tmp_path / "class"
    (class_dir / "frank").mkdir(parents=True)  # no problem folder: graded without a child process
    refused = run("grade", str(class_dir), "--out", str(tmp_path / "out"), "-p", "1")
    assert refused.exit_code == 1
    assert "differ from their checksum list" in refused.output and "changed" in refused.output
    assert not (tmp_path / "out" / "gradebook.csv").exists()
    allowed = run("grade", str(class_dir), "--out", str(tmp_path / "out"), "-p", "1", "--allow-modified-graders")
    assert allowed.exit_code == 0, allowed.output
    assert rows(tmp_path / "out")["frank"]["allow_modified_graders"] == "true"
    report = json.loads((tmp_path / "out" / "submissions" / "frank.json").read_text(encoding="utf-8"))
    assert report["graders"]["verified"] is False and report["graders"]["allow_modified_graders"] is True
    assert report["graders"]["modified"] == [f"{lines[0][66:]}: changed"]


def test_an_instructors_private_graders_add_hidden_weighted_checks(tmp_path):
    private = tmp_path / "my-graders"
    shutil.copytree(integrity.BUNDLED_GRADERS, private, ignore=shutil.ignore_patterns("__pycache__"))
    extra = private / P1.slug / "test_hidden.py"
    extra.write_text(
        'WEIGHTS = {"app_has_routes": 3}\n\n\ndef test_app_has_routes(host):\n'
        '    """The app declares its routes."""\n    assert host.client().get("/openapi.json").json()["paths"]\n',
        encoding="utf-8",
    )
    result = run("check", "1", "--solutions", "--graders", str(private), "--format", "gradescope")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["score"], document["max_score"], len(document["tests"])) == (TOTAL + 3, TOTAL + 3, TOTAL + 1)
    assert (
        document["extra_data"]["graders"] | {"source": "custom", "path": str(private.resolve())}
        == (document["extra_data"]["graders"])
    )
    tests = document["tests"]
    hidden = [t for t in tests if t["visibility"] != "visible"]
    assert [(t["name"], t["visibility"], t["max_score"]) for t in hidden] == [
        ("Problem 1: The app declares its routes.", "after_published", 3)
    ]
    assert grade(P1, SOLUTIONS, graders=private, only=["app_has_routes"]).problem.weight("app_has_routes") == 3


def test_a_sandbox_switched_off_is_named_as_switched_off_not_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBOOK_NO_SANDBOX", raising=False)
    monkeypatch.setenv("WORKBOOK_SANDBOX", "off")
    class_dir = tmp_path / "class"
    (class_dir / "frank").mkdir(parents=True)
    result = run("grade", str(class_dir), "--out", str(tmp_path / "out"), "-p", "1")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "Error: The sandbox is switched off by WORKBOOK_SANDBOX=off in your environment. Without it, the code you "
        "grade can read and change anything your user can. Unset WORKBOOK_SANDBOX (bubblewrap is used when it "
        "works), or pass --no-sandbox (every report will say so).\n"
    )


def test_check_dir_with_modified_graders_warns_as_grade_does(tmp_path, monkeypatch):
    stale = tmp_path / "CHECKSUMS.sha256"
    lines = integrity.checksum_lines(integrity.BUNDLED_GRADERS)
    stale.write_text("\n".join(["0" * 64 + lines[0][64:], *lines[1:]]) + "\n", encoding="utf-8")
    monkeypatch.setattr(integrity, "CHECKSUMS", stale)
    folder = submission(tmp_path / "class", "alice", {f"{P1.slug}/app.py": SOLUTION})
    result = run("check", "1", "--dir", str(folder), "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "Warning: grading with MODIFIED bundled graders (1 file differs).", (
        result.stderr
    )
    assert json.loads(result.stdout)["graders"]["verified"] is False

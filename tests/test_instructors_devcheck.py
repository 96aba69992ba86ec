"""`workbook dev check`: author validation catches a broken manifest, an already-solved
stub and duplicate check ids, and passes the workbook's own problem 1."""

from __future__ import annotations

import shutil

from click.testing import CliRunner
from support import EXERCISES, MANIFEST, ROOT, SOLUTIONS

from workbook import cli

P1 = MANIFEST.by_number(1)


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def broken_manifest(tmp_path):
    """workbook.toml with problem 1 naming a missing file, an empty hint, a weight for a
    check that does not exist, and problem 2 reusing problem 1's number."""
    text = (ROOT / "workbook.toml").read_text(encoding="utf-8")
    text = text.replace('files = ["app.py"]', 'files = ["app.py", "models.py"]\nweights = { no_such_check = 2 }', 1)
    text = text.replace("hints = [\n", 'hints = [\n    "   ",\n', 1)
    text = text.replace("number = 2\n", "number = 1\n", 1)
    path = tmp_path / "workbook.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_broken_manifest_is_listed_with_every_fault(tmp_path):
    result = run("dev", "check", "--manifest", str(broken_manifest(tmp_path)), "--static", "-p", "1")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "problem number 1 is used 2 times" in out
    assert "names models.py, but the stub" in out and "names models.py, but the solution" in out
    assert "hint 1 is empty" in out
    assert "'no_such_check', which is no check of this problem" in out


def test_duplicate_check_ids_in_the_graders_are_caught(tmp_path):
    graders = tmp_path / "graders"
    shutil.copytree(ROOT / "graders" / P1.slug, graders / P1.slug, ignore=shutil.ignore_patterns("__pycache__"))
    duplicate = 'def test_list_starts_empty():\n    """Again."""\n'
    (graders / P1.slug / "test_more.py").write_text(duplicate, encoding="utf-8")
    result = run("dev", "check", "--graders", str(graders), "--static", "-p", "1")
    assert result.exit_code == 1
    assert "check id 'list_starts_empty' is defined 2 times" in result.output


def test_an_already_solved_stub_without_todo_is_caught(tmp_path):
    exercises = tmp_path / "exercises"
    shutil.copytree(SOLUTIONS / P1.slug, exercises / P1.slug, ignore=shutil.ignore_patterns("__pycache__"))
    text = (exercises / P1.slug / "app.py").read_text(encoding="utf-8")
    (exercises / P1.slug / "app.py").write_text(text.replace("# TODO", "#"), encoding="utf-8")
    result = run("dev", "check", "--exercises", str(exercises), "-p", "1")
    assert result.exit_code == 1, result.output
    assert "passes every check: is it already solved?" in result.output
    assert "has no `# TODO` comment" in result.output
    assert "the solution fails" not in result.output


def test_the_workbooks_problem_1_passes_dev_check():
    assert (EXERCISES / P1.slug).is_dir()
    result = run("dev", "check", "-p", "1")
    assert result.exit_code == 0, result.output
    assert "all good" in result.output

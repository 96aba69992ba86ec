"""`workbook dev new`, `workbook dev update` and the generated files' staleness in `dev check`.

Every test that writes works on a copy of the workbook (package, manifest, exercises,
solutions, graders, corpus) and runs the CLI in a child process started in that copy, so the
copy's own workbook package, with its ROOT, is the one that runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support import MANIFEST, ROOT

from workbook import generated, integrity, scaffold
from workbook.manifest import GRADERS_ENV, MANIFEST_ENV, load_manifest

COPIED = ["workbook", "exercises", "solutions", "graders", "workbook.toml", "tests/corpus", "pyproject.toml"]
# `-c` puts the working directory first on sys.path: the copy's package wins over the install.
MAIN = "import sys; from workbook.cli import main; sys.exit(main())"
NEXT = max(problem.number for problem in MANIFEST.problems) + 1
SLUG = f"p{NEXT}_rate_limiting"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the workbook's content and package, as an author's checkout."""
    root = tmp_path / "workbook"
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache")
    for relative in COPIED:
        source, destination = ROOT / relative, root / relative
        if source.is_dir():
            shutil.copytree(source, destination, ignore=ignore)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return root


def workbook_in(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in (MANIFEST_ENV, GRADERS_ENV, "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-c", MAIN, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_dev_new_scaffolds_a_problem_that_passes_dev_check_once_its_placeholders_are_replaced(copy):
    manifest_before = (copy / "workbook.toml").read_text(encoding="utf-8")
    grader_files = len(integrity.grader_files(ROOT / "graders")) + 2  # the grader and its probe menu

    created = workbook_in(copy, "dev", "new", SLUG)

    assert created.returncode == 0, created.stderr
    assert created.stdout == (
        f"Problem {NEXT} ({SLUG}):\n"
        f"  Wrote exercises/{SLUG}/README.md.\n"
        f"  Wrote exercises/{SLUG}/app.py.\n"
        f"  Wrote solutions/{SLUG}/app.py.\n"
        f"  Wrote graders/{SLUG}/test_rate_limiting.py.\n"
        f"  Wrote graders/{SLUG}/probes.py.\n"
        f"  Wrote tests/corpus/{SLUG}.toml.\n"
        "  Wrote workbook.toml.\n"
        f"  Wrote workbook/starters.json ({NEXT} problems).\n"
        f"  Wrote graders/CHECKSUMS.sha256 ({grader_files} files).\n"
        f"Next: replace every TODO(author) in these files, run `workbook dev update`, "
        f"then `workbook dev check -p {NEXT}`.\n"
    )
    manifest_after = (copy / "workbook.toml").read_text(encoding="utf-8")
    assert manifest_after.startswith(manifest_before.rstrip("\n") + "\n\n[[problems]]\n"), "comments must stay"
    problem = load_manifest(copy / "workbook.toml").by_number(NEXT)
    assert (problem.slug, problem.title, problem.files, len(problem.hints)) == (SLUG, "Rate limiting", ("app.py",), 1)
    corpus = tomllib.loads((copy / "tests" / "corpus" / f"{SLUG}.toml").read_text(encoding="utf-8"))
    assert [case["rejected_by"] for case in corpus["wrong"]] == [["ping_answers_pong"]]

    scaffolded = [f"{folder}/{SLUG}" for folder in ("exercises", "solutions", "graders")]
    for lint in (["check"], ["format", "--check"]):
        linted = subprocess.run(
            [sys.executable, "-m", "ruff", *lint, "--no-cache", *scaffolded], cwd=copy, capture_output=True, text=True
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr

    # Until the author replaces the placeholders, dev check names every file holding one:
    # learners would otherwise read "TODO(author): ..." in `workbook hint` and the statement.
    where = f"- problem {NEXT} ({SLUG}): TODO(author) left in"
    placeholders = workbook_in(copy, "dev", "check", "--static")
    assert placeholders.returncode == 1, placeholders.stdout + placeholders.stderr
    assert placeholders.stderr == "dev check: 7 things to fix\n"
    assert placeholders.stdout.splitlines() == [
        f"{where} workbook.toml (the lesson, hint 1); replace it",
        f"{where} exercises/{SLUG}/README.md (2x); replace it",
        f"{where} exercises/{SLUG}/app.py (1x); replace it",
        f"{where} solutions/{SLUG}/app.py (1x); replace it",
        f"{where} graders/{SLUG}/probes.py (1x); replace it",
        f"{where} graders/{SLUG}/test_rate_limiting.py (2x); replace it",
        f"{where} tests/corpus/{SLUG}.toml (1x); replace it",
    ]

    # Once they are replaced, the stub fails and the solution passes (dev check grades
    # both), and nothing is stale.
    replace_author_todos(copy)
    checked = workbook_in(copy, "dev", "check", "-p", str(NEXT))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == "dev check: all good\n"
    static = workbook_in(copy, "dev", "check", "--static")
    assert static.returncode == 0, static.stdout + static.stderr
    assert static.stdout == "dev check: all good (static checks only)\n"

    # ...and dev check really graded them: a solution that is still the stub is caught.
    shutil.copy2(copy / "exercises" / SLUG / "app.py", copy / "solutions" / SLUG / "app.py")
    unsolved = workbook_in(copy, "dev", "check", "-p", str(NEXT))
    assert unsolved.returncode == 1, unsolved.stdout + unsolved.stderr
    assert f"problem {NEXT} ({SLUG}): the solution fails check 'ping_answers_pong'" in unsolved.stdout


def replace_author_todos(root: Path) -> None:
    """What an author does after `dev new`: write real text where each placeholder was,
    then regenerate the starter copy and the grader checksums."""
    places = [root / "workbook.toml", root / "tests" / "corpus" / f"{SLUG}.toml"]
    places += [path for folder in ("exercises", "solutions", "graders") for path in (root / folder / SLUG).rglob("*")]
    for path in places:
        if path.is_file():
            path.write_text(path.read_text(encoding="utf-8").replace(scaffold.AUTHOR_TODO, "Written"), encoding="utf-8")
    updated = workbook_in(root, "dev", "update")
    assert updated.returncode == 0, updated.stdout + updated.stderr


def test_the_child_process_runs_the_copys_own_package(copy):
    found = subprocess.run(
        [sys.executable, "-c", "import workbook.manifest as m; print(m.ROOT)"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.stdout == f"{copy}\n", found.stderr


@pytest.mark.parametrize(
    ("slug", "error"),
    [
        (
            MANIFEST.problems[0].slug,
            f"Error: problem {MANIFEST.problems[0].slug!r} already exists (workbook.toml, "
            f"exercises/{MANIFEST.problems[0].slug}, solutions/{MANIFEST.problems[0].slug}, "
            f"graders/{MANIFEST.problems[0].slug}, tests/corpus/{MANIFEST.problems[0].slug}.toml); "
            "choose another slug\n",
        ),
        (
            "P7-Rate-Limiting",
            "Error: 'P7-Rate-Limiting' is not a problem slug: use lowercase letters, digits and underscores, "
            "starting with a letter, at most 40 characters (for example p7_rate_limiting)\n",
        ),
        (
            f"p{NEXT + 1}_rate_limiting",
            f"Error: 'p{NEXT + 1}_rate_limiting' names another number than the new problem's, {NEXT}: use '{SLUG}'\n",
        ),
    ],
    ids=["taken", "malformed", "other_number"],
)
def test_dev_new_refuses_a_taken_or_malformed_slug_in_one_line_and_writes_nothing(copy, slug, error):
    manifest_before = (copy / "workbook.toml").read_text(encoding="utf-8")
    refused = workbook_in(copy, "dev", "new", slug)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert (refused.stdout, refused.stderr) == ("", error)
    assert (copy / "workbook.toml").read_text(encoding="utf-8") == manifest_before
    assert generated.stale(copy) == []


def test_a_title_defaults_to_the_slugs_words_and_must_fit_on_one_plain_line(copy):
    assert scaffold.default_title("p12_rate_limiting") == "Rate limiting"
    assert scaffold.default_title("websocket_auth") == "Websocket auth"
    with pytest.raises(scaffold.ScaffoldError) as refused:
        scaffold.new_problem(SLUG, 'Say "hi"', root=copy)
    assert str(refused.value) == "'Say \"hi\"' is not a usable title: one line, without quotes or backslashes"
    assert not (copy / "exercises" / SLUG).exists()


def test_dev_new_refuses_to_regenerate_files_that_were_already_stale(copy):
    slug = MANIFEST.problems[0].slug
    stub = copy / "exercises" / slug / "app.py"
    stub.write_text(stub.read_text(encoding="utf-8") + "# a learner's work\n", encoding="utf-8")
    manifest_before = (copy / "workbook.toml").read_text(encoding="utf-8")

    refused = workbook_in(copy, "dev", "new", SLUG)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (refused.stdout, refused.stderr) == (
        "",
        f"Error: workbook/starters.json is stale ({slug}/app.py: content differs): after changing exercises/ "
        "on purpose, run `workbook dev update`. Nothing was written: `workbook dev new` regenerates these files "
        "and would publish those changes unseen.\n",
    )
    assert (copy / "workbook.toml").read_text(encoding="utf-8") == manifest_before
    assert not (copy / "exercises" / SLUG).exists()


def test_dev_check_names_dev_update_while_a_generated_file_is_stale_and_update_fixes_it(copy):
    stub = copy / "exercises" / MANIFEST.problems[0].slug / "app.py"
    stub.write_text(stub.read_text(encoding="utf-8") + "# a changed stub\n", encoding="utf-8")
    (copy / "graders" / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")

    stale = workbook_in(copy, "dev", "check", "--static")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert stale.stdout == (
        f"- workbook/starters.json is stale ({MANIFEST.problems[0].slug}/app.py: content differs): "
        "after changing exercises/ on purpose, run `workbook dev update`\n"
        "- graders/CHECKSUMS.sha256 is stale (pytest.ini: changed): "
        "after changing graders/ on purpose, run `workbook dev update`\n"
    )

    updated = workbook_in(copy, "dev", "update")
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout == (
        f"Wrote workbook/starters.json ({len(MANIFEST.problems)} problems).\n"
        f"Wrote graders/CHECKSUMS.sha256 ({len(integrity.grader_files(ROOT / 'graders'))} files).\n"
    )
    assert generated.stale(copy) == []
    current = workbook_in(copy, "dev", "check", "--static")
    assert current.returncode == 0, current.stdout + current.stderr


def test_the_workbooks_own_generated_files_are_current():
    assert generated.stale() == [], "\n".join(generated.stale())

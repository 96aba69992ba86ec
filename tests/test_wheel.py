"""The workbook installs as a package (issue 12, item 5): build the wheel from a clone
someone has worked in, install it into a fresh virtual environment, and follow a learner
who installed it and a CI job that grades a submission with it. Slow (about a minute):
one test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from support import MANIFEST, ROOT

from workbook import starters

# Only what a build reads: never the venv, earlier builds or anyone's progress.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".workbook", ".*_cache", "tests", "benchmarks"
)


def run(command: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # No WORKBOOK_* variable of the test run may steer the installed workbook.
    env = {key: value for key, value in os.environ.items() if not key.startswith("WORKBOOK_")}
    env.pop("PYTHONPATH", None)
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_wheel_install_grades_a_workspace_made_by_init(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    # The builder solved problem 1 and ran its app in a clone: none of that may ship.
    first = source / "exercises" / MANIFEST.by_number(1).slug
    shutil.copyfile(source / "solutions" / first.name / "app.py", first / "app.py")
    (first / "users.db").write_bytes(b"SQLite format 3\x00")
    (source / "solutions" / first.name / "users.db").write_bytes(b"SQLite format 3\x00")
    (source / "graders" / "stray.db").write_bytes(b"")
    (first / ".workbook").mkdir()
    (first / ".workbook" / "state.json").write_text("{}")
    # pyproject.toml asks for a newer setuptools than a project venv may hold: build isolation
    # fetches it (from the configured index).
    built = run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-q", "-w", tmp_path / "dist"], tmp_path)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "workbook/bundled/workbook.toml" in names and "workbook/starters.json" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in names if name.endswith(".db") or ".workbook/" in name]
    archive = zipfile.ZipFile(wheel)
    bundled_stub = archive.read(f"workbook/bundled/exercises/{first.name}/app.py")
    assert bundled_stub == starters.starter_files(first.name)["app.py"]  # the pristine stub, not the clone's

    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", venv], tmp_path).returncode == 0
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    install = run([bin_dir / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel], tmp_path)
    assert install.returncode == 0, install.stderr
    imported = run([bin_dir / "python", "-c", "import workbook; print(workbook.__file__)"], tmp_path)
    assert Path(imported.stdout.strip()).is_relative_to(venv), imported.stdout  # the wheel, not the checkout

    workbook = bin_dir / "workbook"
    outside = run([workbook, "status"], tmp_path)
    assert outside.returncode == 2, outside.stdout + outside.stderr
    assert outside.stderr.splitlines() == [
        f"Error: no workbook workspace in {tmp_path} or above it; run `workbook init DIR` to create one, then `cd DIR`."
    ]

    init = run([workbook, "init", "learner"], tmp_path)
    assert init.returncode == 0, init.stderr
    assert init.stdout.splitlines()[-1] == "Next: cd learner && workbook check 1"

    learner = tmp_path / "learner"
    stubs = run([workbook, "check", "1"], learner)
    assert stubs.returncode == 1, stubs.stdout + stubs.stderr
    assert f"Problem 1 · {MANIFEST.by_number(1).title}" in stubs.stdout, stubs.stdout
    assert "Traceback" not in stubs.stdout + stubs.stderr
    # A CI job: no workspace, a submission folder, and the bundled solutions.
    shutil.copytree(learner / "exercises", tmp_path / "submission")
    submission = run([workbook, "check", "1", "--dir", tmp_path / "submission", "--format", "json"], tmp_path)
    assert submission.returncode == 1, submission.stdout + submission.stderr
    assert '"status": "fail"' in submission.stdout, submission.stdout
    assert not (tmp_path / ".workbook").exists()
    solutions = run([workbook, "check", "1", "--solutions"], tmp_path)
    assert solutions.returncode == 0, solutions.stdout + solutions.stderr
    doctor = run([workbook, "doctor", "--no-grade"], learner)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "missing" not in doctor.stdout, doctor.stdout

"""Shared helpers for the project's own tests: build graded folders, grade them, and
read the wrong/alternative-solution corpus in tests/corpus/<slug>.toml."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbook import workspace
from workbook.engine import ProblemResult, grade
from workbook.manifest import ROOT, Problem, load_manifest
from workbook.sandbox import isolation

MANIFEST = load_manifest()
PROBLEMS = MANIFEST.problems
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
CORPUS = Path(__file__).parent / "corpus"
# Not the learner's fault, so never acceptable on a stub or a wrong solution.
ENGINE_KINDS = {"internal", "not-run"}


def corpus(problem: Problem) -> dict[str, list[dict[str, Any]]]:
    path = CORPUS / f"{problem.slug}.toml"
    if not path.exists():
        return {"wrong": [], "alternative": []}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {"wrong": data.get("wrong", []), "alternative": data.get("alternative", [])}


def cases(kind: str) -> list[tuple[Problem, dict[str, Any]]]:
    return [(problem, case) for problem in PROBLEMS for case in corpus(problem)[kind]]


def case_id(value: Any) -> str:
    return value.slug if isinstance(value, Problem) else value["name"] if isinstance(value, dict) else str(value)


def build_case(problem: Problem, case: dict[str, Any], root: Path) -> Path:
    """Lay out one corpus case as a graded folder: a folder of its own, or the reference
    solution with an overlay folder's files put over it and the case's edits applied.
    Returns the graded root."""
    destination = root / problem.slug
    source = CORPUS / case["folder"] if "folder" in case else SOLUTIONS / problem.slug
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
    if "overlay" in case:  # the solution, with the files of the overlay folder put over it
        shutil.copytree(CORPUS / case["overlay"], destination, dirs_exist_ok=True)
    for edit in case.get("edits", []):
        apply_edit(destination / edit["file"], edit["old"], edit["new"], case["name"])
    return root


def apply_edit(path: Path, old: str, new: str, name: str) -> None:
    text = path.read_text(encoding="utf-8")
    count = text.count(old)
    assert count == 1, f"corpus case {name}: the text to replace occurs {count} times in {path.name}:\n{old}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def write_problem(root: Path, problem: Problem, files: dict[str, str]) -> Path:
    """A graded root whose problem folder holds exactly `files` (relative path -> source)."""
    folder = root / problem.slug
    for relative, source in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root


def learner_workspace(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace as `workbook init` makes it in `folder` (empty or missing), made the
    current directory, where a learner runs `workbook`. Returns its exercises/ folder."""
    workspace.create(folder)
    monkeypatch.chdir(folder)
    return folder / workspace.EXERCISES


def process_running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie), from /proc (Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2] not in "ZX"


def failures(result: ProblemResult) -> str:
    return "\n".join(f"- {c.id} [{c.status}/{c.kind}]: {c.message}" for c in result.checks if c.status != "pass")


def engine_errors(result: ProblemResult) -> list[str]:
    return [f"{c.id}: {c.message}" for c in result.checks if c.kind in ENGINE_KINDS]


__all__ = ["grade", "ROOT", "MANIFEST"]


# --- attack tests (test_trusted_grading.py, test_app_hosts.py) -----------------------------

# What an attack in learner code raises when it got what it wanted; never in a report.
SUCCEEDED = "ATTACK SUCCEEDED"

needs_sandbox = pytest.mark.skipif(
    not isolation().active,
    reason=f"needs the bubblewrap sandbox ({isolation().reason}); CI installs it: apt-get install bubblewrap",
)


def survivors(marker: str, wait_s: float = 3.0) -> list[int]:
    """The processes whose command line holds `marker`, after up to `wait_s` for them to go."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def loopback_listener() -> Iterator[tuple[int, list[bytes]]]:
    """A listener on 127.0.0.1 outside any sandbox, for attacks that try to reach it: its port,
    and what each connection it accepted sent (first 100 bytes), until the block ends."""
    accepted: list[bytes] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    connection, _ = listener.accept()
                    with connection:
                        connection.settimeout(1)
                        accepted.append(connection.recv(100))

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], accepted
        finally:
            stop.set()
            thread.join(timeout=2)

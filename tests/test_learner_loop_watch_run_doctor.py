"""`workbook watch`, `run`, `doctor`, the congratulations, and plain output when piped or
NO_COLOR is set. Everything works on copies of exercises/ and a state folder of its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from click.testing import CliRunner
from support import MANIFEST, ROOT, SOLUTIONS, learner_workspace

from workbook import cli, doctor, learner_commands, watcher
from workbook.milestones import after_check
from workbook.report import Style
from workbook.state import Progress, load_state, record_result

P1, P3 = MANIFEST.by_number(1), MANIFEST.by_number(3)
WORKBOOK = [sys.executable, "-c", "import sys; from workbook.cli import main; sys.exit(main())"]
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="signals and ptys are POSIX")


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    folder = tmp_path / "state"
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(folder))
    monkeypatch.delenv("NO_COLOR", raising=False)
    return folder


@pytest.fixture
def exercises(tmp_path, monkeypatch):
    return learner_workspace(tmp_path, monkeypatch)


def plain() -> Style:
    return Style(color=False, unicode=False)


def spawn(*args: str, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [*WORKBOOK, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a test can send Ctrl-C to it and its children alone
        **options,
    )


def read_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    """Collect the process's output until `marker` appears (or fail after `timeout`)."""
    seen: list[str] = []
    found = threading.Event()

    def pump() -> None:
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout):
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"no {marker!r} within {timeout} s; output:\n{''.join(seen)}")
    process.seen = seen  # type: ignore[attr-defined]
    return "".join(seen)


# --- watch ----------------------------------------------------------------------------


def test_watch_regrades_after_a_save_and_moves_on_when_solved(exercises):
    screens: list[tuple[float, str]] = []
    watch = watcher.Watcher(
        MANIFEST,
        exercises,
        style=plain(),
        clear_screen=False,
        echo=lambda text: screens.append((time.monotonic(), text)),
    )
    outcome: dict[str, int] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("code", watch.run(P1, max_runs=2)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while len(screens) < 2 and time.monotonic() < deadline:  # the separator, then the first screen
        time.sleep(0.05)
    first = screens[-1][1]
    assert "First failure:" in first and "workbook check 1 -k" in first and "Ctrl-C to quit" in first

    time.sleep(0.3)
    saved = time.monotonic()
    shutil.copy(SOLUTIONS / P1.slug / "app.py", exercises / P1.slug / "app.py")
    thread.join(60)
    assert not thread.is_alive(), "watch did not re-grade within 60 s"
    assert outcome["code"] == 0
    when, last = screens[-1]
    assert "Every check passes." in last
    assert "Problem 1 solved" in last and f"solutions/{P1.slug}/" in last
    assert "Checking problem 2" in last
    graded_in = float(last.split("graded in ")[1].split(" s")[0])
    # Save-to-screen is the grading time plus the poll and settle delays (and a loaded CI machine).
    assert when - saved < graded_in + 1.0
    assert load_state().problems[P1.slug].status == "pass"


def test_watch_of_a_chosen_problem_stays_on_it_once_solved(exercises):
    screens: list[str] = []
    watch = watcher.Watcher(MANIFEST, exercises, style=plain(), clear_screen=False, echo=screens.append)
    shutil.copy(SOLUTIONS / P1.slug / "app.py", exercises / P1.slug / "app.py")
    assert watch.run(P1, max_runs=1, stay=True) == 0
    last = screens[-1]
    assert "Every check passes." in last and "Problem 1 solved" in last, last
    assert "Checking problem 2" not in last and "Ctrl-C to quit" in last, last


def test_a_half_written_file_is_graded_only_once_it_settles(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    app = folder / "app.py"
    app.write_text("app = 1\n")
    since = watcher.signature(folder)
    writes = iter(["app = Fast", "app = FastAPI(\n", "app = FastAPI()\n"])

    def editor_saving_in_pieces(seconds: float) -> None:
        text = next(writes, None)
        if text is not None:
            app.write_text(text)

    settled = watcher.wait_for_change(folder, since, sleep=editor_saving_in_pieces)
    assert settled == watcher.signature(folder) and app.read_text() == "app = FastAPI()\n"


def test_a_save_by_rename_is_seen_even_with_the_same_size_and_time(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    app = folder / "app.py"
    app.write_text("x = 1\n")
    before = watcher.signature(folder)
    stat = app.stat()
    temporary = folder / ".app.py.swp-new"
    temporary.write_text("x = 2\n")
    os.utime(temporary, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(temporary, app)
    assert watcher.signature(folder) != before
    (folder / "users.db").write_bytes(b"written by the app")
    assert watcher.signature(folder) == watcher.signature(folder)  # non-source files are ignored
    assert all(entry[0].endswith(".py") for entry in watcher.signature(folder))


@POSIX_ONLY
def test_watch_quits_cleanly_on_ctrl_c_and_prints_plain_text_when_piped(state_dir):
    process = spawn("watch", "1")
    try:
        output = read_until(process, "Ctrl-C to quit", timeout=60)
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    time.sleep(0.1)
    output = "".join(process.seen)  # type: ignore[attr-defined]
    assert code == 0
    assert "Traceback" not in output and "Stopped watching" in output
    assert "\x1b[" not in output and "FAIL" in output  # plain words, no colour codes, when piped


# --- run ------------------------------------------------------------------------------


def test_run_builds_a_reloading_uvicorn_command_on_localhost(exercises):
    (exercises / P3.slug / "chat.html").write_text("<html></html>")
    result = CliRunner().invoke(cli.main, ["run", "3", "--port", "8123", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/docs" in result.output
    assert "http://127.0.0.1:8123/chat.html" in result.output and "file://" not in result.output
    command = learner_commands.uvicorn_command(P3, exercises / P3.slug, 8123)
    assert command[1:4] == ["-m", "uvicorn", "workbook.serve:app"]  # the learner's app, plus the pages
    assert command[command.index("--host") : command.index("--host") + 2] == ["--host", "127.0.0.1"]
    assert "--reload" in command and str(exercises / P3.slug) in command
    assert "--reload" not in learner_commands.uvicorn_command(P3, exercises / P3.slug, 8123, reload=False)


def test_run_picks_the_next_port_when_the_default_is_busy():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert learner_commands.free_port(port) != port


@POSIX_ONLY
def test_run_serves_the_app_until_ctrl_c():
    port = learner_commands.free_port(18500)
    process = spawn("run", "1", "--solution", "--port", str(port))
    try:
        read_until(process, "/docs", timeout=20)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "".join(process.seen)  # type: ignore[attr-defined]
                time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in "".join(process.seen)  # type: ignore[attr-defined]


# --- doctor ---------------------------------------------------------------------------


def test_doctor_passes_on_a_healthy_install(exercises):
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == 0, result.output
    for expected in ("Python 3.", "dependencies at their tested versions", "bcrypt", "grading works"):
        assert expected in result.output


def test_doctor_reports_a_broken_environment_one_line_each(exercises, tmp_path, monkeypatch):
    shutil.rmtree(exercises / P3.slug)
    not_a_folder = tmp_path / "state-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(not_a_folder / "inside"))
    monkeypatch.setattr(learner_commands, "BUNDLED_SOLUTIONS", tmp_path / "no-solutions")
    real_version = doctor.metadata.version
    monkeypatch.setattr(doctor.metadata, "version", lambda name: "0.1.0" if name == "fastapi" else real_version(name))
    result = CliRunner().invoke(cli.main, ["doctor", "-q"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert any("fastapi 0.1.0 is installed, tested with ==" in line and "pip install -e ." in line for line in lines)
    assert any(f"{P3.slug}/ is missing" in line and "workbook reset 3" in line for line in lines)
    assert any("state folder" in line and "WORKBOOK_STATE_DIR" in line for line in lines)
    assert any("grading problem 1's reference solution fails" in line for line in lines)
    assert lines[-1].startswith("4 problems found")
    assert not any(line.startswith("PASS") for line in lines)  # -q: only the problems


def test_doctor_finds_broken_bcrypt(monkeypatch):
    import passlib.context

    def broken(*args, **kwargs):
        raise ValueError("password cannot be longer than 72 bytes")

    monkeypatch.setattr(passlib.context.CryptContext, "hash", broken)
    [finding] = list(doctor.check_bcrypt())
    assert not finding.ok and "ValueError" in finding.what and "pip install" in finding.fix


def test_doctor_rejects_an_old_python():
    [finding] = list(doctor.check_python((3, 9, 18)))
    assert not finding.ok and "3.9.18" in finding.what


# --- congratulations ------------------------------------------------------------------


def test_check_congratulates_once_when_a_problem_becomes_solved(exercises):
    shutil.copy(SOLUTIONS / P1.slug / "app.py", exercises / P1.slug / "app.py")
    result = CliRunner().invoke(cli.main, ["check", "1"])
    assert result.exit_code == 0, result.output
    assert "Problem 1 solved" in result.output
    assert f"solutions/{P1.slug}/" in result.output and "Next: problem 2" in result.output


def test_the_fifth_solved_problem_gets_the_final_message():
    before = load_state()
    for problem in MANIFEST.problems[:-1]:
        record_result(before, problem.slug, "pass", 1, 1)
    after = Progress(problems=dict(before.problems))
    record_result(after, MANIFEST.problems[-1].slug, "pass", 1, 1)
    message = after_check(MANIFEST, before, after, plain())
    assert f"You solved all {len(MANIFEST.core_problems)} problems" in message
    assert after_check(MANIFEST, after, after, plain()) == ""  # solved before: said once only


# --- output conventions ---------------------------------------------------------------


class FakeTerminal:
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def test_colour_on_a_terminal_but_not_with_no_color(monkeypatch):
    assert Style.detect(FakeTerminal()).color
    monkeypatch.setenv("NO_COLOR", "1")
    assert not Style.detect(FakeTerminal()).color
    assert Style.detect(FakeTerminal()).unicode  # symbols stay: NO_COLOR is about colour only


@POSIX_ONLY
@pytest.mark.parametrize("no_color", [False, True])
def test_a_real_terminal_gets_colour_unless_no_color(no_color, state_dir):
    import pty

    leader, follower = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    if no_color:
        env["NO_COLOR"] = "1"
    process = subprocess.Popen([*WORKBOOK, "hint", "1"], cwd=ROOT, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=20)
    os.close(leader)
    output = b"".join(chunks).decode("utf-8", "replace")
    assert "Hint 1 of" in output
    assert ("\x1b[" in output) is not no_color


def test_piped_output_is_plain(state_dir):
    result = subprocess.run([*WORKBOOK, "hint", "1"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "Hint 1 of" in result.stdout
    assert "\x1b[" not in result.stdout


def test_every_learner_command_has_help():
    for name in ("hint", "reset", "watch", "run", "doctor"):
        result = CliRunner().invoke(cli.main, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output

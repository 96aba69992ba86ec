"""`workbook run` (issue 14, item 7): every URL it prints answers, problem 3's chat page
is served over HTTP on the port in use, and SIGTERM or SIGINT sent to `workbook` alone
stops uvicorn's whole tree (reloader and worker). Real processes and real signals; every
wait is bounded."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from support import ROOT, process_running

from workbook import learner_commands, servetree
from workbook.serve import WithPages

WORKBOOK = [sys.executable, "-c", "import sys; from workbook.cli import main; sys.exit(main())"]
STOP_LIMIT_S = 2  # the promise: the whole tree is gone within 2 s of the signal
START_LIMIT_S = 40


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))


def test_the_pages_are_served_beside_the_app_and_everything_else_reaches_it(tmp_path):
    page = tmp_path / "chat.html"
    page.write_text("<p>chat</p>", encoding="utf-8")
    inner = FastAPI()

    @inner.get("/rooms")
    def rooms() -> list[str]:
        return ["lobby"]

    client = TestClient(WithPages(inner, {"/chat.html": page}))
    served = client.get("/chat.html")
    assert served.status_code == 200, served.text
    assert served.text == "<p>chat</p>"
    assert served.headers["content-type"] == "text/html; charset=utf-8"
    page.write_text("<p>edited</p>", encoding="utf-8")
    assert client.get("/chat.html").text == "<p>edited</p>"  # read afresh: edits show at once
    answered = client.get("/rooms")
    assert answered.status_code == 200, answered.text
    assert answered.json() == ["lobby"]
    posted = client.post("/chat.html")
    assert posted.status_code == 404, posted.text  # only GET/HEAD are the page's


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


class Server:
    """`workbook run` in a session of its own (so the test can always clean up), its
    output collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*WORKBOOK, "run", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def printed_urls(self) -> list[str]:
        return re.findall(r"^  [A-Za-z ]+:\s+(http://\S+)$", self.output, flags=re.MULTILINE)

    def wait_until_answering(self, url: str) -> None:
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    pytest.fail(f"{url} did not answer within {START_LIMIT_S} s; output:\n{self.output}")
                time.sleep(0.2)

    def kill_everything(self, pids: set[int]) -> None:
        """Clean up after a failed test: only this run's processes, and only those still running."""
        for pid in {pid for pid in pids if process_running(pid)} | {self.process.pid}:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the process tree through /proc")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_serves_what_it_prints_and_a_signal_stops_its_whole_tree(stop_signal):
    port = learner_commands.free_port(18600 + 20 * (stop_signal == signal.SIGINT))
    server = Server("3", "--solution", "--port", str(port))
    tree: set[int] = set()
    try:
        server.wait_until_answering(f"http://127.0.0.1:{port}/docs")
        urls = server.printed_urls()
        assert urls == [f"http://127.0.0.1:{port}/docs", f"http://127.0.0.1:{port}/chat.html"], server.output
        assert "file://" not in server.output
        for url in urls:
            status, body = get(url)
            assert status == 200, f"{url} answered {status}"
        status, page = get(urls[1])
        assert "location.host" in page  # the page talks to the server that served it
        tree = descendants(server.process.pid)
        assert len(tree) >= 2, f"expected uvicorn's reloader and worker below workbook, found {tree}"

        os.kill(server.process.pid, stop_signal)  # to workbook alone, as `kill` or an IDE sends it
        assert server.process.wait(timeout=STOP_LIMIT_S) == 0, server.output
        still = {pid for pid in tree if process_running(pid)}
        assert not still, f"still running after {stop_signal.name}: {still}\n{server.output}"
    finally:
        if server.process.poll() is None or tree:
            server.kill_everything(tree)
    assert "Server stopped." in server.output
    assert "Traceback" not in server.output


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_a_tree_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "if sys.argv[1:] == ['parent']:\n"
        "    subprocess.Popen([sys.executable, __file__, 'child'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, str(script), "parent"], stdout=subprocess.PIPE, text=True, process_group=0
    )
    try:
        assert process.stdout.readline() == "ready\n"
        deadline = time.monotonic() + START_LIMIT_S
        while len(descendants(process.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = descendants(process.pid) | {process.pid}
        assert len(tree) == 2, tree
        servetree.stop_group(process, grace=0.2)
        assert process.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while any(process_running(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not {pid for pid in tree if process_running(pid)}
    finally:
        if process.poll() is None:  # the group is still ours only while its leader is unreaped
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_a_server_that_ends_by_itself_hands_back_its_exit_status(tmp_path):
    code = servetree.serve_until_signal([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, dict(os.environ))
    assert code == 3

"""Benchmark: how long `workbook run` takes to stop its whole process tree after a signal
sent to `workbook` alone (issue 14, item 7 promises under 2 s).

    python benchmarks/bench_run_stop.py             # problem 3's solution, 5 runs per signal
    python benchmarks/bench_run_stop.py --runs 3 --problem 1
    python benchmarks/bench_run_stop.py --websocket  # a chat client stays connected (problem 3)

Each run serves with auto-reload (reloader + worker), waits until /docs answers, sends
SIGTERM or SIGINT to the workbook process, and measures until the last process of the tree
is gone (zombies count as gone). Linux only: the tree is read from /proc.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
START_LIMIT_S = 60
GONE_LIMIT_S = 10


def tree(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2] not in "ZX"


def wait_for_docs(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_LIMIT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the server on port {port} did not answer within {START_LIMIT_S} s")


def one_stop(problem: int, port: int, stop_signal: signal.Signals, websocket: bool = False) -> float:
    """Seconds from the signal until no process of the tree runs."""
    command = [sys.executable, "-c", "import sys, cli; sys.exit(cli.main())", "run", str(problem)]
    command += ["--solution", "--port", str(port)]
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_for_docs(port, process)
    with contextlib.ExitStack() as clients:
        if websocket:
            clients.enter_context(connect(f"ws://127.0.0.1:{port}/ws/lobby?username=bench", open_timeout=10))
        pids = tree(process.pid)
        started = time.perf_counter()
        os.kill(process.pid, stop_signal)
        process.wait(timeout=GONE_LIMIT_S)
        while any(running(pid) for pid in pids):
            if time.perf_counter() - started > GONE_LIMIT_S:
                raise SystemExit(f"processes still running {GONE_LIMIT_S} s after {stop_signal.name}")
            time.sleep(0.01)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--websocket", action="store_true", help="keep a WebSocket client connected (problem 3)")
    options = parser.parse_args()
    print("| signal | runs | median | max |")
    print("| --- | --- | --- | --- |")
    for offset, stop_signal in enumerate((signal.SIGTERM, signal.SIGINT)):
        ports = range(options.port + 10 * offset, options.port + 10 * offset + options.runs)
        times = [one_stop(options.problem, port, stop_signal, options.websocket) for port in ports]
        print(f"| {stop_signal.name} | {len(times)} | {statistics.median(times):.2f} s | {max(times):.2f} s |")


if __name__ == "__main__":
    main()

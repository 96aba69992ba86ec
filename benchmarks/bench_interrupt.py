"""Benchmark: how long `workbook grade` takes to stop after Ctrl-C (the budget is 2 s),
and the cost of the text-safety rules on a large learner message.

    python benchmarks/bench_interrupt.py            # 7 interrupts
    python benchmarks/bench_interrupt.py --runs 11

Each run grades a class of four submissions whose import never ends (so grading processes
are busy), sends SIGINT once two of them have started, and times until `grade` exits.
Prints the median and the worst, then the time safetext takes on a 5 MB message.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbook.safetext import learner_text, log_safe  # noqa: E402

LOOP = "import os\nopen({pids!r}, 'a').write(f'{{os.getpid()}}\\n')\nwhile True:\n    pass\n"


def one_interrupt(scratch: Path) -> float:
    """Seconds from SIGINT to the exit of `grade`."""
    pids = scratch / "pids.txt"
    for index in range(4):
        folder = scratch / "class" / f"loop{index}" / "p1_dependency_chain"
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(LOOP.format(pids=str(pids)), encoding="utf-8")
    command = [sys.executable, "-c", "import cli; cli.main()", "grade", str(scratch / "class")]
    grading = subprocess.Popen(
        [*command, "--out", str(scratch / "out"), "-p", "1", "-j", "2"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) >= 2):
        if time.monotonic() > deadline:
            grading.kill()
            raise SystemExit("the gradings did not start within 60 s")
        time.sleep(0.05)
    started = time.perf_counter()
    grading.send_signal(signal.SIGINT)
    grading.wait(timeout=30)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as scratch:
            times.append(one_interrupt(Path(scratch)))
    print(f"grade stops after Ctrl-C: median {statistics.median(times):.2f} s, worst {max(times):.2f} s ({runs} runs)")
    message = ("A" * 99 + "\x1b\n") * 50_000  # 5 MB, with an escape on every line
    started = time.perf_counter()
    log_safe(learner_text(message))
    print(f"learner_text + log_safe on a 5 MB message: {1000 * (time.perf_counter() - started):.1f} ms")


if __name__ == "__main__":
    main()

"""Benchmark: re-checking one problem in a warm process, as `workbook watch` does.

    python benchmarks/bench_recheck.py             # problem 1's solution, 6 gradings
    python benchmarks/bench_recheck.py 3 --runs 8

Prints each grading's wall time; the first one starts the warm fork server (and, on Linux
with bubblewrap, its sandbox), the others are what a learner waits for after a save.
Budget (issue 11): a re-check of problem 1 at most 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbook import engine  # noqa: E402
from workbook.manifest import load_manifest  # noqa: E402
from workbook.watcher import WATCH_PARTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("problem", type=int, nargs="?", default=1)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    problem = load_manifest().by_number(args.problem)
    engine.keep_warm()
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        result = engine.grade(problem, ROOT / "solutions", parts=WATCH_PARTS)
        times.append(time.perf_counter() - started)
        assert result.status == "pass", [c.message for c in result.checks if c.status != "pass"]
    isolation = getattr(result, "isolation", "sandbox: none")
    rechecks = " ".join(f"{t:.2f}" for t in times[1:])
    print(f"problem {args.problem} ({isolation}): first {times[0]:.2f} s; re-checks {rechecks} s")
    print(f"median re-check {statistics.median(times[1:]):.2f} s")


if __name__ == "__main__":
    main()

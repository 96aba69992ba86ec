"""Benchmark: `workbook check N --solutions` against bare pytest on the same grader files.

    python benchmarks/bench_check.py            # every problem (the bonus one too), 7 runs each
    python benchmarks/bench_check.py 1 3 --runs 11

Prints the median wall time of each and their ratio, as a Markdown table row per problem.
Bare pytest is the floor: the same interpreter, graders and target, without the engine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbook.manifest import load_manifest  # noqa: E402


def wall_time(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def measure(number: int, runs: int) -> tuple[float, float]:
    problem = load_manifest().by_number(number)
    env = {**os.environ, "NO_COLOR": "1"}
    workbook = [sys.executable, "-c", "import cli; cli.main()", "check", str(number), "--solutions", "-q"]
    bare_env = {**env, "WORKBOOK_TARGET": str(ROOT / "solutions"), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    bare = [sys.executable, "-m", "pytest", "-q", "-c", "graders/pytest.ini", str(problem.grader_dir)]
    ours = [wall_time(workbook, env) for _ in range(runs)]
    floor = [wall_time(bare, bare_env) for _ in range(runs)]
    return statistics.median(ours), statistics.median(floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("problems", nargs="*", type=int)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    numbers = args.problems or [p.number for p in load_manifest().problems]
    print(f"| problem | workbook check --solutions (median of {args.runs}) | bare pytest | ratio |")
    print("| --- | --- | --- | --- |")
    for number in numbers:
        ours, floor = measure(number, args.runs)
        print(f"| {number} | {ours:.2f} s | {floor:.2f} s | {ours / floor:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

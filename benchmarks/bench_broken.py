"""Benchmark: time to a verdict for broken solutions (issue 14, "Measure").

    python benchmarks/bench_broken.py                    # every corpus wrong solution and every hang case
    python benchmarks/bench_broken.py --only hangs       # only benchmarks/broken/hangs.toml
    python benchmarks/bench_broken.py --workbook DIR     # time another checkout's cli.py (a "before" figure)

Each case is laid out as a graded folder (the reference solution with the case's edits, as
tests/corpus does) and graded by `workbook check N --dir ... --format json` in a fresh
process: the wall time of that command is the learner's wait for a complete result.
Prints one line per case, then the median and maximum, and the slowest cases.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support import MANIFEST, build_case, corpus  # noqa: E402

from workbook.manifest import Problem  # noqa: E402

HANGS = Path(__file__).parent / "broken" / "hangs.toml"


def hang_cases() -> list[tuple[Problem, dict[str, Any]]]:
    """The benchmark-only hangs, busy loops and missing events, per problem."""
    data = tomllib.loads(HANGS.read_text(encoding="utf-8"))
    return [(MANIFEST.by_slug(slug), case) for slug, found in data.items() for case in found]


def all_cases(only: str) -> list[tuple[str, Problem, dict[str, Any]]]:
    found = []
    if only in ("all", "corpus"):
        found += [("corpus", problem, case) for problem in MANIFEST.problems for case in corpus(problem)["wrong"]]
    if only in ("all", "hangs"):
        found += [("hang", problem, case) for problem, case in hang_cases()]
    return found


def verdict_time(workbook: Path, problem: Problem, case: dict[str, Any]) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-broken-") as scratch:
        root = build_case(problem, case, Path(scratch) / "graded")
        command = [sys.executable, str(workbook / "cli.py"), "check", str(problem.number), "--dir", str(root)]
        env = {**os.environ, "NO_COLOR": "1"}
        started = time.perf_counter()
        subprocess.run(
            [*command, "--format", "json"], cwd=workbook, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("all", "corpus", "hangs"), default="all")
    parser.add_argument("--workbook", type=Path, default=ROOT, help="the checkout whose cli.py grades")
    parser.add_argument("--problem", type=int, action="append", help="only these problem numbers")
    args = parser.parse_args()
    timings = []
    for source, problem, case in all_cases(args.only):
        if args.problem and problem.number not in args.problem:
            continue
        seconds = verdict_time(args.workbook.resolve(), problem, case)
        timings.append((seconds, f"{source}:{problem.slug}:{case['name']}"))
        print(f"{seconds:6.2f} s  {timings[-1][1]}", flush=True)
    values = [seconds for seconds, _ in timings]
    print(f"\n{len(values)} broken solutions: median {statistics.median(values):.2f} s, max {max(values):.2f} s")
    print("slowest:", ", ".join(f"{name} {seconds:.1f} s" for seconds, name in sorted(timings)[-5:][::-1]))


if __name__ == "__main__":
    main()

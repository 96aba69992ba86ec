"""Benchmark: CPU time (user + system) of `workbook check N --solutions`, here and at a git revision.

    python benchmarks/bench_check_cpu.py 1 2 4 --runs 5 --against 2a5a5e0

On a machine that other work loads, wall time moves by a factor of two between runs; the CPU
time the grading processes spend moves far less, so it compares two versions of the graders
fairly. The runs alternate between the two checkouts so both see the same load. Prints one
Markdown table row per problem: median CPU and wall time of each checkout, and the CPU ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(root: Path, number: int) -> tuple[float, float]:
    """(CPU seconds of every child process, wall seconds) of one `workbook check` in `root`."""
    command = [sys.executable, "-c", "import cli; cli.main()", "check", str(number), "--solutions", "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = {**os.environ, "NO_COLOR": "1"}
    subprocess.run(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def export(revision: str, folder: Path) -> Path:
    """The tree of `revision` written into `folder` (git archive), to grade with its own graders."""
    archive = folder / "tree.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", revision], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "tree", filter="data")
    return folder / "tree"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="+", type=int)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", required=True, help="a git revision to compare with (e.g. main)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = export(args.against, Path(scratch))
        print(f"| problem | CPU {args.against} | CPU here | CPU ratio | wall {args.against} | wall here |")
        print("| --- | --- | --- | --- | --- | --- |")
        for number in args.problems:
            theirs, ours = [], []
            for _ in range(args.runs):
                theirs.append(one_run(base, number))
                ours.append(one_run(ROOT, number))
            cpu_base, cpu_here = (statistics.median(run[0] for run in runs) for runs in (theirs, ours))
            wall_base, wall_here = (statistics.median(run[1] for run in runs) for runs in (theirs, ours))
            print(
                f"| {number} | {cpu_base:.2f} s | {cpu_here:.2f} s | {cpu_here / cpu_base:.2f}x "
                f"| {wall_base:.2f} s | {wall_here:.2f} s |"
            )


if __name__ == "__main__":
    main()

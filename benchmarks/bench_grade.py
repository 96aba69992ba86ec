"""Benchmark: `workbook grade` throughput over a generated class.

    python benchmarks/bench_grade.py                 # 40 submissions, -j 2, all problems
    python benchmarks/bench_grade.py --count 12 --jobs 4 --problem 1

The class mixes reference solutions, untouched stubs and wrong solutions (the wrong cases of
tests/corpus/<slug>.toml applied to the solution). Prints submissions per minute; the
target on a 2-core machine is at least 12 with -j 2.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support import build_case, corpus  # noqa: E402

from workbook.manifest import load_manifest  # noqa: E402

KINDS = ("solution", "stub", "wrong")


def generate_class(folder: Path, count: int) -> dict[str, int]:
    """`count` submissions, cycling through solution, stub and wrong; returns the mix."""
    problems = load_manifest().problems
    mix = dict.fromkeys(KINDS, 0)
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        mix[kind] += 1
        submission = folder / f"s{index:03}_{kind}"
        for problem in problems:
            wrong = corpus(problem)["wrong"]
            if kind == "wrong" and wrong:
                build_case(problem, wrong[index % len(wrong)], submission)
                continue
            source = ROOT / ("exercises" if kind == "stub" else "solutions") / problem.slug
            if source.is_dir():
                shutil.copytree(source, submission / problem.slug, ignore=shutil.ignore_patterns("__pycache__"))
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--problem", type=int, action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as scratch:
        class_dir, out = Path(scratch) / "class", Path(scratch) / "out"
        mix = generate_class(class_dir, args.count)
        command = [sys.executable, "-m", "cli", "grade", str(class_dir), "--out", str(out), "-j", str(args.jobs)]
        command += [f"--problem={n}" for n in args.problem] + ["--allow-modified-graders"]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
        rows = (out / "gradebook.csv").read_text(encoding="utf-8").splitlines()[1:]
    problems = ",".join(map(str, args.problem)) or "all"
    print(f"class: {args.count} submissions {mix}, problems {problems}, -j {args.jobs}")
    print(f"graded {len(rows)} in {elapsed:.1f} s: {60 * len(rows) / elapsed:.1f} submissions per minute")


if __name__ == "__main__":
    main()

"""Benchmark: `workbook grade` throughput over a generated class.

    python benchmarks/bench_grade.py                 # 40 submissions, -j 2, all problems
    python benchmarks/bench_grade.py --count 12 --jobs 4 --problem 1
    python benchmarks/bench_grade.py --count 15 --kinds solution -p 1 -p 2 -p 3 -p 4 -p 5

The class mixes reference solutions, untouched stubs and wrong solutions (the wrong cases of
tests/corpus/<slug>.toml applied to the solution), or only the `--kinds` named. Prints
submissions per minute. Issue 11's budget: at least 15 a minute with -j 2 and the sandbox
on, for a class of reference solutions of its five problems (the third command).
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


def generate_class(folder: Path, count: int, kinds: tuple[str, ...] = KINDS) -> dict[str, int]:
    """`count` submissions, cycling through `kinds` (solution, stub, wrong); returns the mix."""
    problems = load_manifest().problems
    mix = dict.fromkeys(kinds, 0)
    for index in range(count):
        kind = kinds[index % len(kinds)]
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
    parser.add_argument("-p", "--problem", type=int, action="append", default=[])
    parser.add_argument("--kinds", action="append", choices=KINDS, default=[], help="repeat; default all three")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as scratch:
        class_dir, out = Path(scratch) / "class", Path(scratch) / "out"
        mix = generate_class(class_dir, args.count, tuple(args.kinds) or KINDS)
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

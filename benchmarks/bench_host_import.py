"""Benchmark: what a fresh import of a reference solution costs in a process forked from a
warm server, as each app host does (workbook/apphost.py, workbook/forkserver.py).

    python benchmarks/bench_host_import.py            # problem 2, 8 forks per mode
    python benchmarks/bench_host_import.py 4 --forks 12

Modes (each in a fresh interpreter that imported the host's libraries, `apphost.warm_up`):
- cold: fork, then import the solution;
- freeze: gc.freeze() in the server first, so a child's collections do not touch (and copy)
  every page it inherited;
- warm+freeze: the server imported the solution once and forgot it (library caches warm),
  then froze. Prints each child's import time in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import gc, importlib, os, sys, time
sys.path.insert(0, sys.argv[1])
from workbook.apphost import warm_up
warm_up()
folder, module, mode, forks = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
sys.path.insert(0, folder)
sys.dont_write_bytecode = True
if mode == "warm+freeze":
    importlib.import_module(module)
    for name in [n for n in sys.modules if n == module.split(".")[0] or n.startswith(module.split(".")[0] + ".")]:
        del sys.modules[name]
if mode in ("freeze", "warm+freeze"):
    gc.freeze()
for _ in range(forks):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        started = time.perf_counter()
        importlib.import_module(module)
        os.write(write, f"{(time.perf_counter() - started) * 1000:.1f}\n".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    print(os.read(read, 100).decode().strip(), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("problem", type=int, nargs="?", default=2)
    parser.add_argument("--forks", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from workbook.manifest import load_manifest

    problem = load_manifest().by_number(args.problem)
    folder = ROOT / "solutions" / problem.slug
    for mode in ("cold", "freeze", "warm+freeze"):
        command = [sys.executable, "-c", CHILD, str(ROOT), str(folder), problem.module, mode, str(args.forks)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        times = [float(value) for value in out]
        print(f"problem {args.problem}, {mode}: median {statistics.median(times):.1f} ms ({' '.join(out)})")


if __name__ == "__main__":
    main()

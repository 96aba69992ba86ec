"""Which address-space limit the reference solutions still pass under, in the sandbox.

    python benchmarks/bench_address_space.py 512     # MiB

Grades problems 2-5's reference solutions with `sandbox.ADDRESS_SPACE_BYTES` set to the
given size and prints each result; the sandbox's 1 GiB must leave a clear margin.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbook import engine, sandbox  # noqa: E402
from workbook.manifest import load_manifest  # noqa: E402


def main() -> None:
    mebibytes = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    sandbox.ADDRESS_SPACE_BYTES = mebibytes << 20
    for number in (2, 3, 4, 5):
        result = engine.grade(load_manifest().by_number(number), ROOT / "solutions")
        failing = sorted({check.kind for check in result.checks if check.status != "pass"})
        print(f"{mebibytes} MiB, problem {number} ({result.isolation}): {result.passed}/{result.total} {failing}")


if __name__ == "__main__":
    main()

"""How often problem 1's app answers 500 under concurrent requests through one TestClient.

    python benchmarks/bench_p1_threads.py [folder] [--threads 8] [--requests 20] [--runs 5]

Imports `<folder>/p1_dependency_chain/app.py` (default: solutions/), points DATABASE_PATH at a
temporary file, and lets N threads each send M requests (alternating POST and GET /users)
through one TestClient. Prints, per run, how many answers were not 201/200, and the first
server error. A sync `yield` dependency's set-up, the endpoint and the tear-down may run on
different threadpool workers, so a connection opened with the default check_same_thread=True
fails with sqlite3.ProgrammingError.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent


def load_app(folder: Path) -> object:
    path = folder / "p1_dependency_chain" / "app.py"
    spec = importlib.util.spec_from_file_location(f"p1_app_{os.getpid()}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module.app


def one_run(folder: Path, threads: int, requests: int) -> tuple[Counter, str]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DATABASE_PATH"] = str(Path(tmp) / "users.db")
        app = load_app(folder)
        statuses: Counter = Counter()
        errors: Counter = Counter()

        async def recording_app(scope: dict, receive: object, send: object) -> None:
            try:
                await app(scope, receive, send)  # type: ignore[operator]
            except Exception as exc:
                errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                raise

        with TestClient(recording_app, raise_server_exceptions=False) as api:

            def work(worker: int) -> list[tuple[int, str]]:
                answers = []
                for index in range(requests):
                    if index % 2:
                        response = api.get("/users")
                    else:
                        email = f"u{worker}.{index}@example.com"
                        response = api.post("/users", json={"name": f"U {worker}", "email": email})
                    answers.append((response.status_code, response.text))
                return answers

            with ThreadPoolExecutor(threads) as pool:
                for answers in pool.map(work, range(threads)):
                    for code, _text in answers:
                        statuses[code] += 1
        return statuses, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", default=str(ROOT / "solutions"))
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    total: Counter = Counter()
    for run in range(options.runs):
        started = time.perf_counter()
        statuses, errors = one_run(Path(options.folder), options.threads, options.requests)
        seconds = time.perf_counter() - started
        total += statuses
        bad = sum(count for code, count in statuses.items() if code not in (200, 201))
        print(f"run {run + 1} ({seconds:.2f} s): {bad} of {sum(statuses.values())} not 200/201 {dict(statuses)}")
        for error, count in errors.most_common():
            print(f"    {count} x {error}")
    bad = sum(count for code, count in total.items() if code not in (200, 201))
    print(f"total: {bad} of {sum(total.values())} not 200/201 {dict(total)}", file=sys.stderr)


if __name__ == "__main__":
    main()

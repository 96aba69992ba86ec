"""The grading engine: runs each problem's graders in a child process under time limits and
turns the child's events into results. Nothing the learner's code prints or does to the
child's exit status can change a result; only the events file counts.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbook.causes import assign_causes
from workbook.manifest import GRADERS_ENV, ROOT, Problem

STARTUP_TIMEOUT_S = 30.0
BACKSTOP_GRACE_S = 3.0
POLL_S = 0.01
# Learner code must not see these: they would change how pytest runs the graders.
SCRUBBED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONWARNINGS")
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from workbook.runner import main; main(sys.argv[2:])"


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    nodeid: str


@dataclass
class CheckResult:
    id: str
    title: str
    status: str  # pass | fail | error
    message: str | None
    duration_s: float
    kind: str = ""  # what happened: pass, assertion, learner, import, timeout, exit, internal
    output: str = ""
    traceback: str = ""  # the full traceback when the learner's code raised (shown with -v)
    site: dict[str, Any] | None = None  # where the learner's code was when a check was stopped (hangs.Site)
    blocked_by: str = ""  # the earlier check that hung at the same place
    cause: str = ""  # groups results that failed for one reason (workbook.causes)


@dataclass
class ProblemResult:
    problem: Problem
    target: Path
    checks: list[CheckResult] = field(default_factory=list)
    seed: int = 0

    @property
    def passed(self) -> int:
        return sum(check.status == "pass" for check in self.checks)

    @property
    def total(self) -> int:
        return len(self.checks)

    @property
    def status(self) -> str:
        if self.checks and all(check.status == "pass" for check in self.checks):
            return "pass"
        if self.checks and all(check.status == "error" for check in self.checks):
            return "error"
        return "fail"

    @property
    def score(self) -> float:
        return sum(self.problem.weight(c.id) for c in self.checks if c.status == "pass")

    @property
    def max_score(self) -> float:
        return sum(self.problem.weight(c.id) for c in self.checks)


class GraderError(Exception):
    """The workbook's own graders are missing or unreadable."""


# --- discovering checks ---------------------------------------------------------------


def discover_checks(problem: Problem) -> list[Check]:
    """The problem's checks, read from the grader files without running them, so the list
    and its order never depend on what the learner's code does."""
    files = _grader_files(problem)
    if not files:
        raise GraderError(f"no grader files in {problem.grader_dir}")
    return [
        Check(id=_check_id(node), title=_title(node), nodeid=f"{path}::{node.name}")
        for path, _, tree in files
        for node in _test_functions(tree)
    ]


def grader_weights(problem: Problem) -> dict[str, float]:
    """Weights a grader file declares as a module-level `WEIGHTS = {"check_id": 2}`, read
    statically like the checks; the manifest's `weights` table overrides them."""
    weights: dict[str, float] = {}
    for _, _, tree in _grader_files(problem):
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "WEIGHTS" for t in node.targets):
                try:
                    declared = ast.literal_eval(node.value)
                except ValueError:
                    continue
                if isinstance(declared, dict):
                    weights.update({str(k): float(v) for k, v in declared.items()})
    return weights


def check_sources(problem: Problem) -> dict[str, str]:
    """Each check's source code by id (Exercism's results.json shows it as `test_code`)."""
    return {
        _check_id(node): ast.get_source_segment(text, node) or ""
        for _, text, tree in _grader_files(problem)
        for node in _test_functions(tree)
    }


def _grader_files(problem: Problem) -> list[tuple[Path, str, ast.Module]]:
    return [(path, *_parsed(path, path.stat().st_mtime_ns)) for path in sorted(problem.grader_dir.glob("test_*.py"))]


@functools.lru_cache(maxsize=64)
def _parsed(path: Path, mtime_ns: int) -> tuple[str, ast.Module]:
    """A grader file's text and syntax tree; one parse per file version, however many
    times a run asks (the check list, weights, sources, -k, the live count)."""
    text = path.read_text(encoding="utf-8")
    return text, ast.parse(text, filename=str(path))


def _test_functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            yield node


def _check_id(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return node.name.removeprefix("test_")


def _title(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return (ast.get_docstring(node) or _check_id(node).replace("_", " ")).strip().splitlines()[0]


def select_checks(checks: list[Check], keyword: str | None = None, only: Iterable[str] | None = None) -> list[Check]:
    """The checks whose id contains `keyword`, or whose id is in `only`."""
    if only is not None:
        wanted = set(only)
        return [check for check in checks if check.id in wanted]
    if not keyword:
        return checks
    return [check for check in checks if keyword.lower() in check.id.lower()]


# --- grading --------------------------------------------------------------------------


def grade(
    problem: Problem,
    target_root: Path,
    *,
    keyword: str | None = None,
    only: Iterable[str] | None = None,
    seed: int | None = None,
    check_timeout_s: float | None = None,
    graders: Path | None = None,
    on_check: Callable[[CheckResult], None] | None = None,
) -> ProblemResult:
    """Grade one problem of `target_root` (a folder laid out like exercises/), with the
    graders in `graders` (laid out like graders/) when given. `on_check` hears of each
    check as soon as it has a result (for a progress display)."""
    if check_timeout_s is not None:
        problem = replace(problem, check_timeout_s=check_timeout_s)
    if graders is not None:
        problem = replace(problem, graders=Path(graders).resolve())
    checks = select_checks(discover_checks(problem), keyword, only)
    problem = replace(problem, weights={**grader_weights(problem), **problem.weights})
    run_seed = seed if seed is not None else int.from_bytes(os.urandom(3), "big")
    result = ProblemResult(problem=problem, target=target_root, seed=run_seed)
    folder = target_root / problem.slug
    if not folder.is_dir():
        message = f"There is no folder {problem.slug}/ in {target_root}; copy it from the workbook's exercises/."
        result.checks = assign_causes([_errored(check, message, "import") for check in checks])
        return result
    found = _Session(problem, target_root, checks, run_seed, on_check).run()
    result.checks = assign_causes([found[check.id] for check in checks])
    return result


def grade_many(
    problems: Iterable[Problem],
    target_root: Path,
    *,
    jobs: int = 1,
    keyword: str | None = None,
    seed: int | None = None,
    on_result: Callable[[ProblemResult], None] | None = None,
    graders: Path | None = None,
    on_check: Callable[[CheckResult], None] | None = None,
) -> list[ProblemResult]:
    """Grade several problems, `jobs` at a time, reporting each in order as soon as it can."""
    problems = list(problems)
    if len(problems) > 1:
        keep_warm()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        options = dict(keyword=keyword, seed=seed, graders=graders, on_check=on_check)
        futures = [pool.submit(grade, p, target_root, **options) for p in problems]
        results = []
        for future in futures:
            results.append(future.result())
            if on_result:
                on_result(results[-1])
    return results


def _errored(check: Check, message: str, kind: str, duration: float = 0.0) -> CheckResult:
    return CheckResult(check.id, check.title, "error", message, round(duration, 4), kind)


class _Session:
    """One problem's grading: as many child processes as it takes to get every check a result."""

    def __init__(
        self,
        problem: Problem,
        target_root: Path,
        checks: list[Check],
        seed: int,
        on_check: Callable[[CheckResult], None] | None = None,
    ) -> None:
        self.problem = problem
        self.on_check = on_check
        self.target_root = target_root
        self.checks = {check.id: check for check in checks}
        self.seed = seed
        self.results: dict[str, CheckResult] = {}
        self.known_hang = ""  # JSON {site, check} of the first check that hung, for later children
        self.deadline = time.monotonic() + problem.time_limit_s

    def run(self) -> dict[str, CheckResult]:
        # The events file lives apart from the learner's working directory (under scratch).
        with (
            tempfile.TemporaryDirectory(prefix="workbook-", ignore_cleanup_errors=True) as scratch,
            tempfile.TemporaryDirectory(prefix="workbook-channel-", ignore_cleanup_errors=True) as channel,
        ):
            while self._pending() and time.monotonic() < self.deadline:
                before = len(self.results)
                self._run_child(Path(scratch), Path(channel))
                if len(self.results) == before:
                    break  # the child made no progress: do not spin
        for check_id in self._pending():
            check = self.checks[check_id]
            self.results[check_id] = _errored(check, self._not_run_message(), "not-run")
        return self.results

    def _pending(self) -> list[str]:
        return [check_id for check_id in self.checks if check_id not in self.results]

    def _not_run_message(self) -> str:
        if time.monotonic() >= self.deadline:
            return f"Not run: the time limit of {self.problem.time_limit_s:g} s for this problem ran out first."
        return "Not run: the grading process stopped before reaching this check."

    def _run_child(self, scratch: Path, channel: Path) -> None:
        pending = [self.checks[check_id] for check_id in self._pending()]
        events_path = channel / f"events-{secrets.token_hex(8)}.jsonl"
        output_path = scratch / f"output-{len(self.results)}.txt"
        events_path.touch(mode=0o600)
        # Opened before the child starts: the child unlinks the path once it has it open.
        events = open(events_path, encoding="utf-8")  # noqa: SIM115 - closed by _Watch.follow
        token = secrets.token_hex(16)
        try:
            child = _spawn(
                self.problem,
                self.target_root,
                pending,
                events_path,
                output_path,
                scratch,
                self.seed,
                token,
                self.known_hang,
            )
        except BaseException:
            events.close()
            raise
        try:
            _Watch(self, child, events, token).follow()
        finally:
            _kill(child)

    def record(self, result: CheckResult) -> None:
        if result.id in self.checks and result.id not in self.results:
            self.results[result.id] = result
            if result.site and not self.known_hang:
                self.known_hang = json.dumps({"site": result.site, "check": result.id})
            if self.on_check:
                self.on_check(result)


_fork_server: Any = None
_fork_server_lock = threading.Lock()
_warm = False


def keep_warm() -> None:
    """Grade through a warm fork server from now on (workbook/forkserver.py): worth it when
    this process grades more than one problem (--all, a class, watch); one problem alone is
    faster without it. WORKBOOK_SPAWN=subprocess or =fork-server overrides the choice."""
    global _warm
    _warm = True


def _use_fork_server() -> bool:
    choice = os.environ.get("WORKBOOK_SPAWN", "fork-server" if _warm else "subprocess")
    return os.name == "posix" and choice == "fork-server"


def _running_fork_server(env: dict[str, str]) -> Any:
    global _fork_server
    from workbook.forkserver import ForkServer

    with _fork_server_lock:
        if _fork_server is None or not _fork_server.alive:
            _fork_server = ForkServer(ROOT, env)
        return _fork_server


def _spawn(
    problem: Problem,
    target_root: Path,
    checks: list[Check],
    events_path: Path,
    output_path: Path,
    scratch: Path,
    seed: int,
    token: str,
    known_hang: str = "",
) -> Any:
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED_ENV}
    env.update(
        WORKBOOK_TARGET=str(target_root),
        WORKBOOK_SEED=str(seed),
        WORKBOOK_EVENTS_TOKEN=token,
        **{GRADERS_ENV: str(problem.grader_dir.parent)},
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONIOENCODING="utf-8",
    )
    arguments = [
        "--problem",
        problem.slug,
        "--events",
        str(events_path),
        "--check-timeout",
        str(problem.check_timeout_s),
        *(["--known-hang", known_hang] if known_hang else []),
        *(check.nodeid for check in checks),
    ]
    work_dir = scratch / "cwd"
    work_dir.mkdir(exist_ok=True)
    if _use_fork_server():
        from workbook.forkserver import ForkServerGone

        try:
            return _running_fork_server(env).fork(arguments, env, str(work_dir), str(output_path))
        except ForkServerGone:
            pass  # fall back to a fresh interpreter below
    with open(output_path, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-I", "-c", BOOT, str(ROOT), *arguments],
            cwd=work_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=(os.name == "posix"),
        )


def _kill(child: Any) -> None:
    """End the child and anything it started (a learner's app may start servers)."""
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    # The child itself too: one forked a moment ago may not lead its own group yet.
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        child.kill()
    child.wait()


class _Watch:
    """Follows one child's events, enforcing the time limits the child cannot enforce itself."""

    def __init__(self, session: _Session, child: Any, events: Any, token: str) -> None:
        self.session = session
        self.child = child
        self.events = events
        self.token = token
        self.buffer = ""
        self.phase = "startup"
        self.current: str | None = None
        self.phase_deadline = time.monotonic() + STARTUP_TIMEOUT_S
        self.phase_started = time.monotonic()

    def follow(self) -> None:
        try:
            while True:
                for event in self._new_events():
                    if self._handle(event):
                        return
                if self.child.poll() is not None:
                    for event in self._new_events():
                        if self._handle(event):
                            return
                    self._child_ended()
                    return
                if self._timed_out():
                    return
                time.sleep(POLL_S)
        finally:
            self.events.close()

    def _new_events(self) -> Iterator[dict]:
        self.buffer += self.events.read()
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            # Only lines with this child's token count; anything else was not written by us.
            if isinstance(event, dict) and secrets.compare_digest(str(event.get("token", "")), self.token):
                yield event

    def _handle(self, event: dict) -> bool:
        """Apply one event; True when this child is finished."""
        kind = event.get("event")
        now = time.monotonic()
        limit = self.session.problem.check_timeout_s
        if kind == "ready":
            self.phase = "ready"
        elif kind == "importing":
            self.phase, self.phase_started, self.phase_deadline = "import", now, now + limit + BACKSTOP_GRACE_S
        elif kind == "import" and not event.get("ok"):
            self._fail_all_pending(str(event.get("message") or "Your code could not be imported."), "import")
            return True
        elif kind == "import":
            self.phase = "checks"
        elif kind == "start" and self.phase == "checks":
            self.current = str(event.get("id"))
            self.phase, self.phase_started, self.phase_deadline = "check", now, now + limit + BACKSTOP_GRACE_S
        elif kind == "result" and self.phase == "check" and event.get("id") == self.current:
            self._record(event)
            self.current, self.phase = None, "checks"
        elif kind == "done":
            return True
        return False

    def _record(self, event: dict) -> None:
        check = self.session.checks.get(str(event.get("id")))
        if check is None:
            return
        status = event.get("status")
        if status not in ("pass", "fail", "error"):
            return
        message = event.get("message")
        self.session.record(
            CheckResult(
                id=check.id,
                title=check.title,
                status=status,
                message=str(message) if message is not None else None,
                duration_s=float(event.get("duration_s") or 0.0),
                kind=str(event.get("kind") or ""),
                output=str(event.get("output") or ""),
                traceback=str(event.get("traceback") or ""),
                site=_site(event.get("site")),
                blocked_by=str(event.get("blocked_by") or ""),
                cause=str(event.get("cause") or "")[:500],
            )
        )

    def _timed_out(self) -> bool:
        now = time.monotonic()
        if now >= self.session.deadline:
            self._fail_current("Stopped: the time limit for this problem ran out during this check.", "timeout")
            return True
        if now < self.phase_deadline or self.phase in ("ready", "checks"):
            return False
        seconds = now - self.phase_started
        if self.phase == "import":
            self._fail_all_pending(
                f"Importing your code did not finish within {seconds:.0f} s. "
                "Is there an endless loop, or a blocking call, at module level?",
                "timeout",
            )
        elif self.phase == "check":
            self._fail_current(
                f"This check did not finish within {seconds:.0f} s and was stopped: something in your "
                "code never returns and holds the interpreter (an endless loop?).",
                "timeout",
            )
        else:
            self._fail_all_pending("The grading process did not start in time; run `workbook doctor`.", "internal")
        return True

    def _child_ended(self) -> None:
        code = self.child.returncode
        if self.phase == "import":
            self._fail_all_pending(
                f"The Python process ended (exit code {code}) while importing your code. "
                "Does it call os._exit() or exit() at module level?",
                "exit",
            )
        elif self.current is not None:
            self._fail_current(
                f"The Python process ended (exit code {code}) during this check. "
                "Does your code call os._exit() or kill the process?",
                "exit",
            )
        elif self.phase == "startup":
            self._fail_all_pending(
                f"The grading process failed to start (exit code {code}); run `workbook doctor`.", "internal"
            )

    def _fail_current(self, message: str, kind: str) -> None:
        if self.current is None:
            return
        check = self.session.checks.get(self.current)
        if check is not None:
            duration = time.monotonic() - self.phase_started
            self.session.record(_errored(check, message, kind, duration))

    def _fail_all_pending(self, message: str, kind: str) -> None:
        for check_id in self.session._pending():
            self.session.record(_errored(self.session.checks[check_id], message, kind))


def _site(data: Any) -> dict[str, Any] | None:
    from workbook.hangs import Site

    site = Site.from_dict(data)
    return site.as_dict() if site is not None else None

"""The grading engine: runs each problem's graders in a child process under time limits and
turns the child's events into results. Nothing the learner's code prints or does to the
child's exit status can change a result; only the events file counts.
"""

from __future__ import annotations

import ast
import atexit
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

from workbook import sandbox
from workbook.causes import assign_causes
from workbook.manifest import GRADERS_ENV, MANIFEST_ENV, ROOT, Problem, check_id_of
from workbook.results import STARTER_STOPPED, Kind, Phase, Status, overall
from workbook.safetext import OUTPUT_LIMIT, learner_text, shown_name
from workbook.sandbox import isolation
from workbook.target import GradedTarget

STARTUP_TIMEOUT_S = 30.0
BACKSTOP_GRACE_S = 3.0
POLL_S = 0.01
SERVER_ROLE_ENV = "WORKBOOK_SERVER_ROLE"  # "trusted" or "hosts": what a fork server need not preload
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
    status: Status
    message: str | None
    duration_s: float
    kind: Kind = Kind.NONE
    output: str = ""
    traceback: str = ""  # the full traceback when the learner's code raised (shown with -v)
    site: dict[str, Any] | None = None  # where the learner's code was when a check was stopped (hangs.Site)
    blocked_by: str = ""  # the earlier check that hung at the same place
    cause: str = ""  # groups results that failed for one reason (workbook.causes)
    raised: str = ""  # "app.py line 42 raised NameError: ..." when the learner's code raised


@dataclass
class ProblemResult:
    problem: Problem
    target: Path
    checks: list[CheckResult] = field(default_factory=list)
    seed: int = 0
    isolation: str = "sandbox: none"  # which isolation graded it (workbook/sandbox.py)

    @property
    def passed(self) -> int:
        return sum(check.status == Status.PASS for check in self.checks)

    @property
    def total(self) -> int:
        return len(self.checks)

    @property
    def status(self) -> Status:
        return overall(check.status for check in self.checks)

    @property
    def score(self) -> float:
        return sum(self.problem.weight(c.id) for c in self.checks if c.status == Status.PASS)

    @property
    def max_score(self) -> float:
        return sum(self.problem.weight(c.id) for c in self.checks)


class GraderError(Exception):
    """The workbook's own graders are missing or unreadable."""


# --- stopping (Ctrl-C, SIGTERM) -------------------------------------------------------

_stopping = threading.Event()
_running: set[Any] = set()
# Re-entrant: stop_all() may run in a signal handler while the main thread holds it.
_running_lock = threading.RLock()


def stop_all() -> None:
    """Stop all grading in this process at once: no grading process starts any more, and
    each running one is killed with its process group. Safe to call from a signal handler
    (it never waits); checks that had no result end as `not-run`."""
    _stopping.set()
    with _running_lock:
        children = list(_running)
    for child in children:
        _kill_now(child)
    # A fork in progress waits for its server's answer: ending the servers ends the wait.
    for server in list(_fork_servers.values()):
        server.end("")


def stopping() -> bool:
    """True once stop_all() was called."""
    return _stopping.is_set()


def _kill_now(child: Any) -> None:
    if hasattr(child, "kill_now"):  # a fork server's grader: its pid is not one of ours
        child.kill_now()
        return
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        child.kill()


# --- discovering checks ---------------------------------------------------------------


def discover_checks(problem: Problem) -> list[Check]:
    """The problem's checks, read from the grader files without running them, so the list
    and its order never depend on what the learner's code does."""
    files = _grader_files(problem)
    if not files:
        raise GraderError(f"no grader files in {problem.grader_dir}")
    return [
        Check(id=check_id_of(node.name), title=_title(node), nodeid=f"{path}::{node.name}")
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
        check_id_of(node.name): ast.get_source_segment(text, node) or ""
        for _, text, tree in _grader_files(problem)
        for node in _test_functions(tree)
    }


def grader_files(problem: Problem) -> list[tuple[Path, str, ast.Module]]:
    """Each grader file of the problem as (path, text, syntax tree), parsed once per version."""
    return _grader_files(problem)


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


def _title(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return (ast.get_docstring(node) or check_id_of(node.name).replace("_", " ")).strip().splitlines()[0]


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
    shown_root: Path | None = None,
    parts: int = 1,
) -> ProblemResult:
    """Grade one problem of `target_root` (a folder laid out like exercises/), with the
    graders in `graders` (laid out like graders/) when given. `on_check` hears of each
    check as soon as it has a result (for a progress display), from any thread.
    `shown_root`: the submission's own folder when `target_root` is its copy
    (workbook/target.py); the sandbox mounts the copy there, so messages name the
    learner's files. `parts`: grading processes to share the checks out to, at once (a
    problem with fewer than MIN_CHECKS_PER_PART checks a part runs in one)."""
    if check_timeout_s is not None:
        problem = replace(problem, check_timeout_s=check_timeout_s)
    if graders is not None:
        problem = replace(problem, graders=Path(graders).resolve())
    checks = select_checks(discover_checks(problem), keyword, only)
    problem = replace(problem, weights={**grader_weights(problem), **problem.weights})
    run_seed = seed if seed is not None else int.from_bytes(os.urandom(3), "big")
    target = GradedTarget(target_root, shown_root or target_root)
    result = ProblemResult(problem=problem, target=target.shown, seed=run_seed, isolation=isolation().label)
    folder = target_root / problem.slug
    if not folder.is_dir():
        shown = shown_name(str(target.shown))  # a submission's folder name may not be UTF-8
        message = f"There is no folder {problem.slug}/ in {shown}; copy it from the workbook's exercises/."
        result.checks = assign_causes([_errored(check, message, Kind.IMPORT) for check in checks])
        return result
    found = _graded_in_parts(problem, target, checks, run_seed, on_check, parts)
    result.checks = assign_causes([found[check.id] for check in checks])
    return result


# Each part costs a grading process (0.3-0.5 s). With app hosts a check costs more (a fork,
# an import and a server start, ~50 ms), so two parts pay from fewer checks than before:
# problem 1 (22 checks) 1.82 s in one part, 1.63 s in two; problem 6 (29) 2.02 s -> 1.80 s
# (benchmarks/RESULTS.md).
MIN_CHECKS_PER_PART = 10


def _graded_in_parts(
    problem: Problem,
    target: GradedTarget,
    checks: list[Check],
    seed: int,
    on_check: Callable[[CheckResult], None] | None,
    parts: int,
) -> dict[str, CheckResult]:
    """Every check's result, from `parts` sessions run at once on consecutive slices of
    `checks` (consecutive, so the checks of one grader file mostly share a process and
    its module-wide fixtures, such as a real server). The data stay the same: each check
    draws its random data from the run's seed and its own name."""
    parts = max(1, min(parts, len(checks) // MIN_CHECKS_PER_PART))
    if parts == 1:
        return _Session(problem, target, checks, seed, on_check).run()
    size = -(-len(checks) // parts)  # ceiling division
    slices = [checks[start : start + size] for start in range(0, len(checks), size)]
    with ThreadPoolExecutor(max_workers=len(slices)) as pool:
        sessions = [pool.submit(_Session(problem, target, part, seed, on_check).run) for part in slices]
        return {check_id: result for session in sessions for check_id, result in session.result().items()}


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
    shown_root: Path | None = None,
) -> list[ProblemResult]:
    """Grade several problems, `jobs` at a time, reporting each in order as soon as it can.
    With fewer problems than jobs, the spare jobs grade parts of each problem at once
    (issue 14: `workbook check 4` on two cores in about half the time)."""
    problems = list(problems)
    parts = max(1, jobs // len(problems)) if problems else 1
    if len(problems) > 1:
        keep_warm()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        grade_one = functools.partial(
            grade,
            keyword=keyword,
            seed=seed,
            graders=graders,
            on_check=on_check,
            shown_root=shown_root,
            parts=parts,
        )
        futures = [pool.submit(grade_one, p, target_root) for p in problems]
        results = []
        for future in futures:
            results.append(future.result())
            if on_result:
                on_result(results[-1])
    except KeyboardInterrupt:
        # Ctrl-C: end the grading processes now instead of waiting for every problem.
        stop_all()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def _errored(check: Check, message: str, kind: Kind, duration: float = 0.0) -> CheckResult:
    return CheckResult(check.id, check.title, Status.ERROR, message, round(duration, 4), kind)


class _Session:
    """One problem's grading: as many child processes as it takes to get every check a result."""

    def __init__(
        self,
        problem: Problem,
        target: GradedTarget,
        checks: list[Check],
        seed: int,
        on_check: Callable[[CheckResult], None] | None = None,
    ) -> None:
        self.problem = problem
        self.on_check = on_check
        self.target = target
        self.checks = {check.id: check for check in checks}
        self.seed = seed
        self.results: dict[str, CheckResult] = {}
        self.known_hang = ""  # JSON {site, check} of the first check that hung, for later children
        self.server: Any = None  # the submission's fork server (app hosts, or grading processes)
        self.starter_died = False  # a check was left pending because the server died on its own
        self.starter_restarted = False
        self.deadline = time.monotonic() + problem.time_limit_s

    def run(self) -> dict[str, CheckResult]:
        hosted = self.problem.hosted
        # A hosted problem's graders run outside the sandbox, and only its app hosts inside.
        server = _running_fork_server(self.problem, self.target) if hosted or _use_fork_server() else None
        self.server = server
        if hosted and (server is None or server.interfered):
            return self._without_hosts(server)
        # A fork server's graders can only reach the scratch folder of its own sandbox.
        parent = server.scratch if server is not None and not hosted else None
        # The events file lives apart from the learner's working directory (both in scratch,
        # the one folder the sandbox may write).
        with tempfile.TemporaryDirectory(prefix="workbook-", dir=parent, ignore_cleanup_errors=True) as scratch:
            # Opened before any learner code runs in it: this process creates its files there
            # through the descriptor, never through a path the sandbox could swap for a link.
            scratch_fd = _open_folder(Path(scratch))
            try:
                while self._pending() and time.monotonic() < self.deadline and not _stopping.is_set():
                    before = len(self.results)
                    # A server the submission interfered with is ended: plain processes from then on.
                    usable = server if server is not None and not server.interfered else None
                    if hosted and usable is None:
                        self._without_hosts(server)
                        break
                    self._run_child(Path(scratch), scratch_fd, usable)
                    if self.starter_died:
                        # Once per problem: a fresh server, for the checks left without a host.
                        self.starter_died, self.starter_restarted = False, True
                        server = self.server = _running_fork_server(self.problem, self.target)
                        continue
                    if len(self.results) == before:
                        break  # the child made no progress: do not spin
            finally:
                os.close(scratch_fd)
        for check_id in self._pending():
            check = self.checks[check_id]
            self.results[check_id] = _errored(check, self._not_run_message(), Kind.NOT_RUN)
        return self.results

    def _without_hosts(self, server: Any) -> dict[str, CheckResult]:
        """Every check errored: the fork server that starts this submission's app hosts was
        attacked or stopped answering (or the engine is stopping), and no new one is started
        for it (the attack would just repeat)."""
        if _stopping.is_set():
            message = "Not run: grading was interrupted."
        else:
            reason = server.interfered if server is not None else "it was ended earlier"
            message = NO_HOSTS_MESSAGE.format(reason=reason)
        for check_id in self._pending():
            self.results[check_id] = _errored(self.checks[check_id], message, Kind.EXIT)
        return self.results

    def _pending(self) -> list[str]:
        return [check_id for check_id in self.checks if check_id not in self.results]

    def _not_run_message(self) -> str:
        if _stopping.is_set():
            return "Not run: grading was interrupted."
        if time.monotonic() >= self.deadline:
            return f"Not run: the time limit of {self.problem.time_limit_s:g} s for this problem ran out first."
        return "Not run: the grading process stopped before reaching this check."

    def _run_child(self, scratch: Path, scratch_fd: int, server: Any) -> None:
        pending = [self.checks[check_id] for check_id in self._pending()]
        events_name = f"events-{secrets.token_hex(8)}.jsonl"
        events_path = scratch / events_name
        output_path = scratch / f"output-{secrets.token_hex(8)}.txt"
        # Opened before the child starts: the child unlinks the path once it has it open.
        events = os.fdopen(create_private(scratch, events_name, scratch_fd, os.O_RDONLY), "rb")
        token = secrets.token_hex(16)
        spawn = _Spawn(self.problem, self.target, scratch, self.seed, token, scratch_fd=scratch_fd)
        try:
            child = spawn.start(pending, events_path, output_path, server, self.known_hang)
        except BaseException:
            events.close()
            raise
        with _running_lock:
            _running.add(child)
        graded_before = set(self.results)
        try:
            if _stopping.is_set():  # stop_all() ran while this child was starting
                _kill_now(child)
            _Watch(self, child, events, token).follow()
        finally:
            with _running_lock:
                _running.discard(child)
            _kill(child)
            sweep_orphans()
        ended_server = server if self.problem.hosted else getattr(child, "server", None)
        if ended_server is not None and ended_server.interfered:
            self._explain_ended_server(set(self.results) - graded_before, ended_server)

    def _lost_to_a_dead_starter(self, result: CheckResult) -> bool:
        """A check that got no app host because the submission's fork server died on its own
        (bubblewrap failing to start under a heavy load, say), not stopped or flooded by the
        submission: no verdict on the code, so it is graded again, once, with a new server."""
        server = self.server
        return (
            self.problem.hosted
            and not self.starter_restarted
            and result.kind == Kind.EXIT
            and (result.message or "").startswith(STARTER_STOPPED.split("(", 1)[0])
            and server is not None
            and not server.alive
            and not server.attacked
        )

    def _explain_ended_server(self, check_ids: set[str], server: Any) -> None:
        """Say why these checks' grading process ended: the engine ended the fork server that
        started it (ForkServer.end), attacked by the submission's code or unresponsive. Their
        failures, timeouts included, are then no verdicts on the code's answers."""
        template = INTERFERED_MESSAGE if server.attacked else UNRESPONSIVE_MESSAGE
        message = template.format(reason=server.interfered)
        for check_id in check_ids:
            result = self.results[check_id]
            if result.status != Status.PASS:
                self.results[check_id] = _errored(self.checks[check_id], message, Kind.EXIT, result.duration_s)

    def record(self, result: CheckResult) -> None:
        if self._lost_to_a_dead_starter(result):
            self.starter_died = True  # left pending: run() grades it again with a new server
            return
        if result.id in self.checks and result.id not in self.results:
            self.results[result.id] = result
            if result.site and not self.known_hang:
                self.known_hang = json.dumps({"site": result.site, "check": result.id})
            if self.on_check:
                self.on_check(result)


# The fork server (workbook/forkserver.py) is "the process that starts the grading processes"
# to a learner; {reason} is ForkServer.interfered.
INTERFERED_MESSAGE = (
    "Stopped: code of this submission interfered with the process that starts the grading "
    "processes ({reason}), so grading of this check was ended, and the rest of the submission was "
    "graded without that process. Does your code send signals to other processes (os.kill) or "
    "write to files under /proc?"
)
UNRESPONSIVE_MESSAGE = (
    "Stopped: the process that starts the grading processes stopped answering ({reason}), so "
    "grading of this check was ended. Is the machine very busy? If not, does your code send "
    "signals to other processes (os.kill) or write to files under /proc?"
)

NO_HOSTS_MESSAGE = (
    "Stopped: code of this submission interfered with the process that starts its app in the "
    "sandbox ({reason}), so this check was not graded. Does your code send signals to other "
    "processes (os.kill) or write to files under /proc?"
)


_fork_servers: dict[tuple[str, ...], Any] = {}
_fork_server_lock = threading.Lock()
_starter_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbook-sandbox-starter")
# workbook.forkserver is imported where a fork server is used: a single `workbook check`
# grades in a plain subprocess and need not load it.
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


def _running_fork_server(problem: Problem, target: GradedTarget) -> Any:
    """The warm fork server of this target: one per submission, in a sandbox of its own,
    so no two submissions ever share a process, a scratch folder or a memory image. None
    once the submission attacked its server (stopped or flooded it): no new one for it (the
    attack would just repeat), its other problems are graded in plain sandboxed processes.
    None while stopping (Ctrl-C) too."""
    from workbook.forkserver import ForkServer

    key = (str(target.root), str(target.shown), str(problem.grader_dir.parent), os.environ.get(MANIFEST_ENV, ""))
    with _fork_server_lock:
        server = _fork_servers.get(key)
        if (server is not None and server.attacked) or _stopping.is_set():
            return None
        if server is None or not server.alive:
            if server is not None:
                server.close()
            scratch = Path(tempfile.mkdtemp(prefix="workbook-server-"))
            # Short (a socket's path must fit in 108 bytes), and read-only in the sandbox:
            # the trusted graders listen there for their app hosts (workbook/hostkit.py).
            sockets = Path(tempfile.mkdtemp(prefix="wbk-", dir="/tmp" if os.path.isdir("/tmp") else None))
            spawn = _Spawn(problem, target, scratch, 0, "")
            command, env, cwd = spawn.server_command(sockets)
            if sandbox.grader_view(problem.grader_dir.parent) != [problem.grader_dir.parent]:
                env[SERVER_ROLE_ENV] = "hosts"  # every grader is hosted: no grading process runs in it
            # Started from a thread that lives as long as this process: bubblewrap's
            # --die-with-parent (PR_SET_PDEATHSIG) ends the sandbox when the *thread* that
            # started it ends, and the thread grading a part of a problem ends with the part.
            started = _starter_thread.submit(ForkServer, ROOT, env, command=command, cwd=cwd, scratch=scratch)
            server = _fork_servers[key] = started.result()
            server.sockets = sockets
        return server


_trusted_server: Any = None


def _trusted_fork_server() -> Any:
    """The warm server of trusted grading processes (hosted problems): outside any sandbox,
    since it never runs learner code, shared by every submission this process grades."""
    global _trusted_server
    from workbook.forkserver import ForkServer

    with _fork_server_lock:
        if _stopping.is_set():
            return None
        if _trusted_server is None or not _trusted_server.alive:
            scratch = Path(tempfile.mkdtemp(prefix="workbook-trusted-"))
            env = sandbox.allowed_environment(dict(os.environ), scratch)
            env[SERVER_ROLE_ENV] = "trusted"
            _trusted_server = ForkServer(ROOT, env, scratch=scratch)
        return _trusted_server


def release(target_root: Path) -> None:
    """Stop the fork servers of `target_root` (a submission is graded): its sandbox goes."""
    with _fork_server_lock:
        keys = [key for key in _fork_servers if key[0] == str(target_root)]
        servers = [_fork_servers.pop(key) for key in keys]
    for server in servers:
        server.close()


@atexit.register
def release_all() -> None:
    """End every fork server and remove its scratch folder (at exit, and by interrupts)."""
    global _trusted_server
    with _fork_server_lock:
        servers = list(_fork_servers.values())
        _fork_servers.clear()
        if _trusted_server is not None:
            servers.append(_trusted_server)
            _trusted_server = None
    for server in servers:
        server.close()


class _Spawn:
    """How one grading process of `target` starts: its command (in the sandbox when there is
    one), its reduced environment and its working directory."""

    def __init__(
        self,
        problem: Problem,
        target: GradedTarget,
        scratch: Path,
        seed: int,
        token: str,
        scratch_fd: int | None = None,
    ) -> None:
        self.scratch_fd = scratch_fd  # set where grading processes start: see create_private
        self.problem = problem
        self.target = target
        self.scratch = scratch
        self.seed = seed
        self.token = token
        self.sandboxed = isolation().active

    def environment(self) -> dict[str, str]:
        # In the sandbox the copy is mounted at the submission's own path.
        root = self.target.shown if self.sandboxed else self.target.root
        env = sandbox.allowed_environment(dict(os.environ), self.scratch)
        env.update(
            WORKBOOK_TARGET=str(root),
            WORKBOOK_EVENTS_TOKEN=self.token,
            **{GRADERS_ENV: str(self.problem.grader_dir.parent)},
            PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONIOENCODING="utf-8",
        )
        return env

    def command(self, arguments: Iterable[str]) -> tuple[list[str], dict[str, str], Path]:
        """(argv, env, cwd) of a grading process that sees this problem's folder only."""
        argv = [sys.executable, "-I", "-c", BOOT, str(ROOT), *arguments]
        return self._sandboxed(argv, [self.target.root / self.problem.slug])

    def server_command(self, sockets: Path | None = None) -> tuple[list[str], dict[str, str], Path]:
        """(argv, env, cwd) of a fork server that grades every problem of the target, and
        forks its app hosts, which connect to the trusted graders in `sockets`."""
        from workbook.forkserver import BOOT as SERVER_BOOT

        argv = [sys.executable, "-I", "-c", SERVER_BOOT, str(ROOT)]
        return self._sandboxed(argv, [self.target.root], [sockets] if sockets else [])

    def _sandboxed(
        self, argv: list[str], folders: list[Path], extra: list[Path] | None = None
    ) -> tuple[list[str], dict[str, str], Path]:
        work_dir = self.scratch / "cwd"
        work_dir.mkdir(exist_ok=True)
        mounts = [(folder, self.target.shown / folder.relative_to(self.target.root)) for folder in folders]
        visible = [*sandbox.workbook_folders(self.problem.grader_dir.parent), *(extra or [])]
        wrapped = sandbox.wrap(argv, self.scratch, visible, mounts=mounts, cwd=work_dir)
        return wrapped, self.environment(), work_dir

    def start(
        self, checks: list[Check], events_path: Path, output_path: Path, server: Any, known_hang: str = ""
    ) -> Any:
        arguments = [
            "--problem",
            self.problem.slug,
            "--events",
            str(events_path),
            "--check-timeout",
            str(self.problem.check_timeout_s),
            "--seed",
            str(self.seed),
            *(["--known-hang", known_hang] if known_hang else []),
            *(check.nodeid for check in checks),
        ]
        if not self.sandboxed:
            _adopt_orphans()
        if self.problem.hosted:
            return self._start_trusted(arguments, server, output_path)
        if server is not None:
            from workbook.forkserver import ForkServerGone

            try:
                work_dir = self.scratch / "cwd"
                work_dir.mkdir(exist_ok=True)
                return server.fork(arguments, self.environment(), str(work_dir), str(output_path))
            except ForkServerGone:
                pass  # fall back to a fresh interpreter below
        command, env, work_dir = self.command(arguments)
        return self._popen(command, env, work_dir)

    def _popen(self, argv: list[str], env: dict[str, str], work_dir: Path) -> subprocess.Popen[bytes]:
        """A grading process in a fresh interpreter, its output in a new private file of scratch."""
        name = f"output-{secrets.token_hex(8)}.txt"
        output_fd = create_private(self.scratch, name, self.scratch_fd, os.O_WRONLY | os.O_APPEND)
        with os.fdopen(output_fd, "ab") as output:
            child = subprocess.Popen(
                argv,
                cwd=work_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                **sandbox.popen_options(cpu_seconds=_cpu_seconds(self.problem)),
            )
        _children.add(child.pid)
        return child

    def _start_trusted(self, arguments: list[str], server: Any, output_path: Path) -> Any:
        """The grading process of a hosted problem: outside the sandbox, with no learner
        code in it; it asks `server` for app hosts on its named pipe. Forked from a warm
        server of trusted grading processes where one is kept (`keep_warm`)."""
        env = self.environment()
        env.update(
            WORKBOOK_TARGET=str(self.target.root),
            WORKBOOK_HOST_TARGET=str(self.target.shown if self.sandboxed else self.target.root),
            WORKBOOK_HOST_SOCKETS=str(server.sockets),
            WORKBOOK_HOST_REQUESTS=str(server.host_requests),
        )
        work_dir = self.scratch / "cwd"
        work_dir.mkdir(exist_ok=True)
        trusted = _trusted_fork_server() if _use_fork_server() else None
        if trusted is not None:
            from workbook.forkserver import ForkServerGone

            with contextlib.suppress(ForkServerGone):
                return trusted.fork(arguments, env, str(work_dir), str(output_path))
        return self._popen([sys.executable, "-I", "-c", BOOT, str(ROOT), *arguments], env, work_dir)


def _open_folder(folder: Path) -> int:
    return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))


def create_private(folder: Path, name: str, folder_fd: int | None, mode: int) -> int:
    """Create the new file `name` (mode 0600) in `folder`, open as `folder_fd` where the
    platform allows, and return its descriptor, opened with `mode`. Never through a link:
    the sandbox may write that folder, so a submission may have left a link of that name,
    or swapped a sub-folder for one, to make this (possibly root) process create or append
    to a file elsewhere. Raises OSError when the name exists."""
    flags = mode | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if folder_fd is not None and os.open in os.supports_dir_fd:
        return os.open(name, flags, 0o600, dir_fd=folder_fd)
    return os.open(folder / name, flags, 0o600)


def _cpu_seconds(problem: Problem) -> int:
    return int(problem.time_limit_s) + 30


# Grading processes this engine started and has not yet ended: anything else that the
# subreaper adopts is a learner's escaped descendant (workbook/sandbox.py, the fallback).
_children: set[int] = set()
_subreaper = False


def _adopt_orphans() -> None:
    """Become a child subreaper (Linux), once, the first time a grading process runs
    without the sandbox: from then on its escaped descendants become ours to end."""
    global _subreaper
    if not _subreaper:
        _subreaper = sandbox.become_subreaper()


def sweep_orphans() -> None:
    """Kill the learner's processes that escaped their group (`start_new_session=True`) and
    were adopted by this process, the subreaper. Only needed without the sandbox, where no
    PID namespace ends them."""
    if not _subreaper or isolation().active:
        return
    servers = [*_fork_servers.values(), *([_trusted_server] if _trusted_server is not None else [])]
    # The warm server of trusted grading processes is this process's own child too: ending
    # it as an orphan took the grading processes it had forked (a neighbour's checks) with it.
    known = _children | {server.process.pid for server in servers}
    for pid in sandbox.adopted_children(known):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def _kill(child: Any) -> None:
    """End the child and anything it started (a learner's app may start servers). A fork
    server's grader is ended by its server: its pid is one of the sandbox's namespace."""
    if os.name == "posix" and isinstance(child, subprocess.Popen):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    # The child itself too: one forked a moment ago may not lead its own group yet.
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        child.kill()
    child.wait()
    _children.discard(child.pid)


class _Watch:
    """Follows one child's events, enforcing the time limits the child cannot enforce itself."""

    def __init__(self, session: _Session, child: Any, events: Any, token: str) -> None:
        self.session = session
        self.child = child
        self.events = events
        self.token = token
        self.channel = BoundedChannel(events)
        self.phase = Phase.STARTUP
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
                if self.channel.exhausted:
                    self._channel_flooded()
                    return
                if self._timed_out():
                    return
                time.sleep(POLL_S)
        finally:
            self.events.close()

    def _new_events(self) -> Iterator[dict]:
        for line in self.channel.lines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            # Only lines with this child's token count; anything else was not written by us.
            if isinstance(event, dict) and secrets.compare_digest(str(event.get("token", "")), self.token):
                yield event

    def _channel_flooded(self) -> None:
        text = (
            f"The grading process wrote more than {MAX_CHANNEL_BYTES // 2**20} MiB of results and was stopped; "
            "does your code write to files it did not create?"
        )
        self._fail_current(text, Kind.EXIT)
        self._fail_all_pending(text, Kind.EXIT)

    def _handle(self, event: dict) -> bool:
        """Apply one event; True when this child is finished."""
        kind = event.get("event")
        now = time.monotonic()
        limit = self.session.problem.check_timeout_s
        if kind == "ready":
            self.phase = Phase.READY
        elif kind == "importing":
            self.phase, self.phase_started, self.phase_deadline = Phase.IMPORT, now, now + limit + BACKSTOP_GRACE_S
        elif kind == "import" and not event.get("ok"):
            message = learner_text(event.get("message") or "Your code could not be imported.")
            self._fail_all_pending(message, Kind.IMPORT)
            return True
        elif kind == "import":
            self.phase = Phase.CHECKS
        elif kind == "start" and self.phase == Phase.CHECKS:
            self.current = str(event.get("id"))
            self.phase, self.phase_started, self.phase_deadline = Phase.CHECK, now, now + limit + BACKSTOP_GRACE_S
        elif kind == "result" and self.phase == Phase.CHECK and event.get("id") == self.current:
            self._record(event)
            self.current, self.phase = None, Phase.CHECKS
        elif kind == "done":
            return True
        return False

    def _record(self, event: dict) -> None:
        check = self.session.checks.get(str(event.get("id")))
        if check is None:
            return
        status = Status.parse(event.get("status"))
        if status is None or status not in Status.graded():
            return
        message = event.get("message")
        self.session.record(
            CheckResult(
                id=check.id,
                title=check.title,
                status=status,
                # Learner strings enter the workbook here: valid UTF-8 and capped from now on.
                message=learner_text(message) if message is not None else None,
                duration_s=_seconds(event.get("duration_s")),
                kind=Kind.parse(event.get("kind")),
                output=learner_text(event.get("output") or "", OUTPUT_LIMIT),
                traceback=learner_text(event.get("traceback") or ""),
                site=_site(event.get("site")),
                blocked_by=learner_text(event.get("blocked_by") or "", 200),
                cause=learner_text(event.get("cause") or "", 500),
                raised=learner_text(event.get("raised") or "", 300),
            )
        )

    def _timed_out(self) -> bool:
        now = time.monotonic()
        if now >= self.session.deadline:
            self._fail_current("Stopped: the time limit for this problem ran out during this check.", Kind.TIMEOUT)
            return True
        if now < self.phase_deadline or self.phase.unlimited:
            return False
        seconds = now - self.phase_started
        if self.phase == Phase.IMPORT:
            self._fail_all_pending(
                f"Importing your code did not finish within {seconds:.0f} s. "
                "Is there an endless loop, or a blocking call, at module level?",
                Kind.TIMEOUT,
            )
        elif self.phase == Phase.CHECK:
            self._fail_current(
                f"This check did not finish within {seconds:.0f} s and was stopped: something in your "
                "code never returns and holds the interpreter (an endless loop?).",
                Kind.TIMEOUT,
            )
        else:
            self._fail_all_pending("The grading process did not start in time; run `workbook doctor`.", Kind.INTERNAL)
        return True

    def _child_ended(self) -> None:
        code = self.child.returncode
        if self.phase == Phase.IMPORT:
            self._fail_all_pending(
                f"The Python process ended (exit code {code}) while importing your code. "
                "Does it call os._exit() or exit() at module level?",
                Kind.EXIT,
            )
        elif self.current is not None:
            self._fail_current(
                f"The Python process ended (exit code {code}) during this check. "
                "Does your code call os._exit() or kill the process?",
                Kind.EXIT,
            )
        elif self.phase == Phase.STARTUP:
            self._fail_all_pending(
                f"The grading process failed to start (exit code {code}); run `workbook doctor`.", Kind.INTERNAL
            )

    def _fail_current(self, message: str, kind: Kind) -> None:
        if self.current is None:
            return
        check = self.session.checks.get(self.current)
        if check is not None:
            duration = time.monotonic() - self.phase_started
            self.session.record(_errored(check, message, kind, duration))

    def _fail_all_pending(self, message: str, kind: Kind) -> None:
        for check_id in self.session._pending():
            self.session.record(_errored(self.session.checks[check_id], message, kind))


# --- reading the channel (issue 11, item 4) ------------------------------------------------

# The runner's largest event is a message plus 2,000 characters of output and 8,000 of
# traceback, JSON-escaped (up to 6 bytes a character); anything longer is not ours.
MAX_EVENT_BYTES = 256 * 1024
# All the events of one grading process: 42 checks of problem 4 need well under 1 MiB.
MAX_CHANNEL_BYTES = 16 * 2**20
# Bytes taken from the channel per poll: a writer faster than us cannot hold the loop.
READ_CHUNK_BYTES = 256 * 1024


class BoundedChannel:
    """Complete lines of an events file, read in bounded chunks. A line longer than
    MAX_EVENT_BYTES is dropped whole (its bytes are skipped, never kept), and reading stops
    once MAX_CHANNEL_BYTES came: `exhausted` then says so. Undecodable bytes become U+FFFD."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pending = b""
        self.skipping = False  # inside a line that was too long, until its newline
        self.total = 0

    @property
    def exhausted(self) -> bool:
        return self.total >= MAX_CHANNEL_BYTES

    def lines(self) -> Iterator[str]:
        if self.exhausted:
            return
        chunk = self.stream.read(min(READ_CHUNK_BYTES, MAX_CHANNEL_BYTES - self.total)) or b""
        self.total += len(chunk)
        *complete, rest = (self.pending + chunk).split(b"\n")
        for line in complete:
            if self.skipping:
                self.skipping = False  # this newline ends the oversized line
                continue
            if len(line) <= MAX_EVENT_BYTES:
                yield line.decode("utf-8", errors="replace")
        self.pending = rest
        if len(self.pending) > MAX_EVENT_BYTES:
            self.pending, self.skipping = b"", True


def _seconds(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return round(seconds, 4) if 0.0 <= seconds < 1e6 else 0.0


def _site(data: Any) -> dict[str, Any] | None:
    from workbook.hangs import Site  # lazy: hangs imports asyncio, which the CLI's start-up need not pay

    site = Site.from_dict(data)
    return site.as_dict() if site is not None else None

"""What graders use: the learner's module, a client that remembers what it sent, and
failures phrased as sentences a learner can act on.

This module is also a pytest plugin (``graders/conftest.py`` loads it), so a grader
runs the same way under ``workbook check`` and under bare ``pytest``.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TypeVar

import pytest

from workbook.manifest import ROOT, Problem, load_manifest

TARGET_ENV = "WORKBOOK_TARGET"
SEED_ENV = "WORKBOOK_SEED"
MAX_BODY_CHARS = 300
MAX_MESSAGE_CHARS = 2500

T = TypeVar("T")


class CheckFailed(AssertionError):
    """The learner's code behaved differently from the problem statement."""


class LearnerImportError(Exception):
    """The learner's code could not be imported; the message says why, in learner terms."""


class CheckTimeout(Exception):
    """Something the grader waited for did not happen in time; `site` is where the learner's
    code was then (a workbook.hangs.Site, or None), `blocked_by` the earlier check that hung
    at the same place."""

    def __init__(self, message: str, *, site: Any = None, blocked_by: str | None = None) -> None:
        super().__init__(message)
        self.site = site
        self.blocked_by = blocked_by


# The runner restarts the grading process after a check that left a thread stuck in
# learner code, so the next check starts clean.
state: dict[str, Any] = {
    "last_sent": None,
    "tainted": False,
    "problem_dir": None,
    "waited_site": None,
    "check_id": "",
    "first_stuck": None,  # (hangs.Site, check id): where this run first found the learner's code stuck
}


def seed() -> int:
    """The seed for this run's random test data (set WORKBOOK_SEED to replay a run)."""
    if SEED_ENV not in os.environ:
        os.environ[SEED_ENV] = str(random.SystemRandom().randrange(1, 10**6))
    return int(os.environ[SEED_ENV])


rng = random.Random(seed())


def target_root() -> Path:
    """The folder being graded: laid out like exercises/ (one sub-folder per problem)."""
    return Path(os.environ.get(TARGET_ENV) or ROOT / "exercises").resolve()


# --- loading the learner's code -------------------------------------------------------


def import_learner(problem: Problem) -> ModuleType:
    """Import the learner's module afresh, so no state leaks from one check to the next."""
    folder = target_root() / problem.slug
    if not folder.is_dir():
        raise LearnerImportError(f"There is no folder {problem.slug}/ in {folder.parent}.")
    _forget_modules(problem.module.split(".")[0], folder)
    _put_first_on_path(folder)
    state["problem_dir"] = folder
    try:
        module = importlib.import_module(problem.module)
    except SyntaxError as exc:
        raise LearnerImportError(_describe_syntax_error(exc, folder)) from None
    except BaseException as exc:  # noqa: BLE001 - learner code may raise anything, even SystemExit
        raise LearnerImportError(_describe_import_exception(exc, folder)) from None
    if not hasattr(module, "app"):
        raise LearnerImportError(
            f"{_relative_module_file(problem)} defines no `app`. Keep the line `app = FastAPI(...)` at module level."
        )
    return module


def _forget_modules(root_name: str, folder: Path) -> None:
    # A plain prefix test: the learner's modules were imported from str(folder) itself, and
    # resolving the path of every module in sys.modules would cost ~25 ms per check.
    prefix = str(folder) + os.sep
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if name == root_name or name.startswith(root_name + ".") or file.startswith(prefix):
            del sys.modules[name]
    importlib.invalidate_caches()


def cheap_password_hashing() -> None:
    """Make bcrypt as cheap as it allows (cost 4) for the whole grading run.

    Problems hash their seed users at import, and each check imports afresh; at bcrypt's
    default cost (12, ~0.25 s a hash) that alone would blow the time budget. The hashes
    stay real bcrypt hashes that verify, only cheaper.
    """
    try:
        import bcrypt
        from passlib.handlers.bcrypt import bcrypt as passlib_bcrypt
    except ImportError:  # pragma: no cover - both are dependencies of the workbook
        return
    passlib_bcrypt.default_rounds = passlib_bcrypt.min_rounds
    if not getattr(bcrypt.gensalt, "workbook_cheap", False):
        original = bcrypt.gensalt

        def gensalt(rounds: int = 4, prefix: bytes = b"2b") -> bytes:
            return original(rounds=rounds, prefix=prefix)

        gensalt.workbook_cheap = True  # type: ignore[attr-defined]
        bcrypt.gensalt = gensalt


def _put_first_on_path(folder: Path) -> None:
    previous = state.get("problem_dir")
    if previous is not None and str(previous) in sys.path:
        sys.path.remove(str(previous))
    sys.path.insert(0, str(folder))


def _relative_module_file(problem: Problem) -> str:
    return problem.module.replace(".", "/") + ".py"


def is_under(file: str, folder: Path) -> bool:
    if not file:
        return False
    try:
        Path(file).resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def _describe_syntax_error(exc: SyntaxError, folder: Path) -> str:
    where = _short_path(exc.filename or "?", folder)
    code = (exc.text or "").rstrip()
    lines = [f"Python cannot read {where}, line {exc.lineno}: {exc.msg}."]
    if code:
        lines.append(f"    {code.strip()}")
    return "\n".join(lines)


def _describe_import_exception(exc: BaseException, folder: Path) -> str:
    if isinstance(exc, SystemExit):
        return f"Importing your code called sys.exit({exc.code!r}); a module must not exit when imported."
    if isinstance(exc, KeyboardInterrupt):
        return "Importing your code raised KeyboardInterrupt."
    frames = learner_frames(exc, folder)
    head = f"Importing your code raised {type(exc).__name__}: {exc}"
    return head + ("\n" + frames if frames else "")


def learner_frames(exc: BaseException, folder: Path | None = None) -> str:
    """The traceback of `exc` trimmed to the frames in the learner's files."""
    folder = folder or state.get("problem_dir")
    if folder is None:
        return ""
    lines = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if is_under(frame.filename, folder):
            lines.append(f"  {_short_path(frame.filename, folder)}, line {frame.lineno}, in {frame.name}")
            if frame.line:
                lines.append(f"    {frame.line.strip()}")
    return "\n".join(lines[-12:])


def _short_path(filename: str, folder: Path) -> str:
    try:
        return f"{folder.name}/{Path(filename).resolve().relative_to(folder)}"
    except ValueError:
        return filename


# --- talking to the learner's app -----------------------------------------------------


def client(app: Any, *, raise_server_exceptions: bool = True, **kwargs: Any) -> Any:
    """A TestClient that remembers the last request, so failures can say what was sent."""
    from fastapi.testclient import TestClient

    test_client = TestClient(app, raise_server_exceptions=raise_server_exceptions, **kwargs)
    test_client.event_hooks = {"request": [_remember_request], "response": []}
    return test_client


def _remember_request(request: Any) -> None:
    state["last_sent"] = describe_request(request)


def describe_request(request: Any) -> str:
    url = request.url
    target = url.path + (f"?{url.query.decode()}" if url.query else "")
    websocket = request.headers.get("upgrade", "").lower() == "websocket"
    text = f"WebSocket {target}" if websocket else f"{request.method} {target}"
    shown = [f"{name}: {_abbreviate(value)}" for name, value in request.headers.items() if _worth_showing(name)]
    if shown:
        text += " with header " + ", ".join(shown)
    body = _request_body(request)
    if body:
        text += f" and body {body}" if shown else f" with body {body}"
    return text


def _worth_showing(header: str) -> bool:
    header = header.lower()
    return header == "authorization" or (header.startswith("x-") and not header.startswith("x-workbook"))


def _abbreviate(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _request_body(request: Any) -> str:
    try:
        content = request.content
    except Exception:  # noqa: BLE001 - a streamed body cannot be shown; say nothing about it
        return ""
    if not content:
        return ""
    return clip(content.decode("utf-8", "replace"))


def last_sent() -> str | None:
    return state["last_sent"]


def clip(text: str, limit: int = MAX_BODY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(value: Any) -> str:
    """A value as the learner would see it on the wire: compact JSON."""
    try:
        return clip(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError):
        return clip(repr(value))


def response_text(response: Any) -> str:
    body = response.text
    return (
        f"status {response.status_code} with body {clip(body)}"
        if body
        else f"status {response.status_code} with an empty body"
    )


# --- failing with a sentence ----------------------------------------------------------


def fail(what: str, *, expected: str | None = None, got: str | None = None, sent: str | None = None) -> NoReturn:
    """Fail the check: what went wrong, what was sent, what was expected, what came back.
    Internal temporary paths are shown as `<tmp>/...` (learner_visible)."""
    lines = [what]
    if sent:
        lines.append(f"  sent:     {sent}")
    if expected is not None:
        lines.append(f"  expected: {expected}")
    if got is not None:
        lines.append(f"  got:      {got}")
    if state.get("waited_site") is not None:
        # A bounded wait of this check expired: where the learner's code was is the lead to follow.
        lines.append(f"  where:    {state['waited_site'].describe()}")
    raise CheckFailed(clip(learner_visible("\n".join(lines)), MAX_MESSAGE_CHARS))


# pytest's per-check folders and the engine's scratch folders: where they are is noise to a learner.
_TEMP_PATH = re.compile(
    r"(?:/private)?"
    + re.escape(tempfile.gettempdir().rstrip(os.sep))
    + r"/(?:pytest-of-[^/\s]+/pytest-\d+/[^/\s\"']+|workbook-[^/\s\"']+)"
)


def learner_visible(text: str) -> str:
    """`text` with internal temporary folders replaced by `<tmp>` (issue 14, item 3)."""
    return _TEMP_PATH.sub("<tmp>", text)


def expect(condition: bool, what: str, **details: str) -> None:
    if not condition:
        fail(what, **details)


REFUSALS = frozenset({401, 403})


def status_mismatch(actual: int, allowed: set[int]) -> str:
    """What differed, worded by its direction: a refusal that should not have happened is
    called a refusal, and so is one that should have."""
    wanted = " or ".join(str(code) for code in sorted(allowed))
    if actual in REFUSALS and not allowed & REFUSALS:
        return f"refused with status {actual}, expected {wanted}"
    if allowed <= REFUSALS and 200 <= actual < 300:
        return f"admitted with status {actual}, expected a refusal with {wanted}"
    return f"status {actual}, expected {wanted}"


def expect_status(response: Any, status: int | Iterable[int], what: str | None = None) -> None:
    allowed = {status} if isinstance(status, int) else set(status)
    if response.status_code in allowed:
        return
    wanted = " or ".join(str(code) for code in sorted(allowed))
    mismatch = status_mismatch(response.status_code, allowed)
    fail(
        f"{mismatch}. {what}" if what else f"{mismatch}.",
        sent=describe_request(response.request),
        expected=f"status {wanted}",
        got=response_text(response),
    )


def json_body(response: Any, what: str | None = None) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "") or "no content type"
        fail(
            f"the body is not JSON ({clip(kind, 60)}), expected a JSON body." + (f" {what}" if what else ""),
            sent=describe_request(response.request),
            expected="a JSON body",
            got=response_text(response),
        )


def expect_json(response: Any, expected: Any, what: str | None = None) -> Any:
    body = json_body(response, what)
    if body != expected:
        difference = first_difference(expected, body)
        fail(
            f"{difference}." + (f" {what}" if what else ""),
            sent=describe_request(response.request),
            expected=show(expected),
            got=show(body),
        )
    return body


def first_difference(expected: Any, got: Any, where: str = "body") -> str:
    """The first place two JSON values differ, in words: "body["title"] is "a", expected "b"."."""
    if isinstance(expected, dict) and isinstance(got, dict):
        missing = [key for key in expected if key not in got]
        if missing:
            return f"{where} lacks the key {show(missing[0])}"
        extra = [key for key in got if key not in expected]
        if extra:
            return f"{where} has the unexpected key {show(extra[0])}"
        for key in expected:
            if expected[key] != got[key]:
                return first_difference(expected[key], got[key], f"{where}[{show(key)}]")
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return f"{where} has {len(got)} items, expected {len(expected)}"
        for index, (wanted, found) in enumerate(zip(expected, got, strict=True)):
            if wanted != found:
                return first_difference(wanted, found, f"{where}[{index}]")
    return f"{where} is {clip(show(got), 80)}, expected {clip(show(expected), 80)}"


def within(seconds: float, action: Callable[[], T], what: str) -> T:
    """Run `action` but give up after `seconds`: a learner's server may never answer.

    Once a wait in this run has expired (the app has shown that it does not answer), later
    waits get a deadline derived from how fast the app answered so far (`WaitHistory`), so
    an event many checks wait for costs the full wait once, not once per check."""
    from workbook import hangs

    waits: WaitHistory = state["waits"]
    limit = waits.deadline(seconds)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="workbook-within")
    started = time.monotonic()
    worker.start()
    sampler = hangs.Sampler(state.get("problem_dir"))
    blocked = _join_unless_blocked(worker, started + limit, sampler)
    if worker.is_alive():
        waits.expired()
        site = blocked[0] if blocked else sampler.any_site({threading.get_ident()})
        # Only a thread left running the learner's code needs a fresh process for the next check.
        if site is not None and not hangs.stop_stuck_threads(sampler, {threading.get_ident()}):
            state["tainted"] = True
        where = f"; {site.describe()}" if site is not None else ""
        state["waited_site"] = site
        if site is not None:
            note_stuck(site, state["check_id"])
        state["wait_expired"] = True
        if blocked:
            seconds = time.monotonic() - started
            raise CheckTimeout(
                f"no answer after {seconds:.2f} s: {what}; stuck at the same place as check {blocked[1]}{where}.",
                site=site,
                blocked_by=blocked[1],
            )
        raise CheckTimeout(f"no answer within {limit:.2g} s: {what}{where}.", site=site)
    waits.answered(time.monotonic() - started)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _join_unless_blocked(worker: threading.Thread, deadline: float, sampler: Any) -> tuple[Any, str] | None:
    """Wait for `worker` until `deadline`. Once this run found the learner's code stuck
    (`note_stuck`), sample where it is meanwhile: held at that same place for
    hangs.BLOCKED_S, the wait is over, and this returns (the site, the check that first
    found it). None when the worker finished or the deadline passed."""
    from workbook import hangs

    known = state.get("first_stuck")
    if known is None:
        worker.join(max(0.0, deadline - time.monotonic()))
        return None
    # Threads in the learner's code before this check began are not this wait's (one blocked
    # for good in an earlier check, say in time.sleep(3600), stays where it hung).
    ignore = {threading.get_ident(), worker.ident or 0, *state.get("threads_before", ())}
    since: float | None = None
    while worker.is_alive():
        now = time.monotonic()
        if now >= deadline:
            return None
        worker.join(min(hangs.KNOWN_POLL_S, deadline - now))
        site = sampler.any_site(ignore)
        if site is None or site.key != known[0].key:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= hangs.BLOCKED_S:
            return site, known[1]
    return None


def _threads_in_learner_code() -> set[int]:
    from workbook import hangs

    return set(hangs.Sampler(state.get("problem_dir")).threads(set()))


def note_stuck(site: Any, check_id: str) -> None:
    """Remember the first place this run found the learner's code stuck (a hang, or a bounded
    wait that expired while their code waited there): `expect_not_stuck` reports later
    real-server checks as blocked by it."""
    if state.get("first_stuck") is None and site is not None:
        state["first_stuck"] = (site, check_id)


def expect_not_stuck(what: str) -> None:
    """Call at the start of a check that needs answers from the whole app, say over a real
    uvicorn server (which the grading process cannot sample for hangs): when an earlier check
    of this run found the learner's code stuck, this check would only wait at the same place,
    so it is reported as blocked by that check at once (issue 14, item 1). `what` says what
    the check would have done ("serve your app with uvicorn and chat over real sockets")."""
    known = state.get("first_stuck")
    if known is None:
        return
    site, check_id = known
    raise CheckTimeout(
        f"Not tried: check {check_id} already found your code stuck ({site.describe()}). This check "
        f"would {what}, and wait at the same place. Fix that first.",
        site=site,
        blocked_by=check_id,
    )


def real_wait(seconds: float, floor: float = 1.0) -> float:
    """How long a wait over real sockets may take: the grader's `seconds` while every bounded
    wait of this run was answered, else a deadline derived from how fast the app answered in
    process (at least `floor`: a real server adds its own latency)."""
    waits: WaitHistory = state["waits"]
    return seconds if not waits.any_expired else min(seconds, max(floor, waits.deadline(seconds)))


class WaitHistory:
    """How fast the app answered bounded waits in this grading process.

    Before any wait expired, every wait gets the grader's full time, so a correct solution
    never meets a shortened deadline. After one expired, a wait gets FACTOR times the
    slowest answer seen (at least FLOOR_S, at most the grader's time)."""

    FACTOR = 10.0
    FLOOR_S = 0.15  # ~50x an in-process answer (1-3 ms); FACTOR covers a slower machine

    def __init__(self) -> None:
        self.slowest = 0.0
        self.any_expired = False

    def deadline(self, seconds: float) -> float:
        if not self.any_expired:
            return seconds
        return min(seconds, max(self.FLOOR_S, self.FACTOR * self.slowest))

    def answered(self, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)

    def expired(self) -> None:
        self.any_expired = True


state["waits"] = WaitHistory()


# --- watching SQLite ------------------------------------------------------------------


REAL_SQLITE_CONNECT = sqlite3.connect


class TrackedConnection(sqlite3.Connection):
    """A real SQLite connection that remembers whether close() was called."""

    was_closed = False

    def close(self) -> None:
        self.was_closed = True
        super().close()


@pytest.fixture
def sqlite_connections(monkeypatch: pytest.MonkeyPatch) -> list[TrackedConnection]:
    """Every connection the learner's code opens with sqlite3.connect, in order. Request it
    from `before_import`, so even `from sqlite3 import connect` is seen; the grader's own
    queries use REAL_SQLITE_CONNECT and are not counted."""
    connections: list[TrackedConnection] = []

    def spy_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", TrackedConnection)
        connection = REAL_SQLITE_CONNECT(*args, **kwargs)
        connections.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", spy_connect)
    return connections


# --- the pytest side ------------------------------------------------------------------


@pytest.fixture
def problem(request: pytest.FixtureRequest) -> Problem:
    """The manifest entry of the problem whose grader folder holds the requesting test."""
    return load_manifest().by_slug(Path(str(request.path)).parent.name)


@pytest.fixture
def before_import() -> None:
    """Override in a grader to prepare the world (patch, set the environment) before the
    learner's module is imported."""


@pytest.fixture
def learner(problem: Problem, before_import: None) -> ModuleType:
    """The learner's module for this problem, imported afresh for this check."""
    return import_learner(problem)


@pytest.fixture(autouse=True)
def fresh_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each check runs in an empty working directory: relative paths the learner's code
    writes to never leak from one check into the next."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def pytest_configure(config: pytest.Config) -> None:
    cheap_password_hashing()


def pytest_runtest_setup(item: pytest.Item) -> None:
    state["last_sent"] = None
    state["waited_site"] = None
    state["wait_expired"] = False
    state["check_id"] = item.name.removeprefix("test_")
    state["threads_before"] = _threads_in_learner_code() if state.get("first_stuck") else set()
    # Each check draws its own stream from the run's seed, so `-k ID --seed S` replays the
    # same data as the full run did.
    rng.seed(f"{seed()}:{item.name}")


# --- a real server --------------------------------------------------------------------


class Server:
    """A learner's app served by a real uvicorn process on a loopback port."""

    def __init__(self, process: Any, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self, limit: int = 1500) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """One SIGTERM (a second would skip the lifespan shutdown), then wait; returns the
        exit code, or None when it had to be killed."""
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if os.name == "posix" else signal.CTRL_BREAK_EVENT)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode

    def kill(self) -> None:
        """End it at once: for a check that already has its verdict, or one that does not
        look at how the server stops (a stuck app would make a graceful stop wait)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


# Booting uvicorn (interpreter, imports, the learner's module) is slow only on a loaded
# machine, so it gets a generous bound; the learner's own lifespan startup gets a short one.
SERVER_BOOT_TIMEOUT_S = 12.0
STARTUP_MARK = "Waiting for application startup."
STARTUP_FLOOR_S = 1.0


def serve(problem: Problem, *, env: dict[str, str] | None = None, ready_timeout: float = 3.0) -> Server:
    """Start `uvicorn <module>:app` for the learner's problem on a free loopback port and wait
    until it accepts connections: at most SERVER_BOOT_TIMEOUT_S seconds for uvicorn to reach
    the app's lifespan startup, then for that startup (the learner's code) to finish as long
    as the boot took, at least STARTUP_FLOOR_S and at most `ready_timeout` seconds. Fails
    the check, naming which of the two never ended.
    Stop it with `Server.stop()`."""
    import socket
    import subprocess

    folder = target_root() / problem.slug
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = Path.cwd() / f"uvicorn-{port}.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"{problem.module}:app",
        "--app-dir",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # info, not warning: the startup line tells a slow machine from a stuck lifespan.
        "--log-level",
        "info",
        "--lifespan",
        "on",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    server = Server(process, port, log_path)
    _wait_until_serving(server, ready_timeout)
    return server


def _wait_until_serving(server: Server, ready_timeout: float) -> None:
    import socket

    started = time.monotonic()
    boot_deadline = started + SERVER_BOOT_TIMEOUT_S
    startup_deadline: float | None = None
    startup_timeout = ready_timeout
    while True:
        if server.process.poll() is not None:
            fail(
                "uvicorn exited before it served anything.",
                expected="a running server",
                got=f"exit code {server.process.returncode}; its output ends with:\n{server.log()}",
            )
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.2):
                return
        except OSError:
            pass
        now = time.monotonic()
        if startup_deadline is None and STARTUP_MARK in server.log(limit=100_000):
            # The learner's startup gets as long as booting took (this machine's speed; a
            # correct startup is a small part of that), within [STARTUP_FLOOR_S, ready_timeout].
            startup_timeout = min(ready_timeout, max(STARTUP_FLOOR_S, now - started))
            startup_deadline = now + startup_timeout
        if startup_deadline is not None and now > startup_deadline:
            server.kill()  # the check has failed: a stuck startup would only make SIGTERM wait
            fail(
                f"your app's startup did not finish within {startup_timeout:.1f} s under uvicorn: "
                f"uvicorn printed {STARTUP_MARK!r} and then waited for the code before `yield` in your lifespan.",
                got=server.log(),
            )
        if startup_deadline is None and now > boot_deadline:
            server.kill()
            fail(
                f"uvicorn did not reach your app's startup within {SERVER_BOOT_TIMEOUT_S:g} s "
                "(importing your module may be stuck, or the machine is very busy).",
                got=server.log() or "(uvicorn printed nothing)",
            )
        time.sleep(0.05)

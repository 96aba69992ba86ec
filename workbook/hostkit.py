"""The trusted side of an app host (issue 11, item 1): what graders use to reach a learner's
app without importing it.

A grader gets an `AppHost` from the `host` fixture (workbook/grading.py): a process in the
submission's sandbox that imported the learner's module afresh for this check
(workbook/apphost.py), new or recycled from an earlier check of this grading process
(`give_back`). From it:

- `host.client()`: an httpx client with TestClient's calls (`get`, `post`, ...,
  `websocket_connect`) talking to the app served by a real uvicorn over a Unix socket;
- `host.probe(name, **args)`: call a function of the problem's probe menu
  (`graders/<slug>/probes.py`, `def name(host, **args)`) inside the host, with JSON
  arguments chosen here, and get its JSON answer, to judge here;
- `host.serve(lifespan=...)`/`host.stop()`: start and stop the server, lifespan included.

An exception the learner's code raised in the host comes back as data and is rebuilt here as
an exception of the same type name, text and builtin bases, with a traceback through the
learner's files at the lines it was raised at (`rebuild`), so failures read as before. Every
read from the host is bounded in size and time; the answers are observations, never verdicts.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import os
import secrets
import select
import socket
import sqlite3
import ssl
import tempfile
import threading
import time
import types
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HOST_SOCKETS_ENV = "WORKBOOK_HOST_SOCKETS"  # a folder the sandbox sees read-only
HOST_REQUESTS_ENV = "WORKBOOK_HOST_REQUESTS"  # the fork server's named pipe for host requests
HOST_TARGET_ENV = "WORKBOOK_HOST_TARGET"  # the graded folder as the host sees it
MAX_ANSWER_BYTES = 4 << 20
MAX_RESPONSE_BYTES = 32 << 20  # of one HTTP answer of the app
CONNECT_WAIT_S = 5.0
ANSWER_WAIT_S = 30.0
MONITOR_WAIT_S = 0.5
RECYCLE_WAIT_S = 3.0
KEPT_LOG_CHARS = 8000  # of a host's output, kept when it is ended for a hang (grading shows 8000)
# A host serves this many checks at most, then a new process takes over: what a check leaves
# behind that the recycling does not put back (library caches, memory) stays bounded.
MAX_CHECKS_PER_HOST = 40


class HostError(Exception):
    """The app host did not start, answer or carry out a request (not a learner exception)."""


class HostGone(HostError):
    """The app host ended (its code called os._exit, or was killed) or stopped answering."""


class HostTimeout(HostGone):
    """The app host did not answer a request in time (its code may be stuck)."""


class HostBusy(HostError):
    """The host still works on an earlier request (a check that timed out left it there)."""


class StarterGone(HostError):
    """The fork server that starts the app hosts did not take a request or start a host in
    time (a submission may stop it with SIGSTOP): every later host of this grading process
    fails at once with the same reason instead of waiting again."""


_starter_failed: str | None = None


class StartupFailed(HostError):
    """The app's startup (the lifespan before `yield`) did not finish or failed without an
    exception of the learner's code; `threads` holds where the learner's code was."""

    def __init__(self, text: str, threads: dict[str, Any] | None = None, log: str = "") -> None:
        super().__init__(text)
        self.threads = threads or {}
        self.log = log


def ensure_hosts() -> None:
    """Under bare pytest (`pytest graders/<slug>`, for authors) nobody started a fork server
    for app hosts: start one for this process, without the sandbox, ended at exit."""
    if os.environ.get(HOST_SOCKETS_ENV) and os.environ.get(HOST_REQUESTS_ENV):
        return
    import atexit

    from workbook.forkserver import ForkServer
    from workbook.manifest import ROOT

    scratch = Path(tempfile.mkdtemp(prefix="workbook-hosts-"))
    sockets = Path(tempfile.mkdtemp(prefix="wbk-", dir="/tmp" if os.path.isdir("/tmp") else None))
    env = {**os.environ, "TMPDIR": str(scratch), "WORKBOOK_SERVER_ROLE": "hosts"}
    server = ForkServer(ROOT, env, scratch=scratch)
    server.sockets = sockets
    atexit.register(server.close)
    os.environ[HOST_SOCKETS_ENV] = str(sockets)
    os.environ[HOST_REQUESTS_ENV] = str(server.host_requests)


# --- the connection ----------------------------------------------------------------------


class _Line:
    """JSON lines over a socket, each read bounded in size and time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.lock = threading.Lock()

    def ask(self, request: dict[str, Any], timeout: float, wait_turn: bool = True) -> dict[str, Any]:
        """The answer to `request`; with `wait_turn` False, HostBusy at once when another
        thread's request is still waiting for its answer."""
        if not self.lock.acquire(blocking=wait_turn):
            raise HostBusy("the app host is busy with another request")
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
            return self._read(timeout)
        finally:
            self.lock.release()

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostTimeout(f"the app host did not answer within {timeout:g} s")
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HostGone("the app host ended")
            self.buffer += chunk
            if len(self.buffer) > MAX_ANSWER_BYTES:
                raise HostGone("the app host sent an answer over the size limit")
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            answer = json.loads(line.decode("utf-8", "replace"))
        except (ValueError, RecursionError) as exc:  # RecursionError: nested without end
            raise HostGone("the app host sent something that is not an answer") from exc
        if not isinstance(answer, dict):
            raise HostGone("the app host sent something that is not an answer")
        return answer


@functools.cache
def _tls() -> ssl.SSLContext:
    # One for every client: httpx would build one per client otherwise (~30 ms each).
    return ssl.create_default_context()


class AppHost:
    """One app host: a process in the sandbox that imports the learner's module afresh for
    each check it serves (`start`; `recycle` between checks).

    Raises HostError when no host could be had (no fork server, or it did not answer in
    CONNECT_WAIT_S)."""

    def __init__(self) -> None:
        folder = os.environ.get(HOST_SOCKETS_ENV)
        requests = os.environ.get(HOST_REQUESTS_ENV)
        if not folder or not requests:
            raise HostError("this grading process has no app hosts (no fork server)")
        if _starter_failed is not None:
            raise StarterGone(_starter_failed)
        name = secrets.token_hex(6)
        self.closed = False
        self.served = False
        # Cleared by any failure of the host itself (a time-out, a startup that did not
        # finish): such a host is ended, never given to another check.
        self.reusable = True
        self.checks = 0  # checks this host has served
        self.last_log = ""  # what it printed, kept when it is ended for a hang
        self.threads_answered = False
        self.pid: int | None = None  # in the sandbox's PID namespace: only the fork server uses it
        self.request_fd = -1
        self.private = Path(tempfile.mkdtemp(prefix="wbh-"))
        self.app_path = self.private / "app.sock"
        self.listener = _listening(Path(folder) / f"{name}.sock")
        try:
            self.app_listener = _listening(self.app_path)
            nonce = secrets.token_hex(8)
            try:
                self.request_fd = _requests_fd(requests)
                where = str(Path(folder) / f"{name}.sock")
                _write_request(self.request_fd, {"host": {"socket": where, "nonce": nonce}})
                self.control = self._accept(nonce, "control")
            except HostGone as gone:
                _starter_gone(str(gone))
            socket.send_fds(self.control.sock, [b"fd\n"], [self.app_listener.fileno()])
            self.monitor = self._accept(nonce, "monitor")
        except BaseException:
            self.close()
            raise
        finally:
            self.listener.close()
            with contextlib.suppress(OSError):
                os.unlink(Path(folder) / f"{name}.sock")

    def _accept(self, nonce: str, role: str) -> _Line:
        self.listener.settimeout(CONNECT_WAIT_S)
        try:
            sock, _ = self.listener.accept()
        except TimeoutError:
            raise HostGone(f"it started no app within {CONNECT_WAIT_S:g} s") from None
        line = _Line(sock)
        hello = line._read(CONNECT_WAIT_S)
        if hello.get("hello") != nonce or hello.get("role") != role:
            sock.close()
            raise HostGone("an app host answered that was not asked for")
        if isinstance(hello.get("pid"), int):
            self.pid = hello["pid"]
        return line

    # -- requests -----------------------------------------------------------------------

    def call(self, op: str, timeout: float = ANSWER_WAIT_S, **fields: Any) -> Any:
        """Send one request and return its value; raises what the learner's code raised
        (rebuilt), LearnerImportError, StartupFailed or HostError."""
        if self.closed:
            raise HostGone("the app host was closed")
        try:
            answer = self.control.ask({"op": op, **fields}, timeout)
        except OSError as exc:
            self.reusable = False
            raise HostGone(f"the app host ended ({exc.__class__.__name__})") from None
        except HostError:
            self.reusable = False
            raise
        if answer.get("ok") is True:
            return answer.get("value")
        try:
            return _failure(answer)
        except HostError:
            self.reusable = False
            raise

    def recycle(self) -> bool:
        """Make this host ready for another check (workbook/apphost.py, `Host.recycle`):
        True if it is, else it is ended. At most MAX_CHECKS_PER_HOST checks share a host."""
        global _recycling
        self.checks += 1
        if self.closed or not self.reusable or self.checks >= MAX_CHECKS_PER_HOST or not _recycling:
            self.close()
            return False
        try:
            answer = self.control.ask({"op": "recycle"}, RECYCLE_WAIT_S, wait_turn=False)
        except HostTimeout:
            # The same code would hold every later check's recycling as long: a new
            # process for each check from now on costs less.
            _recycling = False
            answer = {}
        except (HostError, OSError):
            answer = {}
        if answer.get("ok") is not True:
            self.close()
            return False
        self.served = self.threads_answered = False
        self._drop_waiting_connections()
        return True

    def _drop_waiting_connections(self) -> None:
        """A connection the last check opened that the stopped server never accepted would
        reach the next check's app: close every one still waiting."""
        self.app_listener.setblocking(False)
        try:
            while True:
                connection, _ = self.app_listener.accept()
                connection.close()
        except OSError:
            pass
        finally:
            self.app_listener.setblocking(True)

    def start(
        self,
        module: str,
        folder: str,
        *,
        env: dict[str, str] | None = None,
        unset: list[str] | None = None,
        setup: list[tuple[str, dict[str, Any]]] | None = None,
        probes: Path | None = None,
        workdir: str | None = None,
        timeout: float = ANSWER_WAIT_S,
    ) -> None:
        """Import `module` from `folder` (as the host sees it) after setting `env`, removing
        `unset` and running the `setup` probes (spies that must be in place before import).
        The host works in a fresh folder of its scratch, or in `workdir` (a name) if given."""
        self.call(
            "start",
            timeout=timeout,
            module=module,
            folder=folder,
            env=env or {},
            unset=unset or [],
            setup=[list(step) for step in setup or []],
            probes=str(probes) if probes else None,
            workdir=workdir,
        )

    def serve(self, lifespan: str = "on", app: str = "app", wait: float = 10.0) -> None:
        """Serve the module's `app` with uvicorn; with lifespan "on", its startup has run
        when this returns. Raises what the startup raised, or StartupFailed."""
        self.served = True
        self.call("serve", timeout=wait + 2, lifespan=lifespan, app=app, wait=wait)

    def stop(self, wait: float = 5.0) -> None:
        """Stop serving: the lifespan's shutdown runs; raises what it raised."""
        self.call("stop", timeout=wait + 2, wait=wait)

    def probe(self, name: str, timeout: float = ANSWER_WAIT_S, **args: Any) -> Any:
        """The JSON answer of probe `name` of the problem's menu, called with `args`."""
        return self.call("probe", timeout=timeout, name=name, args=args)

    def settle(self, wait: float = 2.0) -> None:
        """Wait (at most `wait` seconds) until the app has finished every HTTP request, its
        work after the response included."""
        self.call("settle", timeout=wait + 2, wait=wait)

    def raised(self) -> list[dict[str, Any]]:
        """What the learner's code raised inside the app since last asked: each
        {"phase", "sent", "error"} ("http", "websocket" or "lifespan")."""
        found = self.call("raised")
        return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []

    def threads(self) -> dict[str, Any]:
        """Where each thread running the learner's code is (hangs.Site dicts), asked on the
        monitor connection, which answers while the app is busy."""
        found = self._monitor("threads")
        self.threads_answered = isinstance(found, dict)
        return found if isinstance(found, dict) else {}

    def tasks(self) -> list[Any]:
        return self._monitor("tasks") or []

    def log(self, limit: int = 4000, wait_turn: bool = True) -> str:
        """The end of what the host printed (at most `limit` characters); once the host
        was ended for a hang, what it had printed by then. `wait_turn` False: "" at once
        while another thread waits for the monitor's answer."""
        if self.closed:
            return self.last_log[-limit:]
        text = self._monitor("log", wait_turn=wait_turn, limit=limit)
        return text if isinstance(text, str) else ""

    def _monitor(self, op: str, wait_turn: bool = True, **fields: Any) -> Any:
        if self.closed:
            return None
        # ValueError: the host was closed (its socket too) while the runner sampled it.
        with contextlib.suppress(HostError, OSError, ValueError):
            answer = self.monitor.ask({"op": op, **fields}, MONITOR_WAIT_S, wait_turn=wait_turn)
            return answer.get("value") if answer.get("ok") is True else None
        return None

    def client(self, *, raise_server_exceptions: bool = True, **kwargs: Any) -> RemoteClient:
        """A client of the served app (served first, lifespan on, if not yet served)."""
        if not self.served:
            self.serve()
        return RemoteClient(self, raise_server_exceptions=raise_server_exceptions, **kwargs)

    def close(self) -> None:
        """End the host: it exits when its connections close."""
        if self.closed:
            return
        self.closed = True
        if self.pid is not None:
            with contextlib.suppress(HostError):
                _write_request(self.request_fd, {"end_host": self.pid})
        for line in (getattr(self, "control", None), getattr(self, "monitor", None)):
            if line is not None:
                with contextlib.suppress(OSError):
                    line.sock.close()
        with contextlib.suppress(OSError, AttributeError):
            self.app_listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.app_path)
        with contextlib.suppress(OSError):
            self.private.rmdir()


# One host connected ahead, while the current check runs: the fork and the two connections
# (~10 ms, more on a busy machine) then cost a check nothing. Its module is not imported yet:
# each check chooses the environment and the spies of its own import.
_spare_lock = threading.Lock()
_spare: Future[AppHost] | None = None
_spare_maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbook-spare-host")


# False once a recycling timed out in this grading process (`AppHost.recycle`).
_recycling = True
# Hosts an earlier check of this grading process gave back, recycled (`give_back`).
_idle: list[AppHost] = []
MAX_IDLE_HOSTS = 2


def take_host() -> AppHost:
    """A connected host whose module is not imported yet: one an earlier check gave back,
    else the one made ahead if it is ready, else a new one (then the next one is started
    ahead). Raises HostError."""
    global _spare
    with _spare_lock:
        if _idle:
            return _idle.pop()
        made, _spare = _spare, None
    host = None
    if made is not None:
        with contextlib.suppress(HostError, OSError):
            host = made.result(timeout=CONNECT_WAIT_S + 1)
    if host is None or host.closed:
        host = AppHost()
    with _spare_lock:
        if _spare is None and _starter_failed is None:
            _spare = _spare_maker.submit(AppHost)
    return host


def give_back(host: AppHost) -> None:
    """The check that used `host` is over: keep it for the next check if it can be recycled
    (the learner's module is then imported afresh in it, ~40 ms less than a new process,
    benchmarks/RESULTS.md), else end it."""
    if host.recycle():
        with _spare_lock:
            if len(_idle) < MAX_IDLE_HOSTS:
                _idle.append(host)
                return
    host.close()


def _starter_gone(reason: str) -> None:
    global _starter_failed
    _starter_failed = reason
    raise StarterGone(reason)


def _listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    return sock


@functools.cache
def _requests_fd(path: str) -> int:
    """The fork server's named pipe, opened once per grading process (never blocking: with
    the server gone, opening fails instead of waiting for a reader)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise HostGone(f"it is gone ({exc.__class__.__name__})") from None


def _write_request(fd: int, request: dict[str, Any]) -> None:
    data = json.dumps(request).encode() + b"\n"
    if len(data) > 4000:
        raise HostError("a host request over PIPE_BUF")
    deadline = time.monotonic() + 2.0
    while True:
        try:
            os.write(fd, data)  # all or nothing: under PIPE_BUF
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise HostGone("it did not take a request within 2 s") from None
            select.select([], [fd], [], 0.05)
        except OSError as exc:
            raise HostGone(f"it is gone ({exc.__class__.__name__})") from None


def _failure(answer: dict[str, Any]) -> Any:
    from workbook.grading import LearnerImportError, learner_visible
    from workbook.safetext import capped

    if "raised" in answer:
        raise rebuild(answer["raised"])
    if "import_error" in answer:
        raise LearnerImportError(learner_visible(capped(_text(answer["import_error"], 40_000), 20_000)))
    text = _text(answer.get("error", "the app host failed"), 500)
    if text in ("startup raised", "shutdown raised") and isinstance(answer.get("raised"), dict):
        raise rebuild(answer["raised"])
    if text in ("startup did not finish", "shutdown did not finish", "startup failed"):
        threads = answer.get("threads") if isinstance(answer.get("threads"), dict) else {}
        raise StartupFailed(text, threads, _text(answer.get("log", ""), 4000))
    raise HostError(text)


def _text(value: Any, limit: int) -> str:
    from workbook.safetext import valid_text

    return valid_text(str(value))[:limit]


# --- rebuilding what the learner's code raised ----------------------------------------------


def learner_folder() -> Path | None:
    from workbook import grading

    folder = grading.state.get("problem_dir")
    return Path(folder) if folder is not None else None


# What one description may cost to rebuild: a host's answer is bounded in size, but a
# description nests (causes, a group's members), and each frame is a code object to make.
MAX_REBUILT_EXCEPTIONS = 40
MAX_FRAMES = 40


def rebuild(data: Any, depth: int = 0, budget: list[int] | None = None) -> BaseException:
    """An exception like the one the host described (apphost.describe_exception): same type
    name, module, text and builtin base, with a traceback through the same files and lines,
    so `learner_frames`, the cause keys and the translations read it as before. At most
    MAX_REBUILT_EXCEPTIONS exceptions in all, six links deep."""
    budget = budget if budget is not None else [MAX_REBUILT_EXCEPTIONS]
    if not isinstance(data, dict):
        return HostError("the app host described an exception it could not show")
    budget[0] -= 1
    members = []
    if depth < 6:
        members = [rebuild(item, depth + 1, budget) for item in _listed(data.get("exceptions"))[:10] if budget[0] > 0]
    exc = _instance(data, members)
    folder = learner_folder()
    frames = []
    for item in _listed(data.get("frames"))[:MAX_FRAMES]:
        with contextlib.suppress(TypeError, ValueError, IndexError, KeyError, OverflowError):
            file, line, name = _local_file(_text(item[0], 500), folder), int(item[1]), _text(item[2], 100)
            frames.append((file.replace("\x00", ""), max(1, min(line, 1_000_000)), name))
    exc = _raised_through(exc, frames)
    if depth < 6:
        for key in ("__cause__", "__context__"):
            if isinstance(data.get(key), dict) and budget[0] > 0:
                setattr(exc, key, rebuild(data[key], depth + 1, budget))
    return exc


def _local_file(file: str, folder: Path | None) -> str:
    """The file a host's frame names, as this process may read it: the learner's own file in
    our copy of the folder; any other name marked as the host's, so that formatting the
    traceback never reads a file here on the host's word (a frame may name any file)."""
    if file.startswith("@/") and folder is not None:
        local = folder / file[2:]
        with contextlib.suppress(ValueError, OSError):
            local.resolve().relative_to(folder.resolve())
            if not local.is_symlink():
                return str(local)
    return f"<app host>{file}"


def _with_attribute(exc: BaseException, data: Any) -> None:
    """An AttributeError's missing `name` and a stand-in for the object it was looked up on,
    so the runner can tell a name the grader expected on the learner's module from a typo
    in the learner's code (runner._missing_learner_name)."""
    if not isinstance(exc, AttributeError) or not isinstance(data, dict):
        return
    owner_name = _identifier(data.get("owner_name"), "object")
    kind = data.get("owner")
    exc.name = _identifier(data.get("name"), "")
    if kind == "module":
        exc.obj = types.ModuleType(owner_name)
    elif kind == "class":
        exc.obj = type(owner_name, (), {})
    else:
        stand_in = type(owner_name, (), {})()
        # translate._dependency_without_depends names the function from these.
        setattr(stand_in, "__name__", _text(data.get("owner_label", ""), 100) or owner_name)  # noqa: B010
        setattr(stand_in, "__qualname__", _text(data.get("owner_qualname", ""), 200))  # noqa: B010
        exc.obj = stand_in
    exc.workbook_learners_owner = data.get("learners") is True  # type: ignore[attr-defined]


def _instance(data: dict[str, Any], members: list[BaseException]) -> BaseException:
    name = _identifier(data.get("type"), "Exception")
    module = _text(data.get("module", "builtins"), 100)
    text = _text(data.get("text", ""), 2200)  # the host caps at 2000, plus its note of what it cut
    base = _library_base(module, name) or _builtin_base(data.get("bases", []))
    cls = _exception_class(name, module, base)  # type: ignore[arg-type]
    try:
        exc = cls.__new__(cls)
        BaseException.__init__(exc, text)
    except Exception:  # noqa: BLE001 - an odd builtin constructor: keep name and text
        cls = _exception_class(name, module, Exception)
        exc = cls(text)
    exc.workbook_text = text  # type: ignore[attr-defined]
    _with_attribute(exc, data.get("attribute"))
    if members:
        exc.exceptions = tuple(members)  # type: ignore[attr-defined]
    return exc


@functools.cache
def _exception_class(name: str, module: str, base: type[BaseException]) -> type[BaseException]:
    def text(self: Any) -> str:
        return str(getattr(self, "workbook_text", ""))

    namespace = {"__module__": module, "__str__": text, "__qualname__": name, "workbook_rebuilt": True}
    return type(name, (base,), namespace)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# Library exception classes a rebuilt exception may derive from (graders test them with
# isinstance): importing these modules here runs no learner code.
LIBRARY_BASES = {("sqlite3", name): getattr(sqlite3, name) for name in dir(sqlite3) if name.endswith("Error")}


def _library_base(module: str, name: str) -> type[BaseException] | None:
    found = LIBRARY_BASES.get((module, name))
    return found if isinstance(found, type) and issubclass(found, Exception) else None


def _builtin_base(bases: Any) -> type[BaseException]:
    for name in bases if isinstance(bases, list) else []:
        found = getattr(builtins, str(name), None)
        if isinstance(found, type) and issubclass(found, BaseException) and found not in (SystemExit, GeneratorExit):
            return found
    return Exception


def _identifier(value: Any, default: str) -> str:
    text = str(value or "")[:100]
    return text if text.isidentifier() else default


# The two statements a rebuilt frame runs, compiled once: each frame is a copy claiming
# another file, function and first line (a traceback shows first line + offset, so 1-based).
_CALL_NEXT = compile("__next(__index + 1)", "<app host>", "exec")
_RAISE = compile("raise __exc", "<app host>", "exec")


def _raised_through(exc: BaseException, frames: list[tuple[str, int, str]]) -> BaseException:
    """`exc` raised from inside code objects that claim `frames` (file, line, function),
    outermost first: a real traceback, read by the traceback module like any other."""
    if not frames:
        return exc

    def enter(index: int) -> None:
        file, line, name = frames[index]
        body = _CALL_NEXT if index + 1 < len(frames) else _RAISE
        try:
            code = body.replace(co_filename=file, co_name=name, co_firstlineno=line)
        except (ValueError, TypeError):  # a name a code object refuses: this frame shows as the host's
            code = body
        exec(code, {"__next": enter, "__index": index, "__exc": exc})

    try:
        enter(0)
    except BaseException as raised:  # noqa: BLE001 - the exception we raised, with its traceback
        return raised
    return exc


# --- clients ---------------------------------------------------------------------------------


class RemoteClient(httpx.Client):
    """TestClient's calls over a real connection to the app host's uvicorn. Like TestClient,
    it follows redirects, and with `raise_server_exceptions` an exception the learner's code
    raised while answering (a 500) is raised here, rebuilt; without it, the 500 is returned
    and the exception is kept for the failure's message (grading.server_errors)."""

    def __init__(self, host: AppHost, *, raise_server_exceptions: bool = True, **kwargs: Any) -> None:
        from workbook import grading

        # A new connection per request, as TestClient has: uvicorn closes a connection after
        # an exception, and a pooled one would then fail the next request.
        limits = httpx.Limits(max_keepalive_connections=0)
        transport = httpx.HTTPTransport(uds=str(host.app_path), verify=_tls(), limits=limits)
        kwargs.setdefault("base_url", "http://testserver")
        kwargs.setdefault("follow_redirects", True)
        kwargs.setdefault("timeout", httpx.Timeout(60.0))

        super().__init__(transport=transport, verify=_tls(), trust_env=False, **kwargs)
        self.host = host
        self.raise_server_exceptions = raise_server_exceptions
        self._active = 0  # requests this client is sending now (a check may send concurrently)
        self._active_lock = threading.Lock()
        self.event_hooks = {"request": [grading._remember_request, self._note_sent], "response": []}
        # "METHOD /path" -> how the last request sent there is described (`_request_of`).
        self.sent_requests: dict[str, str] = {}

    def _note_sent(self, request: httpx.Request) -> None:
        from workbook import grading

        # grading._remember_request, the hook before this one, has just described it.
        described = getattr(grading._thread, "sending", None) or grading.describe_request(request)
        self.sent_requests[f"{request.method} {request.url.path}"] = described

    def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:
        from workbook import grading

        grading._thread.sending = None
        with self._active_lock:
            alone = self._active == 0
            self._active += 1
        try:
            if alone:
                # The previous request's work may go on after its response (a `yield`
                # dependency's commit, a background task): TestClient returned only once it
                # was done, and a check's next request expects to see it done.
                self.host.settle()
            return self._request(method, url, **kwargs)
        finally:
            with self._active_lock:
                self._active -= 1

    def _request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:
        from workbook import grading

        follow = kwargs.pop("follow_redirects", self.follow_redirects)
        auth = kwargs.pop("auth", httpx.USE_CLIENT_DEFAULT)
        try:
            response = self.send(
                self.build_request(method, url, **kwargs), stream=True, follow_redirects=follow, auth=auth
            )
            _read_bounded(response)
        except httpx.TimeoutException as exc:
            raise HostError(f"the app did not answer within the client's wait ({exc.__class__.__name__})") from None
        except httpx.TransportError as exc:
            raise HostGone(f"the app's server closed the connection ({exc.__class__.__name__})") from None
        if response.status_code >= 500:
            self._raise_or_keep(getattr(grading._thread, "sending", None))
        return response

    def _raise_or_keep(self, sent: str | None) -> None:
        from workbook import grading

        for item in self.host.raised():
            exc = rebuild(item.get("error"))
            grading._tag(exc, _request_of(item, sent, self.sent_requests))
            if self.raise_server_exceptions:
                raise exc
            grading.note_server_error(exc)

    def websocket_connect(self, url: str, subprotocols: list[str] | None = None, **kwargs: Any) -> RemoteWebSocket:
        from workbook import grading

        # httpx's own defaults would replace the handshake's `Connection: Upgrade` (uvicorn
        # then answers 404); the WebSocket client sets what a handshake needs.
        defaults = {"user-agent", "connection", "accept", "accept-encoding", "host"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in defaults}
        headers.update(dict(kwargs.get("headers") or {}))
        sent = f"WebSocket {url}"
        grading.state["last_sent"] = sent
        return RemoteWebSocket(self.host, url, headers, subprotocols, sent)


def _request_of(item: dict[str, Any], sent: str | None, known: dict[str, str]) -> str | None:
    """The request an exception the host recorded was raised for, as this client described
    it: under concurrent requests one thread may collect what another thread's request
    raised, and a cause must not depend on which thread asked first. The host's record
    ("METHOD /path") only chooses among the requests this client sent (`known`); its text
    is never shown. `sent`: the collecting thread's own request, the default."""
    own = item.get("sent")
    if not isinstance(own, str):
        return sent
    method, _, rest = (sent or "").partition(" ")
    if sent is not None and own == f"{method} {rest.split(' ', 1)[0].split('?', 1)[0]}":
        return sent
    return known.get(own, sent)


def _read_bounded(response: httpx.Response) -> None:
    """Read the body of `response`, at most MAX_RESPONSE_BYTES of it: the app may answer
    without end, and this process keeps what it reads."""
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                raise ResponseTooLarge(f"the app answered more than {MAX_RESPONSE_BYTES >> 20} MiB")
    finally:
        response.close()
    response._content = bytes(body)  # what Response.read() sets


class ResponseTooLarge(HostError):
    """An answer over MAX_RESPONSE_BYTES; the rest was not read."""


class WebSocketRejected(Exception):
    """The server refused the WebSocket handshake (a close before accept() is an HTTP 403 on
    a real server, RFC 6455 section 4.2.2): `status` is the HTTP status it answered."""

    def __init__(self, status: int, sent: str) -> None:
        super().__init__(f"the handshake was refused with HTTP {status}")
        self.status = status
        self.workbook_sent = sent


class RemoteWebSocket:
    """A WebSocket to the served app with TestClient's session calls (a context manager;
    send_text/send_json/send_bytes, receive_text/receive_json/receive_bytes, close).
    A close by the server is starlette's WebSocketDisconnect(code), as under TestClient."""

    def __init__(self, host: AppHost, url: str, headers: dict[str, str], subprotocols: Any, sent: str) -> None:
        self.host = host
        self.url = url
        self.headers = headers
        self.subprotocols = subprotocols
        self.workbook_sent = sent
        self.connection: Any = None

    def __enter__(self) -> RemoteWebSocket:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import unix_connect

        try:
            self.connection = unix_connect(
                str(self.host.app_path),
                uri=f"ws://testserver{self.url}",
                additional_headers=self.headers,
                subprotocols=self.subprotocols,
                open_timeout=30,
                close_timeout=1,
                max_size=MAX_ANSWER_BYTES,
            )
        except InvalidStatus as exc:
            self._raise_raised()
            raise WebSocketRejected(exc.response.status_code, self.workbook_sent) from None
        except (OSError, EOFError) as exc:
            self._raise_raised()
            raise HostGone(f"the app's server closed the connection ({exc.__class__.__name__})") from None
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def accepted_subprotocol(self) -> str | None:
        return self.connection.subprotocol if self.connection is not None else None

    def send_text(self, data: str) -> None:
        self._guarded(lambda: self.connection.send(data))

    def send_bytes(self, data: bytes) -> None:
        self._guarded(lambda: self.connection.send(data))

    def send_json(self, data: Any, mode: str = "text") -> None:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        self._guarded(lambda: self.connection.send(text if mode == "text" else text.encode()))

    def receive_text(self, timeout: float | None = None) -> str:
        message = self._guarded(lambda: self.connection.recv(timeout))
        return message if isinstance(message, str) else message.decode("utf-8", "replace")

    def receive_bytes(self, timeout: float | None = None) -> bytes:
        message = self._guarded(lambda: self.connection.recv(timeout))
        return message if isinstance(message, bytes) else message.encode()

    def receive_json(self, mode: str = "text", timeout: float | None = None) -> Any:
        return json.loads(self.receive_text(timeout))

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close(code, reason or "")

    def _guarded(self, action: Any) -> Any:
        from starlette.websockets import WebSocketDisconnect
        from websockets.exceptions import ConnectionClosed

        from workbook import grading

        try:
            return action()
        except ConnectionClosed as exc:
            self._raise_raised()
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            disconnect = WebSocketDisconnect(code, exc.rcvd.reason if exc.rcvd is not None else None)
            grading._tag(disconnect, self.workbook_sent)
            raise disconnect from None

    def _raise_raised(self) -> None:
        from workbook import grading

        for item in self.host.raised():
            exc = rebuild(item.get("error"))
            grading._tag(exc, self.workbook_sent)
            raise exc


# --- hang sampling across the process boundary -----------------------------------------------


class RemoteSampler:
    """hangs.Sampler's calls answered by the check's app hosts (their monitor connections):
    where their threads run the learner's code, and which of their tasks wait in it."""

    def __init__(self, hosts: list[AppHost]) -> None:
        self.hosts = hosts

    def threads(self, ignore: set[int]) -> dict[int, Any]:
        from workbook.hangs import Site

        found: dict[int, Any] = {}
        for number, host in enumerate(list(self.hosts)):
            for ident, data in (host.threads() or {}).items():
                site = Site.from_dict(data)
                key = hash((number, ident)) & 0x7FFFFFFF
                if site is not None and key not in ignore:
                    found[key] = site
        return found

    def waiting_tasks(self) -> list[Any]:
        from workbook.hangs import Site

        sites = (Site.from_dict(data) for host in list(self.hosts) for data in host.tasks())
        return [site for site in sites if site is not None]

    def any_site(self, ignore: set[int]) -> Any:
        return next(iter(self.threads(ignore).values()), None) or next(iter(self.waiting_tasks()), None)

    def stop(self) -> bool:
        """Stop the stuck code: end the hosts (the next check gets fresh ones), keeping
        what they printed: a learner's prints are most wanted where the code got stuck."""
        for host in list(self.hosts):
            if host.threads_answered:  # else its code holds the interpreter: no answer would come
                host.last_log = host.log(KEPT_LOG_CHARS, wait_turn=False)
            host.close()
        return True


# The hosts of the current check, for the runner's hang watch (workbook/runner.py).
current_hosts: list[AppHost] = []


def give_back_all() -> None:
    """The check is over: give back each of its hosts (`current_hosts`, `give_back`)."""
    for host in list(current_hosts):
        give_back(host)
    current_hosts.clear()

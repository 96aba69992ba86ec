"""The app host: the one process that imports a learner's code (issue 11, item 1).

It runs in the submission's sandbox, forked from the warm fork server (workbook/forkserver.py)
with the libraries imported. The trusted grading process, which never imports learner code,
asks the server for a host by writing `{"host": {"socket": PATH, "nonce": N}}` to its input;
the forked host connects to PATH (a listening socket the trusted side owns, in a folder the
sandbox sees read-only) and speaks JSON lines (workbook/hostkit.py is the other end):

1. host -> trusted: `{"hello": N}`.
2. trusted -> host: the descriptor of a listening socket the trusted side bound (SCM_RIGHTS,
   with the bytes `b"fd\\n"`): the app is served on it, so the trusted side only ever
   connects to a path the sandbox cannot replace by a link.
3. Requests `{"op": ..., ...}`, one answer line each: `{"ok": true, "value": V}`, or
   `{"ok": false, "raised": E}` (an exception the learner's code raised, as plain data:
   `describe_exception`), `{"ok": false, "import_error": TEXT}` or `{"ok": false, "error": TEXT}`.

Every answer is an *observation*: the trusted side chooses the test data and judges. Code
here runs beside learner code and may be patched by it; that can fake an observation, never
a verdict. End of the connection ends the host (`os._exit`), and everything it started dies
with the sandbox's PID namespace or is reaped by the fork server, a child subreaper.

A host serves one check at a time and, recycled (`Host.recycle`, asked by the grading
process between two of its checks), the next: a fork, an exit and a cold import cost ~40 ms
a check more than a fresh import in a warm process (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import select
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from workbook.safetext import capped

MAX_TEXT = 2000  # characters of one exception text sent back
MAX_IMPORT_TEXT = 20_000  # characters of the description of a failed import
MAX_FRAMES = 40
MAX_CHAIN = 6
MAX_LOG_BYTES = 64 << 10
STARTUP_WAIT_S = 10.0
SHUTDOWN_WAIT_S = 5.0
SERVER_STOP_WAIT_S = 1.0  # when recycling: for the server of the check that ended to stop
SERVER_WORKER_THREAD = "AnyIO worker thread"  # anyio's name for the threads of a sync endpoint
# What a host is told to import before it is told what to do: libraries only (fork server).
WARM_MODULES = (
    "fastapi",
    "fastapi.security",
    "fastapi.responses",
    "starlette",
    "pydantic",
    "sqlite3",
    "jose.jwt",
    "passlib.context",
    "bcrypt",
    "multipart",
    "uvicorn",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.protocols.websockets.wsproto_impl",
    "uvicorn.lifespan.on",
    "uvicorn.lifespan.off",
    "uvicorn.loops.auto",
    "uvicorn.loops.asyncio",
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "websockets.legacy.server",
    "websockets.asyncio.server",
)


def warm_up() -> None:
    """Import the libraries a host needs and make bcrypt cheap, once, in the fork server:
    a host forked from that state serves in tens of milliseconds (benchmarks/RESULTS.md)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a library's deprecation notice is nobody's to read here
        for name in WARM_MODULES:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    from workbook.learnercode import cheap_password_hashing

    cheap_password_hashing()
    with contextlib.suppress(Exception):
        import passlib.context

        # passlib loads and self-tests its bcrypt backend at the first hash: here, once.
        passlib.context.CryptContext(schemes=["bcrypt"]).hash("warm")
    with contextlib.suppress(Exception):
        import pydantic.v1  # noqa: F401 - FastAPI imports it when an app is built


# --- describing what the learner's code raised --------------------------------------------


def describe_exception(exc: BaseException, folder: Path | None, depth: int = 0) -> dict[str, Any]:
    """`exc` as plain data: its type (name, module, builtin bases), text, frames (file
    relative to `folder` for the learner's own files, else absolute), the exceptions it was
    raised from or during, and a group's members. Bounded in size."""
    frames = []
    for frame in traceback.extract_tb(exc.__traceback__)[-MAX_FRAMES:]:
        frames.append([_shown_file(frame.filename, folder), frame.lineno or 1, frame.name])
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a learner's __str__ may raise anything
        text = f"<{type(exc).__name__} whose text could not be shown>"
    data: dict[str, Any] = {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "bases": [cls.__name__ for cls in type(exc).__mro__ if cls.__module__ == "builtins"][:8],
        "text": capped(text, MAX_TEXT),
        "frames": frames,
    }
    attribute = _missing_attribute(exc, folder)
    if attribute:
        data["attribute"] = attribute
    if depth < MAX_CHAIN:
        for key in ("__cause__", "__context__"):
            linked = getattr(exc, key, None)
            if isinstance(linked, BaseException) and linked is not exc:
                data[key] = describe_exception(linked, folder, depth + 1)
        members = getattr(exc, "exceptions", None)
        if isinstance(members, (list, tuple)):
            data["exceptions"] = [describe_exception(e, folder, depth + 1) for e in members[:10]]
    return data


def _missing_attribute(exc: BaseException, folder: Path | None) -> dict[str, Any]:
    """For an AttributeError: the missing name, what kind of object it was looked up on, that
    object's name, and whether it belongs to the learner's files (their module, or a class or
    object of it)."""
    if not isinstance(exc, AttributeError) or not getattr(exc, "name", None):
        return {}
    owner = getattr(exc, "obj", None)
    is_module, is_class = isinstance(owner, ModuleType), isinstance(owner, type)
    module = owner if is_module else sys.modules.get(getattr(owner, "__module__", "") or "")
    file = str(getattr(module, "__file__", None) or "")
    return {
        "name": str(exc.name)[:100],
        "owner": "module" if is_module else "class" if is_class else "object",
        "owner_name": str(getattr(owner, "__name__", "") if is_module or is_class else type(owner).__name__)[:100],
        # A function's own names: the hint for a dependency used without Depends names it.
        "owner_label": str(getattr(owner, "__name__", "") or "")[:100],
        "owner_qualname": str(getattr(owner, "__qualname__", "") or "")[:200],
        "learners": _shown_file(file, folder).startswith("@/"),
    }


def _shown_file(filename: str, folder: Path | None) -> str:
    """A learner's file as `@/relative/path` (the trusted side puts its own copy of the folder
    in front), anything else as it is."""
    if folder is not None and filename:
        with contextlib.suppress(ValueError, OSError):
            return "@/" + Path(filename).resolve().relative_to(folder).as_posix()
    return filename


# --- the host --------------------------------------------------------------------------


class Host:
    """One host's state: the learner's module once imported, its server once serving, and
    what the learner's code raised inside the app since the trusted side last asked."""

    def __init__(self, connection: socket.socket, listener: socket.socket) -> None:
        self.connection = connection
        self.listener = listener
        self.own_listener = listener  # a probe may serve on a copy: put back between checks
        self.folder: Path | None = None
        self.module: ModuleType | None = None
        self.probes: ModuleType | None = None
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.raised: list[dict[str, Any]] = []
        self.pending_errors = 0  # 500s sent whose exception is not recorded yet
        # HTTP requests the app has not finished: FastAPI runs a `yield` dependency's clean-up
        # (a commit, say) and background tasks after the response is sent.
        self.in_flight = 0
        self.output = _Output()
        self.baseline: _Baseline | None = None  # the process as it was before the first check
        self.used = False
        self.checks = 0

    # -- requests ---------------------------------------------------------------------

    def answer(self, request: dict[str, Any], ops: dict[str, Any]) -> dict[str, Any]:
        op = str(request.get("op"))
        handler = ops.get(op)
        if handler is None:
            return {"ok": False, "error": f"unknown request {op!r}"}
        try:
            return {"ok": True, "value": handler(self, request)}
        except LearnerImportFailed as failed:
            return {"ok": False, "import_error": capped(str(failed), MAX_IMPORT_TEXT)}
        except HostProblem as problem:
            return {"ok": False, "error": str(problem), **problem.extra}
        except BaseException as exc:  # noqa: BLE001 - whatever the learner's code raised, as data
            return {"ok": False, "raised": describe_exception(exc, self.folder)}

    def start(self, request: dict[str, Any]) -> None:
        """Set the environment and working folder, run the setup probes, import the module."""
        if self.used:
            raise HostProblem("a host imports one module per check: recycle it first")
        self.used = True
        if self.baseline is None:
            self.baseline = _Baseline()
        self.folder = Path(request["folder"]).resolve()
        os.environ.update({str(k): str(v) for k, v in request.get("env", {}).items()})
        for name in request.get("unset", []):
            os.environ.pop(str(name), None)
        self.checks += 1  # a recycled host's next check works in a folder of its own
        name = str(request.get("workdir") or f"host-{os.getpid()}-{self.checks}")
        work = Path(os.environ.get("TMPDIR", "/tmp")) / f"work-{Path(name).name}"
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)
        if str(self.folder) not in sys.path:
            sys.path.insert(0, str(self.folder))
        # Compiled once per submission, in its scratch folder: each host imports the module
        # afresh, and compiling it again each time cost a check milliseconds.
        sys.pycache_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / "pycache")
        sys.dont_write_bytecode = False
        if request.get("probes"):
            self.probes = _load_probes(Path(request["probes"]))
            self.baseline.keep(getattr(self.probes, "PATCHED", ()))
        for name, args in request.get("setup", []):
            self._probe_function(name)(self, **args)
        self.module = _import_learner(request["module"], self.folder)
        if not hasattr(self.module, "app"):
            file = str(request["module"]).replace(".", "/") + ".py"
            raise LearnerImportFailed(f"{file} defines no `app`. Keep the line `app = FastAPI(...)` at module level.")

    def serve(self, request: dict[str, Any]) -> None:
        """Serve `app` (or the attribute path given) with uvicorn on the trusted side's socket."""
        import uvicorn

        app = self.attribute(request.get("app", "app"))
        config = uvicorn.Config(
            _recording(app, self),
            lifespan=request.get("lifespan", "on"),
            # What the app raised is recorded (`_recording`); uvicorn's own tracebacks
            # would only repeat it in the output shown with each check.
            log_level="critical",
            access_log=False,
            ws=request.get("ws", "auto"),
            timeout_graceful_shutdown=1,
        )
        self.server = _server_class()(config, self)
        # A copy: uvicorn closes the socket it serves on when it stops, and a check may
        # serve the same host again (a restart).
        sockets = [self.listener.dup()]
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": sockets}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + float(request.get("wait", STARTUP_WAIT_S))
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.002)
        if self.server.started:
            return
        startup = [e for e in self.raised if e.get("phase") == "lifespan"]
        if startup:
            self.raised = [e for e in self.raised if e.get("phase") != "lifespan"]
            raise HostProblem("startup raised", raised=startup[-1]["error"])
        if self.thread.is_alive():
            raise HostProblem("startup did not finish", threads=self.learner_threads())
        raise HostProblem("startup failed", log=self.log_tail())

    def stop(self, request: dict[str, Any]) -> None:
        """Stop the server: uvicorn closes the connections and runs the lifespan's shutdown."""
        if self.server is None or self.thread is None:
            return
        self.server.exit_soon()
        self.thread.join(float(request.get("wait", SHUTDOWN_WAIT_S)))
        if self.thread.is_alive():
            raise HostProblem("shutdown did not finish", threads=self.learner_threads())
        shutdown = [e for e in self.raised if e.get("phase") == "lifespan"]
        if shutdown:
            self.raised = [e for e in self.raised if e.get("phase") != "lifespan"]
            raise HostProblem("shutdown raised", raised=shutdown[-1]["error"])

    def recycle(self, request: dict[str, Any]) -> None:
        """Make this process ready for the next check, as if it were new: the server stopped
        (without its lifespan's shutdown: a host used to end there), the learner's modules
        forgotten so the next `start` imports them afresh, and what the setup probes and the
        learner's code changed put back (`_Baseline`). Raises HostProblem when the process
        cannot be trusted to be as new: a thread or a process the check started still runs
        (the learner's code, a timer, a pool: it would act in the next check); the host is
        then ended."""
        if self.server is not None and self.thread is not None:
            self.server.exit_soon(force=True)
            self.thread.join(float(request.get("wait", SERVER_STOP_WAIT_S)))
            if self.thread.is_alive():
                raise HostProblem("its server did not stop")
        if self.baseline is not None and self.baseline.new_threads():
            raise HostProblem("a thread the check started still runs")
        if _child_processes():
            raise HostProblem("a process the check started still runs")
        if self.baseline is not None:
            self.baseline.restore(self.folder)
        if self.listener is not self.own_listener:
            with contextlib.suppress(OSError):
                self.listener.close()
            self.listener = self.own_listener
        self.module = self.probes = self.server = self.thread = self.loop = None
        self.raised, self.pending_errors, self.in_flight = [], 0, 0
        self.log_tail(0)
        self.output.clear()
        self.used = False

    def attribute(self, path: str) -> Any:
        value: Any = self.module
        for name in path.split("."):
            value = getattr(value, name)
        return value

    def probe(self, request: dict[str, Any]) -> Any:
        return self._probe_function(str(request["name"]))(self, **request.get("args", {}))

    def _probe_function(self, name: str) -> Callable[..., Any]:
        function = getattr(self.probes, name, None) if not name.startswith("_") else None
        if not callable(function):
            raise HostProblem(f"no probe {name!r}")
        return function

    def on_loop(self, coroutine: Any, timeout: float = 5.0) -> Any:
        """Run `coroutine` on the server's event loop (where the app's objects live)."""
        if self.loop is None:
            raise HostProblem("the app is not being served")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def learner_threads(self) -> dict[str, Any]:
        from workbook import hangs

        sampler = hangs.Sampler(self.folder)
        sites = sampler.threads({threading.get_ident()})
        return {str(ident): site.as_dict() for ident, site in sites.items()}

    def waiting_tasks(self) -> list[dict[str, Any]]:
        from workbook import hangs

        return [site.as_dict() for site in hangs.Sampler(self.folder).waiting_tasks()]

    def settle(self, request: dict[str, Any]) -> int:
        """Wait until the app has finished every HTTP request (at most `wait` seconds); the
        number still unfinished."""
        deadline = time.monotonic() + float(request.get("wait", 2.0))
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.in_flight

    def take_raised(self) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 1.0
        while self.pending_errors > 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        taken, self.raised = self.raised, []
        return taken

    def log_tail(self, limit: int = MAX_LOG_BYTES) -> str:
        # Python's own streams buffer: what was printed must reach the pipe first.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        return self.output.tail(limit)


class _Baseline:
    """What a check may change in a host's process, as it was before the first check, to be
    put back between checks (`Host.recycle`): the environment (and the time zone read from
    it), the working folder, `sys.path`, the standard streams, warnings, every logger's
    handlers and level, and the module attributes the probe menu's probes replace (`PATCHED`
    in graders/<slug>/probes.py: "module.attribute" names)."""

    def __init__(self) -> None:
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.path = list(sys.path)
        self.modules = set(sys.modules)
        self.streams = (sys.stdout, sys.stderr)
        self.warning_filters = list(warnings.filters)
        self.showwarning = warnings.showwarning
        self.loggers = {name: _logger_state(logger) for name, logger in _loggers()}
        self.attributes: dict[tuple[str, str], Any] = {}
        self.threads = {thread.ident for thread in threading.enumerate()}
        self.os_threads = _os_thread_count()

    def new_threads(self, wait: float = 1.0) -> list[Any]:
        """Threads started since that still run: the server's worker threads are given up
        to `wait` seconds to end (they end soon after its event loop, later on a busy
        machine), any other thread none. Counted by the kernel too: a thread started with
        `_thread.start_new_thread` is not in `threading.enumerate()`."""
        deadline = time.monotonic() + wait
        started = [thread for thread in threading.enumerate() if thread.ident not in self.threads]
        for thread in started:
            if thread.name.startswith(SERVER_WORKER_THREAD):
                thread.join(max(0.0, deadline - time.monotonic()))
        running: list[Any] = [thread for thread in started if thread.is_alive()]
        while not running and _os_thread_count() > self.os_threads:
            if time.monotonic() > deadline:  # a joined thread's task goes a moment later
                return ["a thread threading does not list"]
            time.sleep(0.002)
        return running

    def keep(self, names: Any) -> None:
        """Remember the values of `names` ("module.attribute"), a missing one as missing."""
        for dotted in names:
            module_name, _, attribute = str(dotted).rpartition(".")
            key = (module_name, attribute)
            if key not in self.attributes:
                module = importlib.import_module(module_name)
                self.attributes[key] = getattr(module, attribute, _MISSING)

    def restore(self, folder: Path | None) -> None:
        for (module_name, attribute), value in self.attributes.items():
            module = sys.modules[module_name]
            if value is _MISSING:
                with contextlib.suppress(AttributeError):
                    delattr(module, attribute)
            else:
                setattr(module, attribute, value)
        os.environ.clear()
        os.environ.update(self.environ)
        if hasattr(time, "tzset"):
            time.tzset()
        os.chdir(self.cwd)
        sys.path[:] = self.path
        sys.stdout, sys.stderr = self.streams
        warnings.filters[:] = self.warning_filters  # type: ignore[index]  # a list at run time
        warnings.showwarning = self.showwarning
        mutated = getattr(warnings, "_filters_mutated", None)  # the filters' cache (CPython)
        if callable(mutated):
            mutated()
        for name, logger in _loggers():
            _set_logger_state(logger, self.loggers.get(name))
        # By the folder's own file names too: a module can say it lives anywhere (`__file__`).
        own_names = _top_level_names(folder)
        for name in [name for name in sys.modules if name not in self.modules]:
            if name.split(".", 1)[0] in own_names or _is_learners(sys.modules.get(name), folder):
                del sys.modules[name]
        self.modules = set(sys.modules)  # libraries the check imported stay: not asked again
        importlib.invalidate_caches()  # the learner's folder may hold new files by now


_MISSING = object()


def _loggers() -> list[tuple[str, Any]]:
    import logging

    found: list[tuple[str, Any]] = [("", logging.getLogger())]
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            found.append((name, logger))
    return found


def _logger_state(logger: Any) -> tuple[Any, ...]:
    return (list(logger.handlers), logger.level, logger.propagate, logger.disabled)


def _set_logger_state(logger: Any, state: tuple[Any, ...] | None) -> None:
    import logging

    handlers, level, propagate, disabled = state or ([], logging.NOTSET, True, False)
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate, logger.disabled = propagate, disabled


def _os_thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc (macOS): threading's own list is all there is
        return 0


def _child_processes() -> list[int]:
    """The host's child processes (a zombie too), from /proc; none where there is no /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as listing:
                found += [int(pid) for pid in listing.read().split()]
        except (OSError, ValueError):
            continue
    return found


def _top_level_names(folder: Path | None) -> set[str]:
    """The names a module or package in `folder` is imported by (`app` for app.py or app/)."""
    if folder is None:
        return set()
    try:
        entries = os.listdir(folder)
    except OSError:
        return set()
    return {entry[:-3] if entry.endswith(".py") else entry for entry in entries if not entry.startswith(".")}


def _is_learners(module: ModuleType | None, folder: Path | None) -> bool:
    """Whether `module` came from the learner's folder, by where it says it lives (None, a
    placeholder left by a failed import, is forgotten too)."""
    if module is None or folder is None:
        return True
    places = [getattr(module, "__file__", None), *list(getattr(module, "__path__", None) or [])]
    return any(place and Path(place).resolve().is_relative_to(folder) for place in places)


class HostProblem(Exception):
    """A request the host could not carry out, for a reason that is not a learner exception."""

    def __init__(self, text: str, **extra: Any) -> None:
        super().__init__(text)
        self.extra = extra


class LearnerImportFailed(Exception):
    """Importing the learner's module failed: the text says how, in the learner's terms."""


OPS: dict[str, Callable[[Host, dict[str, Any]], Any]] = {
    "start": Host.start,
    "serve": Host.serve,
    "stop": Host.stop,
    "probe": Host.probe,
    "raised": lambda host, _: host.take_raised(),
    "settle": Host.settle,
    "recycle": Host.recycle,
}
# Asked on the second connection, answered while the first one's request is busy.
MONITOR_OPS: dict[str, Callable[[Host, dict[str, Any]], Any]] = {
    "threads": lambda host, _: host.learner_threads(),
    "tasks": lambda host, _: host.waiting_tasks(),
    "log": lambda host, request: host.log_tail(int(request.get("limit", 4000))),
}


def _load_probes(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"workbook_probes_{path.parent.name}", path)
    if spec is None or spec.loader is None:
        raise HostProblem(f"cannot load the probes {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_learner(name: str, folder: Path) -> ModuleType:
    from workbook import learnercode

    try:
        return importlib.import_module(name)
    except SyntaxError as exc:
        raise LearnerImportFailed(learnercode.describe_syntax_error(exc, folder)) from None
    except BaseException as exc:  # noqa: BLE001 - learner code may raise anything, even SystemExit
        raise LearnerImportFailed(learnercode.describe_import_exception(exc, folder)) from None


def _recording(app: Any, host: Host) -> Any:
    """`app` wrapped so that what escapes it (a 500's exception, a WebSocket handler's, a
    lifespan's) is recorded for the trusted side, with the request it was raised for."""

    async def recorded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        failing = False
        http = scope.get("type") == "http"
        kind = scope.get("type", "")
        # As it arrived: the app may rewrite its scope before it raises.
        sent = f"{scope.get('method', 'WEBSOCKET')} {scope.get('path', '')}" if kind != "lifespan" else None
        host.in_flight += http

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal failing
            if message.get("type") == "http.response.start" and int(message.get("status", 200)) >= 500:
                # Starlette sends the 500 before re-raising: the trusted side, reading the
                # 500, asks what was raised, and must wait until it is recorded.
                failing = True
                host.pending_errors += 1
            await send(message)

        try:
            await app(scope, receive, watched_send)
        except BaseException as exc:
            host.raised.append({"phase": kind, "sent": sent, "error": describe_exception(exc, host.folder)})
            raise
        finally:
            host.in_flight -= http
            if failing:
                host.pending_errors -= 1

    return recorded


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        def __init__(self, config: Any, host: Host) -> None:
            super().__init__(config)
            self.host = host

        async def startup(self, sockets: Any = None) -> None:
            self.host.loop = asyncio.get_running_loop()
            self.wakeup = asyncio.Event()
            await super().startup(sockets=sockets)

        async def main_loop(self) -> None:
            # uvicorn's own loop looks at `should_exit` every 0.1 s: a check that stops the
            # server, and each recycled host, would wait that long (`exit_soon` wakes it).
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), 0.1)
                should_exit = await self.on_tick(counter)

        async def shutdown(self, sockets: Any = None) -> None:
            if not self.force_exit:
                await super().shutdown(sockets=sockets)
                return
            # Recycling: nobody waits for this app any more (uvicorn's graceful path would
            # sleep 0.1 s for the connections to notice); asyncio.run cancels what is left.
            for server in self.servers:
                server.close()
            for connection in list(self.server_state.connections):
                connection.shutdown()
            for task in list(self.server_state.tasks):
                task.cancel()

        def exit_soon(self, force: bool = False) -> None:
            """Stop serving (without the lifespan's shutdown with `force`), from any thread."""
            self.force_exit = self.force_exit or force
            self.should_exit = True
            loop = self.host.loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self.wakeup.set)

    return Server


class _Output:
    """What the host printed (its stdout and stderr, one pipe), drained by a thread of its
    own so that printing never blocks: the last MAX_LOG_BYTES are kept, the rest dropped."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.fd = -1
        self.lock = threading.Lock()

    def drain(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        while True:
            select.select([fd], [], [])
            with self.lock:
                if not self._read_available():
                    return

    def clear(self) -> None:
        with self.lock:
            self.kept.clear()

    def tail(self, limit: int) -> str:
        """The last `limit` bytes printed, as text, everything flushed so far included."""
        with self.lock:
            if self.fd >= 0:
                self._read_available()
            return bytes(self.kept[-limit:]).decode("utf-8", "replace")

    def _read_available(self) -> bool:
        """Keep what the pipe holds now; False at its end."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.kept += chunk
            del self.kept[: max(0, len(self.kept) - MAX_LOG_BYTES)]


def run(request: dict[str, Any], output_fd: int) -> None:
    """In the forked child: connect to the trusted side twice (requests, and a monitor that
    answers where the learner's code is while a request is busy) and answer until it hangs
    up. Never returns; the process ends with `os._exit`."""
    code = 0
    try:
        control = _connect(request, "control")
        _, fds, _, _ = socket.recv_fds(control, 3, 1)
        if not fds:
            raise HostProblem("no listening socket")
        host = Host(control, socket.socket(fileno=fds[0]))
        threading.Thread(target=host.output.drain, args=(output_fd,), daemon=True).start()
        monitor = _connect(request, "monitor")
        threading.Thread(target=_answer_until_closed, args=(host, monitor, MONITOR_OPS), daemon=True).start()
        _answer_until_closed(host, control, OPS)
    except BaseException:  # noqa: BLE001 - the trusted side sees the connection end
        code = 1
    finally:
        os._exit(code)


def _connect(request: dict[str, Any], role: str) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(10)
    connection.connect(str(request["socket"]))
    hello = {"hello": request.get("nonce"), "role": role, "pid": os.getpid()}
    connection.sendall(json.dumps(hello).encode() + b"\n")
    connection.settimeout(None)
    return connection


def _answer_until_closed(host: Host, connection: socket.socket, ops: dict[str, Any]) -> None:
    with connection.makefile("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            reply = host.answer(json.loads(line), ops)
            connection.sendall(_encoded(reply))
    os._exit(0)


def _encoded(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply, default=_plain).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        return json.dumps({"ok": False, "error": f"the answer is not JSON: {exc}"}).encode() + b"\n"


def _plain(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)[:MAX_TEXT]

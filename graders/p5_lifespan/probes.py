"""Probes for problem 5, run inside the app host beside the learner's code (workbook/apphost.py).

They observe and never judge: the grader (test_lifespan.py) chooses the data, passes it in,
and judges what comes back. `watch` is the setup probe (it runs before the import): it wraps
sqlite3.connect, os.replace and os.rename, so later probes can say which connections the app
opened and closed, and which file was renamed onto which. Module-level state lives as long
as the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import os
import sqlite3
import tempfile
import time
import warnings
from typing import Any

from workbook.spies import counting_connect

# What probes of this menu replace in libraries, put back before the host's next
# check (workbook/apphost.py, `Host.recycle`).
PATCHED = ("sqlite3.connect", "os.replace", "os.rename", "tempfile.tempdir")

MAX_TEXT = 100_000
MAX_KEPT = 50

connections: list[Any] = []
renames: list[dict[str, Any]] = []
caught: list[dict[str, Any]] = []
failing: dict[str, str | None] = {"onto": None}
cycle: dict[str, Any] = {}


def real_path(path: Any, dir_fd: Any = None) -> str | None:
    try:
        text = os.fsdecode(path)
        if isinstance(dir_fd, int) and not os.path.isabs(text):
            text = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), text)
        return os.path.realpath(text)
    except (TypeError, ValueError, OSError):
        return None


def text_of(path: str | None) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:  # type: ignore[arg-type]
            return file.read(MAX_TEXT)
    except (OSError, TypeError, ValueError):
        return None


def _spy_connect() -> None:
    sqlite3.connect = counting_connect(connections)  # type: ignore[assignment]


def _spy_rename(function: str) -> None:
    real = getattr(os, function)

    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        call: dict[str, Any] = {
            "function": function,
            "src": real_path(src, kwargs.get("src_dir_fd")),
            "dst": real_path(dst, kwargs.get("dst_dir_fd")),
            "done": False,
        }
        call["src_text"] = text_of(call["src"])
        renames.append(call)
        del renames[:-MAX_KEPT]
        if failing["onto"] is not None and call["dst"] == failing["onto"]:
            raise OSError(errno.EIO, f"the grader made os.{function}() fail on purpose", os.fsdecode(dst))
        real(src, dst, *args, **kwargs)
        call["done"] = True

    setattr(os, function, rename)


def _record_warning(message: Any, category: Any, filename: str, lineno: int, *args: Any, **kwargs: Any) -> None:
    if len(caught) < MAX_KEPT:
        caught.append(
            {
                "category": category.__name__,
                "deprecation": issubclass(category, DeprecationWarning),
                "message": str(message)[:2000],
                "filename": str(filename),
                "lineno": lineno,
            }
        )


def watch(host: Any, folders: list[str] | None = None, files: dict[str, str] | None = None, warn: bool = False) -> None:
    """Setup probe: spies on sqlite3.connect, os.replace and os.rename; tempfile's default folder
    set to `system-temp` in the working folder; the time zone re-read from TZ; `folders` and
    `files` ({relative path: text}) created; with `warn`, every warning recorded."""
    _spy_connect()
    for function in ("replace", "rename"):
        _spy_rename(function)
    os.makedirs("system-temp", exist_ok=True)
    tempfile.tempdir = os.path.realpath("system-temp")
    time.tzset()
    prepare(host, folders=folders, files=files)
    if warn:
        warnings.simplefilter("always")
        warnings.showwarning = _record_warning


def prepare(
    host: Any, folders: list[str] | None = None, files: dict[str, str] | None = None, env: dict[str, Any] | None = None
) -> None:
    """Create `folders` and `files`, and set (a string) or remove (None) environment variables."""
    for folder in folders or []:
        os.makedirs(folder, exist_ok=True)
    for path, text in (files or {}).items():
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
    for name, value in (env or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)


def fail_renames_onto(host: Any, path: str | None) -> None:
    """From now on a rename onto `path` raises OSError (None: renames work again)."""
    failing["onto"] = real_path(path) if path is not None else None


def seen(host: Any) -> dict[str, Any]:
    """The connections opened (closed or not), the renames, the warnings, and the real paths
    of the working folder and of tempfile's folder."""
    calls = [{**call, "src_exists": bool(call["src"]) and os.path.exists(call["src"])} for call in renames]
    return {
        "connections": [{"closed": bool(getattr(c, "was_closed", False))} for c in connections],
        "renames": calls,
        "warnings": list(caught),
        "cwd": os.path.realpath("."),
        "temp": os.path.realpath(tempfile.gettempdir()),
    }


def look(host: Any, path: str) -> dict[str, Any]:
    """What is at `path`: whether it exists, the text of a file, the names in a folder."""
    names = None
    with contextlib.suppress(OSError):
        names = sorted(os.listdir(path)) if os.path.isdir(path) else None
    return {
        "exists": os.path.exists(path),
        "is_file": os.path.isfile(path),
        "text": text_of(path) if os.path.isfile(path) else None,
        "names": names,
        "real": real_path(path),
    }


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else {"repr": repr(value)[:200]}


def app_state(host: Any) -> dict[str, Any]:
    """What app.state holds: the type of `db` and `request_count`."""
    state = host.attribute("app").state
    db = getattr(state, "db", None)
    return {
        "db": None if db is None else type(db).__name__,
        "db_repr": None if db is None else repr(db)[:200],
        "db_is_connection": isinstance(db, sqlite3.Connection),
        "request_count": _plain(getattr(state, "request_count", None)),
    }


def sql(host: Any, statement: str, params: list[Any] | None = None, on_loop: bool = True) -> dict[str, Any]:
    """Run `statement` on app.state.db (and commit): on the server's event loop, where the
    lifespan opened it, or with `on_loop` False on this probe's own thread. The rows, or the
    sqlite3 error's type and text."""
    db = getattr(host.attribute("app").state, "db", None)
    if not isinstance(db, sqlite3.Connection):
        return {"no_db": None if db is None else type(db).__name__}

    def run() -> list[list[Any]]:
        rows = db.execute(statement, tuple(params or [])).fetchall()
        db.commit()
        return [list(row) for row in rows]

    async def on_the_loop() -> list[list[Any]]:
        return run()

    try:
        return {"rows": host.on_loop(on_the_loop()) if on_loop else run()}
    except sqlite3.Error as exc:
        return {"error": type(exc).__name__, "text": str(exc)[:500]}


def migrations(host: Any, extend: list[str] | None = None, replace: list[str] | None = None) -> dict[str, Any]:
    """The module's MIGRATIONS (is it a list, its entries), after appending `extend` to it or
    binding the name MIGRATIONS to the new list `replace`."""
    module = host.module
    found = getattr(module, "MIGRATIONS", None)
    if isinstance(found, list) and extend:
        found.extend(extend)
    if replace is not None:
        module.MIGRATIONS = list(replace)
        found = module.MIGRATIONS
    is_list = isinstance(found, list)
    return {
        "is_list": is_list,
        "repr": repr(found)[:300],
        "entries": [str(entry) for entry in found] if is_list else None,
    }


def add_failing_route(host: Any, path: str) -> None:
    """Add GET `path` to the app, an endpoint that raises RuntimeError."""

    def grader_boom() -> None:
        raise RuntimeError("an error the grader raises on purpose")

    host.attribute("app").add_api_route(path, grader_boom, methods=["GET"])


def lifespan_cycle(host: Any, phase: str, timeout: float = 10.0) -> str:
    """Drive the app's ASGI lifespan on the server's loop (served with lifespan "off"), as uvicorn
    does, so the same app can start and stop twice in one process, and stop at once (uvicorn's
    own stop waits 0.1-0.2 s): "startup" sends lifespan.startup, "shutdown" lifespan.shutdown;
    each waits for the answer. Raises what the app raised."""
    return host.on_loop(_lifespan_step(host, phase, timeout), timeout + 1)


async def _lifespan_step(host: Any, phase: str, timeout: float) -> str:
    if phase == "startup":
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        # uvicorn's own lifespan state (empty with lifespan "off"): each request's scope gets a
        # copy of it, so a lifespan that yields state is seen by the endpoints, as under uvicorn.
        state = getattr(getattr(host.server, "lifespan", None), "state", None)
        state = state if isinstance(state, dict) else {}
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
        app = host.attribute("app")
        cycle.update(inbox=inbox, outbox=outbox, task=asyncio.ensure_future(app(scope, inbox.get, outbox.put)))
    await cycle["inbox"].put({"type": f"lifespan.{phase}"})
    answer = asyncio.ensure_future(cycle["outbox"].get())
    await asyncio.wait([answer, cycle["task"]], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if answer.done() and answer.result().get("type") == f"lifespan.{phase}.complete":
        return "complete"
    answer.cancel()
    await asyncio.wait([cycle["task"]], timeout=1.0)
    if cycle["task"].done() and cycle["task"].exception() is not None:
        raise cycle["task"].exception()
    return "failed" if answer.done() or cycle["task"].done() else "did not finish"


def enter_lifespan(host: Any) -> dict[str, Any]:
    """Run `async with lifespan(app)` directly (no server): what `lifespan` is, what calling it
    gave, and app.state's db and request_count inside the block. Raises what the block raised."""
    function = getattr(host.module, "lifespan", None)
    seen_inside: dict[str, Any] = {"callable": callable(function), "repr": repr(function)[:200]}
    if not callable(function):
        return seen_inside
    if inspect.isasyncgenfunction(function):  # FastAPI accepts a bare async generator too
        function = contextlib.asynccontextmanager(function)
    app = host.attribute("app")
    try:
        manager = function(app)
    except Exception as exc:  # noqa: BLE001 - a wrong signature raises TypeError here
        return {**seen_inside, "call_error": f"{type(exc).__name__}: {exc}"}
    seen_inside["manager"] = type(manager).__name__
    seen_inside["is_manager"] = hasattr(manager, "__aenter__") and hasattr(manager, "__aexit__")
    if not seen_inside["is_manager"]:
        return seen_inside

    async def run() -> None:
        async with manager:
            seen_inside.update(app_state(host))

    asyncio.run(run())
    return seen_inside

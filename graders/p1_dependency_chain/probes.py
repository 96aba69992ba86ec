"""Problem 1's probe menu: what the grader may ask of the app host that imported the
learner's module (workbook/hostkit.py, workbook/apphost.py).

Each probe is `def name(host, **args)` with JSON arguments chosen by the grader, and answers
with plain observations (values the learner's code gave, rows the database holds); the
grader judges them. Nothing here decides whether a check passes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

# The grader's own reads and writes of a database file go through REAL_SQLITE_CONNECT (saved
# before any spy) and are never counted.
from workbook.spies import REAL_SQLITE_CONNECT, counting_connect

# What probes of this menu replace in libraries, put back before the host's next
# check (workbook/apphost.py, `Host.recycle`).
PATCHED = ("sqlite3.connect", "anyio.to_thread.run_sync")

USERS_TABLE = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE)"
)
REPOSITORY_CALLS = ("create_user", "list_users", "delete_user")

# The host's life is one check: module state is this check's.
_connections: list[sqlite3.Connection] = []
_plain_repositories: dict[str, tuple[sqlite3.Connection, Any]] = {}
_in_flight = [0]  # HTTP requests the app is handling (prepare_app)
_busy = [False]  # whether the server acts busy (thread_per_step)


def _observed(value: Any) -> Any:
    """`value` as JSON shows it when it is a JSON scalar, else its repr: a Path or a SecretStr
    must not come back looking like the string it wraps."""
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


# --- the sqlite3 spy (a setup probe: installed before the learner's import) -----------------


def spy_on_sqlite_connect(host: Any) -> None:
    """Count every sqlite3.connect of the learner's code, so even `from sqlite3 import
    connect` at its import is seen."""
    sqlite3.connect = counting_connect(_connections)  # type: ignore[assignment]


def learner_connections(host: Any, settle: float = 2.0) -> list[bool]:
    """Whether each connection the learner's code opened, in order, was closed, once the
    requests sent have finished (waiting up to `settle` seconds for them)."""
    _requests_finished(settle)
    # A connection built with the learner's own factory cannot be watched: taken as closed.
    return [bool(getattr(connection, "was_closed", True)) for connection in _connections]


# --- the learner's module ------------------------------------------------------------------


def prepare_app(host: Any) -> bool:
    """Whether the module defines `app`; if it is a Starlette app, count the HTTP requests it
    is still handling: under a real server a `yield` dependency's clean-up (commit, close)
    runs after the response is sent, so an observation waits for them to finish."""
    app = getattr(host.module, "app", None)
    if app is None:
        return False
    # The grader shows what the app raised, rebuilt; uvicorn's copy in the host's output
    # would read as something the learner's code printed.
    logging.getLogger("uvicorn.error").addFilter(_not_an_app_exception)
    if callable(getattr(app, "build_middleware_stack", None)):
        inner = app.middleware_stack or app.build_middleware_stack()

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") != "http":
                return await inner(scope, receive, send)
            _in_flight[0] += 1  # on the server's one event loop: no lock needed
            try:
                return await inner(scope, receive, _switching(send) if _busy[0] else send)
            finally:
                _in_flight[0] -= 1

        app.middleware_stack = counted
    return True


def _switching(send: Any) -> Any:
    async def switching_send(message: dict[str, Any]) -> None:
        # A busy server's write may wait for the client: other requests run meanwhile.
        await asyncio.sleep(0)
        await send(message)

    return switching_send


def _not_an_app_exception(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Exception in ASGI application")


def _requests_finished(settle: float) -> None:
    deadline = time.monotonic() + settle
    while _in_flight[0] > 0 and time.monotonic() < deadline:
        time.sleep(0.002)


def settings_built(host: Any, database_path: str, api_key: str) -> list[Any]:
    """Settings() with no arguments, then Settings(database_path=..., api_key=...): the two
    fields of the second."""
    host.module.Settings()
    settings = host.module.Settings(database_path=database_path, api_key=api_key)
    return [_observed(settings.database_path), _observed(settings.api_key)]


def get_settings_values(host: Any) -> list[Any]:
    """[str(database_path), api_key] of what get_settings() returns now."""
    settings = host.module.get_settings()
    return [str(settings.database_path), _observed(settings.api_key)]


def override_settings(host: Any, database_path: str, api_key: str) -> None:
    """app.dependency_overrides[get_settings] = lambda: Settings(database_path, api_key)."""
    module = host.module
    module.app.dependency_overrides[module.get_settings] = lambda: module.Settings(
        database_path=database_path, api_key=api_key
    )


def override_repository(host: Any, users: list[dict[str, Any]]) -> None:
    """app.dependency_overrides[get_user_repo] = a repository that holds `users` in memory:
    create_user gives the last id + 1, delete_user says whether it knows the id."""
    stored = list(users)

    class FakeRepository:
        def list_users(self) -> list[dict[str, Any]]:
            return list(stored)

        def create_user(self, name: str, email: str) -> dict[str, Any]:
            stored.append({"id": stored[-1]["id"] + 1, "name": name, "email": email})
            return stored[-1]

        def delete_user(self, user_id: int) -> bool:
            return any(user["id"] == user_id for user in stored)

    host.module.app.dependency_overrides[host.module.get_user_repo] = FakeRepository


def break_list_users(host: Any, message: str) -> None:
    """UserRepository.list_users made to raise RuntimeError(message)."""

    def broken(self: Any) -> list[Any]:
        raise RuntimeError(message)

    host.module.UserRepository.list_users = broken


def plain_repository(host: Any, path: str, call: str, args: list[Any]) -> dict[str, Any]:
    """Call `call(*args)` on one UserRepository(connection) built by the first call, on a
    connection of our own to `path` (a new `users` table); answers the call's result and the
    table's rows, ordered by id, as that connection sees them."""
    if call not in REPOSITORY_CALLS:
        raise ValueError(f"no repository call {call!r}")
    if path not in _plain_repositories:
        connection = REAL_SQLITE_CONNECT(path)
        connection.execute(USERS_TABLE)
        _plain_repositories[path] = (connection, host.module.UserRepository(connection))
    connection, repository = _plain_repositories[path]
    result = getattr(repository, call)(*args)
    rows = connection.execute("SELECT id, name, email FROM users ORDER BY id").fetchall()
    return {"result": result, "stored": [{"id": row[0], "name": row[1], "email": row[2]} for row in rows]}


# --- database files ---------------------------------------------------------------------------


def seed_users(host: Any, path: str, users: list[dict[str, str]]) -> int:
    """Create the `users` table in `path`, insert `users`, then delete the one with the highest
    id (a gap only the table remembers). Returns that highest id."""
    connection = REAL_SQLITE_CONNECT(path)
    try:
        connection.execute(USERS_TABLE)
        for user in users:
            connection.execute("INSERT INTO users (name, email) VALUES (?, ?)", (user["name"], user["email"]))
        highest = connection.execute("SELECT MAX(id) FROM users").fetchone()[0]
        connection.execute("DELETE FROM users WHERE id = ?", (highest,))
        connection.commit()
        return int(highest)
    finally:
        connection.close()


def rows_in(host: Any, path: str, settle: float = 2.0) -> dict[str, Any]:
    """The rows (id, name, email) of `users` in `path`, by id, once the requests sent have
    finished (up to `settle` seconds): {"exists": false} when no file is there, {"error":
    text} when it has no such table."""
    import os

    _requests_finished(settle)
    if not os.path.exists(path):
        return {"exists": False}
    connection = REAL_SQLITE_CONNECT(path)
    try:
        rows = connection.execute("SELECT id, name, email FROM users ORDER BY id").fetchall()
        return {"exists": True, "rows": [list(row) for row in rows]}
    except sqlite3.OperationalError as exc:
        return {"exists": True, "error": str(exc)}
    finally:
        connection.close()


# --- each step of a request on a thread it has not used yet -------------------------------------


class SpareThread:
    """One daemon thread that runs the calls it is given, one at a time, until stopped.
    It stays alive for the host's life, so no other thread can get its identity."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[[], Any], Future] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._serve, name="grader-spare", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while (call := self.calls.get()) is not None:
            action, result = call
            try:
                result.set_result(action())
            except BaseException as exc:  # noqa: BLE001 - handed back to the waiting caller as is
                result.set_exception(exc)

    def run(self, action: Callable[[], Any]) -> Any:
        result: Future = Future()
        self.calls.put((action, result))
        return result.result()


class ThreadPerStep:
    """Replaces anyio.to_thread.run_sync, which FastAPI uses for every `def` dependency, both
    halves of a `def` dependency with `yield` and every `def` endpoint: each call still gets
    a worker of anyio's pool, but when that worker already ran a step of the same request,
    the step runs on a spare thread the request has not used yet."""

    def __init__(self, pooled: Callable[..., Any]) -> None:
        self.pooled = pooled
        self.request_threads: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar("request_threads")
        self.idle: list[SpareThread] = []
        self.lock = threading.Lock()

    async def run_sync(self, func: Callable[..., Any], *args: Any, **options: Any) -> Any:
        used = self.request_threads.get(None)
        if used is None:  # the first step of a request: its task keeps the set for the others
            used = set()
            self.request_threads.set(used)

        def on_this_thread() -> Any:
            used.add(threading.get_ident())
            return func(*args)

        def step() -> Any:
            if threading.get_ident() not in used:
                return on_this_thread()
            return self._on_a_spare(used, contextvars.copy_context(), on_this_thread)

        return await self.pooled(step, **options)

    def _on_a_spare(self, used: set[int], context: contextvars.Context, action: Callable[[], Any]) -> Any:
        with self.lock:
            spare = next((s for s in self.idle if s.thread.ident not in used), None)
            if spare is None:
                spare = SpareThread()
            else:
                self.idle.remove(spare)
        try:
            return spare.run(lambda: context.run(action))
        finally:
            with self.lock:
                self.idle.append(spare)


def thread_per_step(host: Any) -> None:
    """From now on the server acts as a busy one may: each step of a request runs on a worker
    thread that request has not used yet, and each message of a response is sent after the
    other requests ready to run had their turn (so an `async` endpoint's request does not
    run from start to end in one go, as it would on an idle server)."""
    import anyio.to_thread

    anyio.to_thread.run_sync = ThreadPerStep(anyio.to_thread.run_sync).run_sync  # type: ignore[method-assign]
    _busy[0] = True

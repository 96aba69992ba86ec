"""Grader for problem 1 — the dependency chain get_settings -> get_db -> get_user_repo.

Each check runs against a freshly imported app, in an empty working directory, with
DATABASE_PATH and API_KEY set to random values. sqlite3.connect is wrapped so the checks
can count connections and see whether they were closed.

One check sends requests concurrently and runs each step of a request (a `def` dependency,
the set-up and clean-up of a `yield` dependency, a `def` endpoint) on a worker thread that
request has not used yet: a busy server may do that, and then a connection opened with
sqlite3's default check_same_thread=True fails. Left to chance, the test client's worker
pool almost always hands one request the same thread, so sequential checks never see it.
"""

from __future__ import annotations

import contextvars
import itertools
import queue
import sqlite3
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from workbook.grading import (
    REAL_SQLITE_CONNECT,
    TrackedConnection,
    client,
    clip,
    describe_request,
    expect,
    expect_created,
    expect_json,
    expect_status,
    fail,
    import_learner,
    json_body,
    rng,
    sent_with,
    server_errors,
    show,
)
from workbook.words import counted

REAL_CONNECT = REAL_SQLITE_CONNECT
BOOM = "boom from the grader"
SERIAL = itertools.count(1)
USERS_TABLE = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE)"
)
FIRST_NAMES = ["Ada", "Grace", "Linus", "Guido", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Alan"]
# Names beyond ASCII: a name is text, and the checks send every class of it.
WIDE_NAMES = ["Zoë", "José", "Łukasz", "Ngũgĩ", "Søren", "Dvořák", "李雷", "Αλέξης"]
# Characters of 2, 3 and 4 bytes in UTF-8: a limit of 100 characters is not one of 100 bytes.
MULTI_BYTE = ["é", "ß", "€", "中", "🙂", "𝄞"]


@pytest.fixture
def opened(sqlite_connections: list[TrackedConnection]) -> list[TrackedConnection]:
    """The SQLite connections the learner's code opened (workbook.grading.sqlite_connections)."""
    return sqlite_connections


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    values = {"db": tmp_path / f"env-{rng.randrange(10**6)}.db", "key": f"key-{rng.randrange(16**8):08x}"}
    monkeypatch.setenv("DATABASE_PATH", str(values["db"]))
    monkeypatch.setenv("API_KEY", values["key"])
    return values


@pytest.fixture
def before_import(opened: list[TrackedConnection], config: dict[str, Any]) -> None:
    """Wrap sqlite3.connect and set the environment before the app is imported."""


@pytest.fixture
def api(learner: ModuleType) -> TestClient:
    return client(learner.app)


def new_user() -> dict[str, str]:
    name = f"{rng.choice(FIRST_NAMES + WIDE_NAMES)} {rng.randrange(1000, 9999)}"
    # The counter keeps two random emails of one check from ever colliding.
    return {"name": name, "email": f"{name.split()[0].lower()}.{next(SERIAL)}.{rng.randrange(10**6)}@example.com"}


def users_in_reverse_order(count: int) -> list[dict[str, str]]:
    """Users whose names and emails sort opposite to their creation order, so a list
    ordered by name (or email) instead of id always shows."""
    firsts = sorted(rng.sample(FIRST_NAMES, count), reverse=True)
    return [
        {"name": f"{first} {rng.randrange(1000, 9999)}", "email": f"{first.lower()}@{rng.randrange(10**6)}.example.com"}
        for first in firsts
    ]


def create(api: TestClient, user: dict[str, str]) -> dict:
    return expect_created(
        api.post("/users", json=user),
        "Creating a user should answer 201 Created.",
        no_id="POST /users answered no user object with an integer id; "
        "it should answer the created user {id, name, email}.",
    )


def app_key(learner: ModuleType) -> str:
    return learner.get_settings().api_key


def rows_in(path: Path) -> list[tuple]:
    if not Path(path).exists():
        fail(f"The database file {Path(path).name} was never created.", expected="the users written to it")
    connection = REAL_CONNECT(path)
    try:
        return connection.execute("SELECT id, name, email FROM users ORDER BY id").fetchall()
    except sqlite3.OperationalError as exc:
        fail(
            "The overridden database file has no usable `users` table: get_db should create it there.",
            expected="table users(id, name, email)",
            got=str(exc),
        )
    finally:
        connection.close()


# --- settings -------------------------------------------------------------------------


def test_settings_defaults_and_values(learner: ModuleType) -> None:
    """Settings() works without arguments and keeps database_path and api_key when given"""
    try:
        learner.Settings()
        settings = learner.Settings(database_path="chosen.db", api_key="chosen-key")
    except TypeError as exc:
        fail("Settings must accept database_path= and api_key=, each with a default.", got=f"TypeError: {exc}")
    got = (settings.database_path, settings.api_key)
    expect(
        got == ("chosen.db", "chosen-key"),
        f"Settings(...) kept {show(list(got))}, not the values it was given.",
        expected=show(["chosen.db", "chosen-key"]),
        got=show(list(got)),
    )


def test_get_settings_has_defaults(problem: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without DATABASE_PATH and API_KEY set, get_settings() uses users.db and change-me"""
    monkeypatch.delenv("DATABASE_PATH", raising=False)
    monkeypatch.delenv("API_KEY", raising=False)
    settings = import_learner(problem).get_settings()
    got = [str(settings.database_path), settings.api_key]
    expect(
        got == ["users.db", "change-me"],
        f"get_settings() gave {show(got)} with the environment variables unset, not the documented defaults.",
        expected=show(["users.db", "change-me"]),
        got=show(got),
    )


def test_get_settings_reads_environment(learner: ModuleType, config: dict) -> None:
    """get_settings() takes DATABASE_PATH and API_KEY from the environment"""
    settings = learner.get_settings()
    got = [str(settings.database_path), settings.api_key]
    expect(
        got == [str(config["db"]), config["key"]],
        f"get_settings() gave {show(got)}, not the values of DATABASE_PATH and API_KEY.",
        expected=show([str(config["db"]), config["key"]]),
        got=show(got),
    )


# --- the three endpoints --------------------------------------------------------------


def test_list_starts_empty(api: TestClient) -> None:
    """GET /users on a new database answers 200 with an empty list"""
    response = api.get("/users")
    expect_status(response, 200)
    expect_json(response, [])


def seed_existing_users(path: Path) -> int:
    """Put a random number of users, with a gap in their ids, into the database file before
    the first request, so that only the table's own id is right. Returns the highest id used."""
    connection = REAL_CONNECT(path)
    try:
        connection.execute(USERS_TABLE)
        for _ in range(rng.randrange(2, 7)):
            user = new_user()
            connection.execute("INSERT INTO users (name, email) VALUES (?, ?)", (user["name"], user["email"]))
        highest = connection.execute("SELECT MAX(id) FROM users").fetchone()[0]
        connection.execute("DELETE FROM users WHERE id = ?", (highest,))
        connection.commit()
        return highest
    finally:
        connection.close()


def test_create_user_answers_201(api: TestClient, config: dict) -> None:
    """POST /users answers 201 with the created user and the id the table gave it"""
    seed_existing_users(config["db"])
    user = new_user()
    response = api.post("/users", json=user)
    expect_created(
        response,
        "A successful POST /users should answer 201 Created.",
        no_id="The created user has no integer id; it should carry the id the table gave it.",
        expected='{"id": <int>, "name": ..., "email": ...}',
    )
    stored = [row for row in rows_in(config["db"]) if row[2] == user["email"]]
    expect(
        len(stored) == 1,
        "POST /users answered 201, but the user is not in the database file.",
        expected=f"one row with email {show(user['email'])}",
        got=f"{len(stored)} rows",
    )
    expect_json(
        response,
        {"id": stored[0][0], **user},
        "The id in the answer differs from the one the table gave the row (the database already held "
        "users before this request): answer the row's id, never one you count or choose yourself.",
    )


def test_list_in_id_order(api: TestClient) -> None:
    """GET /users lists every created user, ordered by id"""
    created = [create(api, user) for user in users_in_reverse_order(rng.randrange(3, 6))]
    response = api.get("/users")
    expect_status(response, 200)
    expect_json(
        response,
        sorted(created, key=lambda user: user["id"]),
        "GET /users should list every user as {id, name, email}, ordered by id.",
    )


def test_create_rejects_invalid_body(api: TestClient) -> None:
    """POST /users answers 422 for a blank or 101-character name (padded, multi-byte) and a missing or @-less email"""
    good = new_user()
    wide = rng.choice(MULTI_BYTE)
    for bad, why in (
        ({**good, "name": ""}, "an empty name"),
        ({**good, "name": " " * rng.randrange(1, 8)}, "a name of only spaces"),
        ({**good, "name": "x" * 101}, "a name of 101 characters"),
        (
            {**good, "name": " " + "x" * 100},
            "a name of 101 characters, the first a space (do not strip before measuring)",
        ),
        (
            {**good, "name": "x" * 100 + " "},
            "a name of 101 characters, the last a space (do not strip before measuring)",
        ),
        ({**good, "name": wide * 101}, f"a name of 101 characters {wide!r}"),
        ({**good, "email": "no-at-sign.example.com"}, "an email without @"),
        ({"name": good["name"]}, "a body without email"),
    ):
        expect_status(api.post("/users", json=bad), 422, f"The user was not refused: {why} must be refused with 422.")
    longest = {**new_user(), "name": "x" * 100}
    expect_status(
        api.post("/users", json=longest), 201, "A name of exactly 100 characters is allowed: it must be created."
    )


def test_create_accepts_every_valid_form(api: TestClient) -> None:
    """POST /users creates as sent names of 1 or 100 characters (multi-byte, padded) and any email with @"""
    serial = rng.randrange(10**6)
    wide = rng.choice(MULTI_BYTE)
    for user, why in (
        ({"name": wide * 100, "email": f"wide.{serial}@example.com"}, f"100 characters {wide!r} are 100 characters"),
        ({"name": " " + "y" * 98 + " ", "email": f"padded.{serial}@example.com"}, "spaces around a name count"),
        ({"name": rng.choice("xyz"), "email": f"one.{serial}@example.com"}, "a name of one character"),
        ({"name": new_user()["name"], "email": "ops@localhost"}, "ops@localhost contains @"),
        ({"name": new_user()["name"], "email": f"zoë.{serial}@exämple.org"}, "a non-ASCII email contains @ too"),
        ({"name": new_user()["name"], "email": f"{serial}@x"}, "the shortest email with @"),
    ):
        response = api.post("/users", json=user)
        expect_status(response, 201, f"A valid user was not created ({why}): it must be created with 201.")
        body = json_body(response)
        got = {"name": body.get("name"), "email": body.get("email")} if isinstance(body, dict) else body
        expect(
            got == user,
            f"The user was created, but not as sent ({why}): store and answer name and email unchanged.",
            sent=describe_request(response.request),
            expected=show(user),
            got=show(body),
        )


def test_ids_never_reused_after_delete(api: TestClient, learner: ModuleType) -> None:
    """After a DELETE, a new user gets an id never used before, and GET /users stays in id order"""
    created = [create(api, new_user()) for _ in range(rng.randrange(2, 5))]
    newest = max(created, key=lambda user: user["id"])
    response = api.delete(f"/users/{newest['id']}", headers={"X-API-Key": app_key(learner)})
    expect_status(response, 204, "Deleting the newest user with the right key should answer 204.")
    late = create(api, new_user())
    expect(
        late["id"] > newest["id"],
        f"The id {late['id']} was given again: user {newest['id']} was deleted, and a new user must get an id "
        "never used before (keep AUTOINCREMENT from CREATE_USERS_TABLE; never compute ids yourself).",
        expected=f"an id above {newest['id']}",
        got=show(late),
    )
    remaining = sorted([user for user in created if user is not newest] + [late], key=lambda user: user["id"])
    expect_json(api.get("/users"), remaining, "After a DELETE and a new POST, GET /users must list every user by id.")


def test_duplicate_email_answers_409(api: TestClient) -> None:
    """POST /users with an email already registered answers 409, not 500"""
    first = new_user()
    create(api, first)
    again = {"name": new_user()["name"], "email": first["email"]}
    expect_status(api.post("/users", json=again), 409, "A second user with the same email should get 409 Conflict.")


def test_delete_with_key_answers_204(api: TestClient, learner: ModuleType) -> None:
    """DELETE /users/{id} with the right X-API-Key answers 204 with an empty body and removes the user"""
    keep, gone = create(api, new_user()), create(api, new_user())
    response = api.delete(f"/users/{gone['id']}", headers={"X-API-Key": app_key(learner)})
    expect_status(response, 204, "A successful DELETE should answer 204 No Content.")
    expect(response.content == b"", "The 204 answer has a body; a 204 must have none.", got=show(response.text))
    expect_json(
        api.get("/users"),
        [keep],
        "After the DELETE, GET /users lists other users than expected: only the other user should remain.",
    )


def test_delete_without_key_is_403(api: TestClient) -> None:
    """DELETE without an X-API-Key header is refused with 403 (not 422) and deletes nothing"""
    user = create(api, new_user())
    expect_status(api.delete(f"/users/{user['id']}"), 403, "A missing API key must be refused with 403 Forbidden.")
    expect_json(api.get("/users"), [user], "A refused DELETE must not delete anything.")


def test_delete_with_wrong_key_is_403(api: TestClient, learner: ModuleType) -> None:
    """DELETE with a wrong X-API-Key is refused with 403 and deletes nothing"""
    user = create(api, new_user())
    wrong = app_key(learner) + "-wrong"
    expect_status(
        api.delete(f"/users/{user['id']}", headers={"X-API-Key": wrong}),
        403,
        "A wrong API key must be refused with 403 Forbidden.",
    )
    expect_json(api.get("/users"), [user], "A refused DELETE must not delete anything.")


def test_delete_unknown_id_without_key_is_403(api: TestClient, learner: ModuleType) -> None:
    """DELETE checks the X-API-Key before the id: an unknown id without the right key is 403, not 404"""
    user = create(api, new_user())
    missing = user["id"] + rng.randrange(100, 1000)
    for headers in ({}, {"X-API-Key": app_key(learner) + "-wrong"}):
        expect_status(
            api.delete(f"/users/{missing}", headers=headers),
            403,
            "Without the right key, DELETE must answer 403 before looking the id up: "
            "a stranger must not learn which ids exist.",
        )


def test_delete_unknown_id_is_404(api: TestClient, learner: ModuleType) -> None:
    """DELETE of an id that does not exist answers 404"""
    user = create(api, new_user())
    missing = user["id"] + rng.randrange(100, 1000)
    expect_status(
        api.delete(f"/users/{missing}", headers={"X-API-Key": app_key(learner)}),
        404,
        "Deleting an unknown id should answer 404 Not Found.",
    )


# --- the chain: overrides, connections ------------------------------------------------


def override_settings(learner: ModuleType, tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / f"override-{rng.randrange(10**6)}.db"
    key = f"override-{rng.randrange(16**8):08x}"
    learner.app.dependency_overrides[learner.get_settings] = lambda: learner.Settings(
        database_path=str(path), api_key=key
    )
    return path, key


def test_settings_override_chooses_database(learner: ModuleType, api: TestClient, tmp_path: Path) -> None:
    """Overriding get_settings sends every write into the overridden database file"""
    path, _ = override_settings(learner, tmp_path)
    users = [create(api, new_user()) for _ in range(2)]
    expected = [(user["id"], user["name"], user["email"]) for user in users]
    found = rows_in(path)
    expect(
        found == expected,
        "With get_settings overridden, the users did not land in the overridden file. "
        "Does get_db take its settings through Depends(get_settings)?",
        expected=show(expected),
        got=show(found),
    )


def test_settings_override_chooses_api_key(learner: ModuleType, api: TestClient, tmp_path: Path) -> None:
    """Overriding get_settings changes which X-API-Key DELETE accepts"""
    _, key = override_settings(learner, tmp_path)
    user = create(api, new_user())
    expect_status(
        api.delete(f"/users/{user['id']}", headers={"X-API-Key": key + "x"}),
        403,
        "Only the overridden key may be accepted.",
    )
    expect_status(
        api.delete(f"/users/{user['id']}", headers={"X-API-Key": key}),
        204,
        "The key from the overridden settings must be accepted. Does DELETE get its settings through Depends?",
    )


def test_one_connection_per_request(api: TestClient, opened: list) -> None:
    """Each request opens exactly one SQLite connection and closes it afterwards"""
    for method, path, body in (("POST", "/users", new_user()), ("GET", "/users", None)):
        before = len(opened)
        response = api.request(method, path, json=body)
        expect_status(response, 201 if method == "POST" else 200)
        count = len(opened) - before
        expect(
            count == 1,
            f"{method} {path} opened {count} SQLite connections, expected exactly one (in get_db).",
            expected="1 sqlite3.connect call",
            got=f"{count} calls",
        )
        expect(
            getattr(opened[-1], "was_closed", True),
            f"The connection opened for {method} {path} was left open: close it after the request.",
            expected="connection.close() after the request (in a finally: block)",
            got="the connection still open",
        )


def test_connection_closed_when_endpoint_raises(learner: ModuleType, opened: list) -> None:
    """The connection is closed even when the endpoint fails (409, or an unexpected error)"""
    api = client(learner.app, raise_server_exceptions=False)
    user = new_user()
    create(api, user)
    before = len(opened)
    duplicate = api.post("/users", json=user)
    expect_status(duplicate, 409, "A duplicate email should answer 409.")
    expect(
        len(opened) > before and all(getattr(c, "was_closed", True) for c in opened[before:]),
        "After a request that ended in 409 the connection was left open: close it in a finally: block.",
        sent=describe_request(duplicate.request),
        expected="the connection closed after the request",
        got="the connection left open",
    )

    def broken(self: Any) -> list:
        raise RuntimeError(BOOM)

    learner.UserRepository.list_users = broken
    before = len(opened)
    raised_before = len(server_errors())
    failed = api.get("/users")
    # An exception of the learner's own before list_users() (a typo, a dependency given
    # without Depends) is what to fix first, and is the cause the other checks share.
    own = [exc for exc in server_errors()[raised_before:] if str(exc) != BOOM]
    if own:
        fail(
            f"GET /users raised {type(own[-1]).__name__} before list_users() was called, so this check "
            "could not make list_users() raise and see the connection closed.",
            sent=describe_request(failed.request),
            because=own[-1],
        )
    expect(
        len(opened) > before,
        "GET /users opened no SQLite connection: its endpoint should get the repository with "
        "Depends(get_user_repo), which gets the connection with Depends(get_db).",
        sent="GET /users, with UserRepository.list_users made to raise RuntimeError",
        expected="one connection opened, and closed after the failed request",
        got="no connection opened",
    )
    expect(
        all(getattr(c, "was_closed", True) for c in opened[before:]),
        "After list_users() raised, the connection was left open: close it in a finally: block.",
        sent="GET /users, with UserRepository.list_users made to raise RuntimeError",
        expected="the connection closed after the failed request",
        got="the connection left open",
    )


def test_repository_override_reaches_every_endpoint(learner: ModuleType, api: TestClient) -> None:
    """Overriding get_user_repo changes what GET, POST and DELETE /users use"""
    stored = [{"id": rng.randrange(500, 900), **new_user()}]

    class FakeRepository:
        def list_users(self) -> list[dict]:
            return list(stored)

        def create_user(self, name: str, email: str) -> dict:
            stored.append({"id": stored[-1]["id"] + 1, "name": name, "email": email})
            return stored[-1]

        def delete_user(self, user_id: int) -> bool:
            return any(user["id"] == user_id for user in stored)

    learner.app.dependency_overrides[learner.get_user_repo] = FakeRepository
    expect_json(api.get("/users"), stored, "GET /users must return what the overriding repository lists.")
    extra = new_user()
    response = api.post("/users", json=extra)
    expect_status(response, 201)
    expect_json(
        response,
        {"id": stored[0]["id"] + 1, **extra},
        "POST /users must return what the overriding repository created.",
    )
    key = {"X-API-Key": app_key(learner)}
    expect_status(
        api.delete(f"/users/{stored[0]['id']}", headers=key),
        204,
        "DELETE must ask the overriding repository, which knows this id.",
    )
    expect_status(
        api.delete(f"/users/{stored[0]['id'] - 1}", headers=key),
        404,
        "DELETE must ask the overriding repository, which does not know this id.",
    )


def test_repository_on_a_plain_connection(learner: ModuleType, tmp_path: Path) -> None:
    """UserRepository(conn) creates, lists and deletes users on a connection you hand it, with the table's own ids"""
    connection = REAL_CONNECT(tmp_path / "direct.db")
    try:
        connection.execute(USERS_TABLE)
        repo = learner.UserRepository(connection)

        def stored() -> list[dict]:
            rows = connection.execute("SELECT id, name, email FROM users ORDER BY id").fetchall()
            return [{"id": row[0], "name": row[1], "email": row[2]} for row in rows]

        created = [repo.create_user(u["name"], u["email"]) for u in users_in_reverse_order(3)]
        expect(
            created == stored(),
            "create_user(name, email) returned other users than the table holds: return {id, name, email} "
            "with the row's id.",
            expected=show(stored()),
            got=show(created),
        )
        listed = repo.list_users()
        expect(
            listed == stored(),
            "list_users() returned other users, or another order, than the table's users ordered by id.",
            expected=show(stored()),
            got=show(listed),
        )
        gone = stored()[1]["id"]
        results = [repo.delete_user(gone), repo.delete_user(gone)]
        expect(
            results == [True, False],
            "delete_user(id) did not return True for a user it deleted, then False for the same id again.",
            expected="[true, false]",
            got=show(results),
        )
        late = new_user()
        after_delete = repo.create_user(late["name"], late["email"])
        expect(
            [after_delete] == stored()[-1:] and repo.list_users() == stored(),
            "A user created after a delete did not get the table's new id (do not compute ids yourself).",
            expected=show(stored()),
            got=show({"created": after_delete, "listed": repo.list_users()}),
        )
    finally:
        connection.close()


# --- concurrent requests, each step on another thread ---------------------------------


class SpareThread:
    """One daemon thread that runs the calls it is given, one at a time, until stopped.
    It stays alive until the check ends, so no other thread can get its identity."""

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

    def stop(self) -> None:
        self.calls.put(None)


class ThreadPerStep:
    """Replaces anyio.to_thread.run_sync, which FastAPI uses for every `def` dependency, both
    halves of a `def` dependency with `yield` and every `def` endpoint: each call still gets
    a worker of anyio's pool, but when that worker already ran a step of the same request,
    the step runs on a spare thread the request has not used yet."""

    def __init__(self) -> None:
        self.pooled = anyio.to_thread.run_sync
        self.request_threads: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar("request_threads")
        self.spares: list[SpareThread] = []
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
                self.spares.append(spare)
            else:
                self.idle.remove(spare)
        try:
            return spare.run(lambda: context.run(action))
        finally:
            with self.lock:
                self.idle.append(spare)

    def stop(self) -> None:
        for spare in self.spares:
            spare.stop()


@pytest.fixture
def thread_per_step(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadPerStep]:
    switching = ThreadPerStep()
    monkeypatch.setattr(anyio.to_thread, "run_sync", switching.run_sync)
    yield switching
    switching.stop()


CONCURRENT_CLIENTS = 8


def test_concurrent_requests_all_succeed(learner: ModuleType, thread_per_step: ThreadPerStep) -> None:
    """Concurrent POST and GET /users all succeed, with get_db and the endpoint on different worker threads"""
    users = [new_user() for _ in range(rng.randrange(10, 16))]
    requests: list[tuple[str, dict[str, str] | None]] = [("POST", user) for user in users]
    requests += [("GET", None)] * rng.randrange(8, 13)
    rng.shuffle(requests)
    with client(learner.app, raise_server_exceptions=False) as api:
        with ThreadPoolExecutor(CONCURRENT_CLIENTS) as senders:
            responses = list(senders.map(lambda request: api.request(request[0], "/users", json=request[1]), requests))
        wrong = [r for r in responses if r.status_code != (201 if r.request.method == "POST" else 200)]
        if wrong:
            fail_concurrent(wrong, len(responses), Path(learner.__file__).parent)
        listed = api.get("/users")
    created = [
        expect_created(
            response,
            "A concurrent POST /users should answer 201 Created.",
            no_id="A concurrent POST /users answered no user object with an integer id.",
        )
        for response in responses
        if response.request.method == "POST"
    ]
    expect_json(
        listed,
        sorted(created, key=lambda user: user["id"]),
        "After the concurrent requests, GET /users should list every user they created, ordered by id.",
    )


def fail_concurrent(wrong: list[Any], total: int, learner_folder: Path) -> None:
    statuses = " or ".join(str(code) for code in sorted({response.status_code for response in wrong}))
    # The cause is the first failed POST's error (else the first GET's), never whichever
    # thread failed first: the same code must always give the same cause.
    wrong = sorted(wrong, key=lambda response: response.request.method != "POST")
    first = describe_request(wrong[0].request)
    raised = server_errors()
    # Failing alike, POSTs come first here too, whichever thread raised first.
    by_method = sorted(raised, key=lambda exc: not (sent_with(exc) or "").startswith("POST"))
    cause, sent = first_learner_error([exc for exc in raised if sent_with(exc) == first] or by_method, learner_folder)
    if cause is None and all(response.status_code < 500 for response in wrong):
        # A wrong status every request gets alike, not a concurrency fault: the same
        # mismatch (and cause) as the single-request checks report.
        expect_status(wrong[0], 201 if wrong[0].request.method == "POST" else 200)
    if cause is not None and "same thread" in str(cause):
        todo = "open the SQLite connection with check_same_thread=False."
    else:
        todo = (
            "requests that arrive together, each step on another worker thread as a busy server may run "
            "them, must succeed like single requests. What does your code share between requests or threads?"
        )
    fail(
        f"{len(wrong)} of {counted(total, 'concurrent request')} answered {statuses}, expected 201 (POST) "
        f"or 200 (GET): {todo}",
        sent=sent or describe_request(wrong[0].request),
        expected="status 201 for every POST /users, 200 for every GET /users",
        got=f"status {statuses} for {len(wrong)} of them, the first: {clip(wrong[0].text)}",
        because=cause,
    )


def first_learner_error(raised: list[BaseException], learner_folder: Path) -> tuple[BaseException | None, str | None]:
    """The first exception (or one it was raised while handling) whose innermost frame is in
    the learner's files, so the endpoint's error, not the one the clean-up raised after it;
    and the request it was raised for."""
    for exc in raised:
        current: BaseException | None = exc
        while current is not None:
            frames = traceback.extract_tb(current.__traceback__)
            if frames and Path(frames[-1].filename).parent == learner_folder:
                return current, sent_with(exc)
            current = current.__context__
    return (raised[0], sent_with(raised[0])) if raised else (None, None)

"""Grader for problem 1 — the dependency chain get_settings -> get_db -> get_user_repo.

Each check runs against an app host (workbook/hostkit.py): the learner's module freshly
imported in a process of its own, served by a real uvicorn, in an empty working directory,
with DATABASE_PATH and API_KEY set to random values. sqlite3.connect is wrapped there before
the import (probes.py), so the checks can count connections and see whether they were closed.

One check sends requests concurrently and runs each step of a request (a `def` dependency,
the set-up and clean-up of a `yield` dependency, a `def` endpoint) on a worker thread that
request has not used yet: a busy server may do that, and then a connection opened with
sqlite3's default check_same_thread=True fails. Left to chance, the server's worker pool
almost always hands one request the same thread, so sequential checks never see it.
"""

from __future__ import annotations

import itertools
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from workbook.grading import (
    LearnerImportError,
    clip,
    describe_request,
    expect,
    expect_created,
    expect_json,
    expect_status,
    fail,
    json_body,
    rng,
    sent_with,
    server_errors,
    show,
)
from workbook.hostkit import AppHost, RemoteClient, learner_folder
from workbook.words import counted

BOOM = "boom from the grader"
SERIAL = itertools.count(1)
FIRST_NAMES = ["Ada", "Grace", "Linus", "Guido", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Alan"]
# Names beyond ASCII: a name is text, and the checks send every class of it.
WIDE_NAMES = ["Zoë", "José", "Łukasz", "Ngũgĩ", "Søren", "Dvořák", "李雷", "Αλέξης"]
# Characters of 2, 3 and 4 bytes in UTF-8: a limit of 100 characters is not one of 100 bytes.
MULTI_BYTE = ["é", "ß", "€", "中", "🙂", "𝄞"]
ENVIRONMENT = ["DATABASE_PATH", "API_KEY"]
# Installed in every host before the learner's import, so even `from sqlite3 import connect`
# is counted (probes.spy_on_sqlite_connect).
SQLITE_SPY = ("spy_on_sqlite_connect", {})


@pytest.fixture
def config() -> dict[str, str]:
    """This check's DATABASE_PATH (a file name in the host's own working folder) and API_KEY."""
    return {"db": f"env-{rng.randrange(10**6)}.db", "key": f"key-{rng.randrange(16**8):08x}"}


@pytest.fixture
def host_env(config: dict[str, str]) -> dict[str, str]:
    return {"DATABASE_PATH": config["db"], "API_KEY": config["key"]}


@pytest.fixture
def host_setup() -> list[tuple[str, dict[str, Any]]]:
    return [SQLITE_SPY]


@pytest.fixture
def host(host: AppHost, problem: Any) -> AppHost:
    """The kit's host, refused like an import error when the module defines no `app`."""
    return with_app(host, problem)


def with_app(host: AppHost, problem: Any) -> AppHost:
    """`host`, once the module is seen to define `app` (as importing it in-process required);
    raises LearnerImportError otherwise."""
    if not host.probe("prepare_app"):
        raise LearnerImportError(
            f"{problem.module.replace('.', '/')}.py defines no `app`. "
            "Keep the line `app = FastAPI(...)` at module level."
        )
    return host


@pytest.fixture
def api(host: AppHost) -> RemoteClient:
    return host.client()


def connections(host: AppHost) -> list[bool]:
    """Whether each SQLite connection the learner's code opened, in order, was closed, once
    the requests sent so far have finished."""
    return list(host.probe("learner_connections"))


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


def create(api: RemoteClient, user: dict[str, str]) -> dict:
    return expect_created(
        api.post("/users", json=user),
        "Creating a user should answer 201 Created.",
        no_id="POST /users answered no user object with an integer id; "
        "it should answer the created user {id, name, email}.",
    )


def app_key(host: AppHost) -> Any:
    """The api_key of what the learner's get_settings() returns in the host."""
    return host.probe("get_settings_values")[1]


def rows_in(host: AppHost, path: str) -> list[tuple]:
    found = host.probe("rows_in", path=path)
    if not found.get("exists"):
        fail(f"The database file {Path(path).name} was never created.", expected="the users written to it")
    if "error" in found:
        fail(
            "The overridden database file has no usable `users` table: get_db should create it there.",
            expected="table users(id, name, email)",
            got=str(found["error"]),
        )
    return [tuple(row) for row in found["rows"]]


# --- settings -------------------------------------------------------------------------


def test_settings_defaults_and_values(host: AppHost) -> None:
    """Settings() works without arguments and keeps database_path and api_key when given"""
    chosen = [f"chosen-{rng.randrange(10**6)}.db", f"chosen-key-{rng.randrange(16**6):06x}"]
    try:
        got = host.probe("settings_built", database_path=chosen[0], api_key=chosen[1])
    except TypeError as exc:
        fail("Settings must accept database_path= and api_key=, each with a default.", got=f"TypeError: {exc}")
    expect(
        got == chosen,
        f"Settings(...) kept {show(got)}, not the values it was given.",
        expected=show(chosen),
        got=show(got),
    )


def test_get_settings_has_defaults(problem: Any, new_host: Any) -> None:
    """Without DATABASE_PATH and API_KEY set, get_settings() uses users.db and change-me"""
    unset = with_app(new_host(unset=ENVIRONMENT), problem)
    got = unset.probe("get_settings_values")
    expect(
        got == ["users.db", "change-me"],
        f"get_settings() gave {show(got)} with the environment variables unset, not the documented defaults.",
        expected=show(["users.db", "change-me"]),
        got=show(got),
    )


def test_get_settings_reads_environment(host: AppHost, config: dict) -> None:
    """get_settings() takes DATABASE_PATH and API_KEY from the environment"""
    got = host.probe("get_settings_values")
    expect(
        got == [config["db"], config["key"]],
        f"get_settings() gave {show(got)}, not the values of DATABASE_PATH and API_KEY.",
        expected=show([config["db"], config["key"]]),
        got=show(got),
    )


# --- the three endpoints --------------------------------------------------------------


def test_list_starts_empty(api: RemoteClient) -> None:
    """GET /users on a new database answers 200 with an empty list"""
    response = api.get("/users")
    expect_status(response, 200)
    expect_json(response, [])


def seed_existing_users(host: AppHost, path: str) -> int:
    """Put a random number of users, with a gap in their ids, into the database file before
    the first request, so that only the table's own id is right. Returns the highest id used."""
    return int(host.probe("seed_users", path=path, users=[new_user() for _ in range(rng.randrange(2, 7))]))


def test_create_user_answers_201(host: AppHost, config: dict) -> None:
    """POST /users answers 201 with the created user and the id the table gave it"""
    seed_existing_users(host, config["db"])
    api = host.client()
    user = new_user()
    response = api.post("/users", json=user)
    expect_created(
        response,
        "A successful POST /users should answer 201 Created.",
        no_id="The created user has no integer id; it should carry the id the table gave it.",
        expected='{"id": <int>, "name": ..., "email": ...}',
    )
    stored = [row for row in rows_in(host, config["db"]) if row[2] == user["email"]]
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


def test_list_in_id_order(api: RemoteClient) -> None:
    """GET /users lists every created user, ordered by id"""
    created = [create(api, user) for user in users_in_reverse_order(rng.randrange(3, 6))]
    response = api.get("/users")
    expect_status(response, 200)
    expect_json(
        response,
        sorted(created, key=lambda user: user["id"]),
        "GET /users should list every user as {id, name, email}, ordered by id.",
    )


def test_create_rejects_invalid_body(api: RemoteClient) -> None:
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


def test_create_accepts_every_valid_form(api: RemoteClient) -> None:
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


def test_ids_never_reused_after_delete(host: AppHost, api: RemoteClient) -> None:
    """After a DELETE, a new user gets an id never used before, and GET /users stays in id order"""
    created = [create(api, new_user()) for _ in range(rng.randrange(2, 5))]
    newest = max(created, key=lambda user: user["id"])
    response = api.delete(f"/users/{newest['id']}", headers={"X-API-Key": app_key(host)})
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


def test_duplicate_email_answers_409(api: RemoteClient) -> None:
    """POST /users with an email already registered answers 409, not 500"""
    first = new_user()
    create(api, first)
    again = {"name": new_user()["name"], "email": first["email"]}
    expect_status(api.post("/users", json=again), 409, "A second user with the same email should get 409 Conflict.")


def test_delete_with_key_answers_204(host: AppHost, api: RemoteClient) -> None:
    """DELETE /users/{id} with the right X-API-Key answers 204 with an empty body and removes the user"""
    keep, gone = create(api, new_user()), create(api, new_user())
    response = api.delete(f"/users/{gone['id']}", headers={"X-API-Key": app_key(host)})
    expect_status(response, 204, "A successful DELETE should answer 204 No Content.")
    expect(response.content == b"", "The 204 answer has a body; a 204 must have none.", got=show(response.text))
    expect_json(
        api.get("/users"),
        [keep],
        "After the DELETE, GET /users lists other users than expected: only the other user should remain.",
    )


def test_delete_without_key_is_403(api: RemoteClient) -> None:
    """DELETE without an X-API-Key header is refused with 403 (not 422) and deletes nothing"""
    user = create(api, new_user())
    expect_status(api.delete(f"/users/{user['id']}"), 403, "A missing API key must be refused with 403 Forbidden.")
    expect_json(api.get("/users"), [user], "A refused DELETE must not delete anything.")


def test_delete_with_wrong_key_is_403(host: AppHost, api: RemoteClient) -> None:
    """DELETE with a wrong X-API-Key is refused with 403 and deletes nothing"""
    user = create(api, new_user())
    wrong = app_key(host) + "-wrong"
    expect_status(
        api.delete(f"/users/{user['id']}", headers={"X-API-Key": wrong}),
        403,
        "A wrong API key must be refused with 403 Forbidden.",
    )
    expect_json(api.get("/users"), [user], "A refused DELETE must not delete anything.")


def test_delete_unknown_id_without_key_is_403(host: AppHost, api: RemoteClient) -> None:
    """DELETE checks the X-API-Key before the id: an unknown id without the right key is 403, not 404"""
    user = create(api, new_user())
    missing = user["id"] + rng.randrange(100, 1000)
    for headers in ({}, {"X-API-Key": app_key(host) + "-wrong"}):
        expect_status(
            api.delete(f"/users/{missing}", headers=headers),
            403,
            "Without the right key, DELETE must answer 403 before looking the id up: "
            "a stranger must not learn which ids exist.",
        )


def test_delete_unknown_id_is_404(host: AppHost, api: RemoteClient) -> None:
    """DELETE of an id that does not exist answers 404"""
    user = create(api, new_user())
    missing = user["id"] + rng.randrange(100, 1000)
    expect_status(
        api.delete(f"/users/{missing}", headers={"X-API-Key": app_key(host)}),
        404,
        "Deleting an unknown id should answer 404 Not Found.",
    )


# --- the chain: overrides, connections ------------------------------------------------


def override_settings(host: AppHost) -> tuple[str, str]:
    path = f"override-{rng.randrange(10**6)}.db"
    key = f"override-{rng.randrange(16**8):08x}"
    host.probe("override_settings", database_path=path, api_key=key)
    return path, key


def test_settings_override_chooses_database(host: AppHost, api: RemoteClient) -> None:
    """Overriding get_settings sends every write into the overridden database file"""
    path, _ = override_settings(host)
    users = [create(api, new_user()) for _ in range(2)]
    expected = [(user["id"], user["name"], user["email"]) for user in users]
    found = rows_in(host, path)
    expect(
        found == expected,
        "With get_settings overridden, the users did not land in the overridden file. "
        "Does get_db take its settings through Depends(get_settings)?",
        expected=show(expected),
        got=show(found),
    )


def test_settings_override_chooses_api_key(host: AppHost, api: RemoteClient) -> None:
    """Overriding get_settings changes which X-API-Key DELETE accepts"""
    _, key = override_settings(host)
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


def test_one_connection_per_request(host: AppHost, api: RemoteClient) -> None:
    """Each request opens exactly one SQLite connection and closes it afterwards"""
    for method, path, body in (("POST", "/users", new_user()), ("GET", "/users", None)):
        before = len(connections(host))
        response = api.request(method, path, json=body)
        expect_status(response, 201 if method == "POST" else 200)
        closed = connections(host)
        count = len(closed) - before
        expect(
            count == 1,
            f"{method} {path} opened {count} SQLite connections, expected exactly one (in get_db).",
            expected="1 sqlite3.connect call",
            got=f"{count} calls",
        )
        expect(
            closed[-1],
            f"The connection opened for {method} {path} was left open: close it after the request.",
            expected="connection.close() after the request (in a finally: block)",
            got="the connection still open",
        )


def test_connection_closed_when_endpoint_raises(host: AppHost) -> None:
    """The connection is closed even when the endpoint fails (409, or an unexpected error)"""
    api = host.client(raise_server_exceptions=False)
    user = new_user()
    create(api, user)
    before = len(connections(host))
    duplicate = api.post("/users", json=user)
    expect_status(duplicate, 409, "A duplicate email should answer 409.")
    closed = connections(host)
    expect(
        len(closed) > before and all(closed[before:]),
        "After a request that ended in 409 the connection was left open: close it in a finally: block.",
        sent=describe_request(duplicate.request),
        expected="the connection closed after the request",
        got="the connection left open",
    )

    boom = f"{BOOM} {rng.randrange(10**6)}"
    host.probe("break_list_users", message=boom)
    before = len(closed)
    raised_before = len(server_errors())
    failed = api.get("/users")
    # An exception of the learner's own before list_users() (a typo, a dependency given
    # without Depends) is what to fix first, and is the cause the other checks share.
    own = [exc for exc in server_errors()[raised_before:] if str(exc) != boom]
    if own:
        fail(
            f"GET /users raised {type(own[-1]).__name__} before list_users() was called, so this check "
            "could not make list_users() raise and see the connection closed.",
            sent=describe_request(failed.request),
            because=own[-1],
        )
    closed = connections(host)
    expect(
        len(closed) > before,
        "GET /users opened no SQLite connection: its endpoint should get the repository with "
        "Depends(get_user_repo), which gets the connection with Depends(get_db).",
        sent="GET /users, with UserRepository.list_users made to raise RuntimeError",
        expected="one connection opened, and closed after the failed request",
        got="no connection opened",
    )
    expect(
        all(closed[before:]),
        "After list_users() raised, the connection was left open: close it in a finally: block.",
        sent="GET /users, with UserRepository.list_users made to raise RuntimeError",
        expected="the connection closed after the failed request",
        got="the connection left open",
    )


def test_repository_override_reaches_every_endpoint(host: AppHost, api: RemoteClient) -> None:
    """Overriding get_user_repo changes what GET, POST and DELETE /users use"""
    stored = [{"id": rng.randrange(500, 900), **new_user()}]
    host.probe("override_repository", users=stored)
    expect_json(api.get("/users"), stored, "GET /users must return what the overriding repository lists.")
    extra = new_user()
    response = api.post("/users", json=extra)
    expect_status(response, 201)
    expect_json(
        response,
        {"id": stored[0]["id"] + 1, **extra},
        "POST /users must return what the overriding repository created.",
    )
    key = {"X-API-Key": app_key(host)}
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


def test_repository_on_a_plain_connection(host: AppHost) -> None:
    """UserRepository(conn) creates, lists and deletes users on a connection you hand it, with the table's own ids"""
    path = f"direct-{rng.randrange(10**6)}.db"

    def repo(call: str, *args: Any) -> tuple[Any, list[dict]]:
        """What UserRepository(connection).<call>(*args) returned, and the table's users after it."""
        answer = host.probe("plain_repository", path=path, call=call, args=list(args))
        return answer["result"], answer["stored"]

    created, stored = [], []
    for user in users_in_reverse_order(3):
        result, stored = repo("create_user", user["name"], user["email"])
        created.append(result)
    expect(
        created == stored,
        "create_user(name, email) returned other users than the table holds: return {id, name, email} "
        "with the row's id.",
        expected=show(stored),
        got=show(created),
    )
    listed, stored = repo("list_users")
    expect(
        listed == stored,
        "list_users() returned other users, or another order, than the table's users ordered by id.",
        expected=show(stored),
        got=show(listed),
    )
    gone = stored[1]["id"]
    results = [repo("delete_user", gone)[0], repo("delete_user", gone)[0]]
    expect(
        results == [True, False],
        "delete_user(id) did not return True for a user it deleted, then False for the same id again.",
        expected="[true, false]",
        got=show(results),
    )
    late = new_user()
    after_delete, stored = repo("create_user", late["name"], late["email"])
    listed, _ = repo("list_users")
    expect(
        [after_delete] == stored[-1:] and listed == stored,
        "A user created after a delete did not get the table's new id (do not compute ids yourself).",
        expected=show(stored),
        got=show({"created": after_delete, "listed": listed}),
    )


# --- concurrent requests, each step on another thread ---------------------------------


CONCURRENT_CLIENTS = 8


def test_concurrent_requests_all_succeed(host: AppHost) -> None:
    """Concurrent POST and GET /users all succeed, with get_db and the endpoint on different worker threads"""
    users = [new_user() for _ in range(rng.randrange(10, 16))]
    requests: list[tuple[str, dict[str, str] | None]] = [("POST", user) for user in users]
    requests += [("GET", None)] * rng.randrange(8, 13)
    rng.shuffle(requests)
    host.probe("thread_per_step")
    with host.client(raise_server_exceptions=False) as api:
        with ThreadPoolExecutor(CONCURRENT_CLIENTS) as senders:
            responses = list(senders.map(lambda request: api.request(request[0], "/users", json=request[1]), requests))
        wrong = [r for r in responses if r.status_code != (201 if r.request.method == "POST" else 200)]
        if wrong:
            fail_concurrent(wrong, len(responses), learner_folder())
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


def fail_concurrent(wrong: list[Any], total: int, folder: Path | None) -> None:
    statuses = " or ".join(str(code) for code in sorted({response.status_code for response in wrong}))
    # The cause is the first failed POST's error (else the first GET's), never whichever
    # thread failed first: the same code must always give the same cause.
    wrong = sorted(wrong, key=lambda response: response.request.method != "POST")
    first = describe_request(wrong[0].request)
    raised = server_errors()
    # Failing alike, POSTs come first here too, whichever thread raised first.
    by_method = sorted(raised, key=lambda exc: not (sent_with(exc) or "").startswith("POST"))
    cause, sent = first_learner_error([exc for exc in raised if sent_with(exc) == first] or by_method, folder)
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


def first_learner_error(raised: list[BaseException], folder: Path | None) -> tuple[BaseException | None, str | None]:
    """The first exception (or one it was raised while handling) whose innermost frame is in
    the learner's files, so the endpoint's error, not the one the clean-up raised after it;
    and the request it was raised for."""
    for exc in raised:
        current: BaseException | None = exc
        while current is not None:
            frames = traceback.extract_tb(current.__traceback__)
            if frames and Path(frames[-1].filename).parent == folder:
                return current, sent_with(exc)
            current = current.__context__
    return (raised[0], sent_with(raised[0])) if raised else (None, None)

"""Grader for problem 5 — a lifespan that owns an in-memory database and exports statistics.

Each check imports the app afresh in an app host of its own (workbook/hostkit.py): a sandboxed
process, in an empty working folder, with STATS_PATH naming a file in an empty folder of its
own (a relative path: the host cannot see the grader's folders). Before the import the host's
setup probe `watch` (probes.py) wraps sqlite3.connect, so the checks can see every connection
the app opens and whether it was closed, and os.replace and os.rename (Path.replace,
Path.rename and shutil.move call them), so the checks can see which file was renamed onto
STATS_PATH, and make that rename fail on purpose. The app is served by a real uvicorn; its
lifespan is run by the probe `lifespan_cycle` as uvicorn runs it (so the same app can start
twice in one process, and stop without uvicorn's 0.2 s of shutdown ticks), and once by uvicorn
itself, started and stopped as on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbook.grading import (
    clip,
    expect,
    expect_created,
    expect_json,
    expect_not_stuck,
    expect_status,
    fail,
    json_body,
    learner_frames,
    rng,
    show,
)
from workbook.hangs import Site
from workbook.hostkit import AppHost, HostError, HostGone, RemoteClient, StartupFailed
from workbook.words import counted

PRODUCTS = ["Desk lamp", "Notebook", "Headphones", "Water bottle", "Backpack", "Stapler", "Webcam", "Plant pot"]
# Names outside ASCII (2-, 3- and 4-byte UTF-8) must round-trip through the database unchanged.
WIDE_PRODUCTS = ["Café crème mug", "Schreibtischlampe groß", "東京 notebook", "Plant pot 🌱"]
STATS_KEYS = ["total_requests", "uptime_seconds", "started_at", "stopped_at"]
SYSTEM_TEMP = "system-temp"  # tempfile's default folder in the host (probes.watch), in its working folder


@pytest.fixture
def stats_path() -> Path:
    """STATS_PATH: a randomly named file in an empty folder of its own, relative to the host's
    working folder."""
    return Path(f"exports-{rng.randrange(10**6)}") / f"stats-{rng.randrange(10**4)}.json"


@pytest.fixture
def host_env(stats_path: Path) -> dict[str, str]:
    return {"STATS_PATH": str(stats_path)}


@pytest.fixture
def host_setup(stats_path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Spy on sqlite3.connect, os.replace and os.rename, and make STATS_PATH's folder, before the import."""
    return [("watch", {"folders": [str(stats_path.parent)]})]


# --- what the host saw ------------------------------------------------------------------


class Seen:
    """What the host's spies saw (probes.seen): connections, renames, warnings, and the real
    paths of its working folder and of its system temp folder."""

    def __init__(self, host: AppHost, stats_path: Path | None = None) -> None:
        data = host.probe("seen")
        self.connections: list[dict[str, Any]] = data["connections"]
        self.calls: list[dict[str, Any]] = data["renames"]
        self.warnings: list[dict[str, Any]] = data["warnings"]
        self.cwd: str = data["cwd"]
        self.temp: str = data["temp"]
        # Folders a learner can name, most specific first: messages show these names instead of
        # the host's scratch paths, which mean nothing to a learner.
        self.places: list[tuple[str, str]] = [(self.temp, "<system temp folder>"), (self.cwd, "<working directory>")]
        if stats_path is not None:
            self.places.insert(0, (self.host_path(stats_path.parent), "<STATS_PATH's folder>"))

    def host_path(self, path: Path) -> str:
        return os.path.normpath(os.path.join(self.cwd, path))

    def all_closed(self) -> bool:
        return bool(self.connections) and all(connection["closed"] for connection in self.connections)

    def open_count(self) -> int:
        return sum(not connection["closed"] for connection in self.connections)

    def onto(self, path: Path) -> list[dict[str, Any]]:
        target = self.host_path(path)
        return [call for call in self.calls if call["dst"] == target]

    def shown(self) -> str:
        if not self.calls:
            return "no os.replace() or os.rename() call"
        return "; ".join(self.shown_call(call) for call in self.calls[-4:])

    def shown_call(self, call: dict[str, Any]) -> str:
        return f"os.{call['function']}({self.visible(call['src'])!r}, {self.visible(call['dst'])!r})"

    def visible(self, path: Any) -> str:
        """A path as the learner knows it: relative to STATS_PATH's folder, the working
        directory or the system temp folder."""
        if path is None:
            return "?"
        text = str(path)
        for folder, label in self.places:
            if text == folder or text.startswith(folder + os.sep):
                rest = text[len(folder) :].lstrip(os.sep)
                return f"{label}/{rest}" if rest else label
        return text


def look(host: AppHost, path: Path | str) -> dict[str, Any]:
    """What is at `path` in the host (probes.look): exists, is_file, text, names."""
    return host.probe("look", path=str(path))


# --- helpers --------------------------------------------------------------------------


def in_learner_terms(host: AppHost, text: str) -> str:
    """`text` with the host's working folder (a scratch path of the sandbox) shown as
    <working directory>, the name the learner knows it by."""
    with contextlib.suppress(HostError):
        folder = look(host, ".")["real"]
        if isinstance(folder, str) and len(folder) > 1:
            return text.replace(folder, "<working directory>")
    return text


def learner_error(host: AppHost, exc: BaseException) -> str:
    """What the learner's code raised, with the lines of its files it was raised through."""
    return in_learner_terms(host, f"{type(exc).__name__}: {exc}\n{learner_frames(exc)}".rstrip())


def startup_failure(exc: StartupFailed) -> str:
    """Where the learner's code was when startup (or shutdown) did not finish, or the server's output."""
    sites = [Site.from_dict(data) for data in exc.threads.values()]
    found = [site.describe() for site in sites if site is not None]
    return f"{exc}; {found[0]}" if found else f"{exc}\n{exc.log}".rstrip()


def begin(host: AppHost) -> None:
    """Serve the app (uvicorn, without its own lifespan) and run the lifespan's startup through
    probes.lifespan_cycle, as uvicorn would: the same app can then start again after a stop,
    in the same process, and stop at once. Raises what the startup raised, or StartupFailed."""
    if not host.served:
        host.serve(lifespan="off")
    if host.probe("lifespan_cycle", phase="startup") != "complete":
        raise StartupFailed("startup did not finish")


def start(host: AppHost, **kwargs: Any) -> RemoteClient:
    """A client of the served app, whose startup (the lifespan up to `yield`) has run."""
    try:
        begin(host)
    except HostGone:
        raise
    except StartupFailed as exc:
        fail(
            "Starting the app did not finish: the lifespan's startup never reached `yield`.",
            expected="startup to finish",
            got=startup_failure(exc),
        )
    except Exception as exc:  # noqa: BLE001 - the learner's startup may raise anything
        fail(
            "Starting the app raised an error in the lifespan's startup.",
            expected="startup to finish",
            got=learner_error(host, exc),
        )
    return host.client(**kwargs)


def stop(host: AppHost) -> Exception | None:
    """Run the shutdown; the error it raised, if any."""
    try:
        if host.probe("lifespan_cycle", phase="shutdown") != "complete":
            return StartupFailed("shutdown did not finish")
    except HostGone:
        raise
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


@contextlib.contextmanager
def running(host: AppHost, **kwargs: Any) -> Iterator[RemoteClient]:
    """Startup on entry, shutdown on exit, errors said in learner terms."""
    api = start(host, **kwargs)
    body_failed = True
    try:
        yield api
        body_failed = False
    finally:
        api.close()
        raised = stop(host)
        if raised is not None and not body_failed:
            fail(
                "Stopping the app raised an error in the lifespan's shutdown.",
                expected="shutdown to finish",
                got=learner_error(host, raised),
                because=raised,
            )


def state_db(host: AppHost) -> None:
    """Fail unless app.state.db holds a sqlite3 connection."""
    state = host.probe("app_state")
    expect(
        state["db_is_connection"],
        "After startup, app.state.db should hold the sqlite3 connection the lifespan opened.",
        expected="a sqlite3.Connection in app.state.db",
        got="nothing in app.state.db" if state["db"] is None else f"a {state['db']}",
    )


def query(host: AppHost, sql: str, params: tuple = (), *, on_loop: bool = True) -> list[list]:
    """Run SQL on the learner's connection, failing in learner terms. `on_loop`: on the server's
    event loop, where the lifespan opened the connection; otherwise on another thread."""
    found = host.probe("sql", statement=sql, params=list(params), on_loop=on_loop)
    if "no_db" in found:
        state_db(host)
    if "rows" in found and isinstance(found["rows"], list):
        return found["rows"]
    error, text = str(found.get("error")), str(found.get("text", ""))
    # The host reports the sqlite3 error as data: failing while handling one of the same type
    # and text keeps the report's advice for it (workbook/translate.py), as in process.
    kind = getattr(sqlite3, error, None)
    try:
        raise (kind if isinstance(kind, type) and issubclass(kind, sqlite3.Error) else sqlite3.Error)(text)
    except sqlite3.Error:
        if error == "ProgrammingError":
            if "closed" in text.lower():
                fail(
                    f"app.state.db was already closed while the app was running ({sql.split()[0]} ...). Keep the "
                    "connection open until shutdown: close it after `yield` (in `finally:`), not before.",
                    expected="an open connection between startup and shutdown",
                    got=f"ProgrammingError: {text}",
                )
            fail(
                f"The grader could not use app.state.db from another thread ({sql.split()[0]} ...).",
                expected='sqlite3.connect(":memory:", check_same_thread=False), so sync endpoints (which run '
                "in worker threads) can share it",
                got=f"ProgrammingError: {text}",
            )
        fail(
            f"The database opened at startup does not hold what it should: `{sql}` failed.",
            expected="the tables created by MIGRATIONS",
            got=f"{error}: {text}",
        )


def items_in(host: AppHost) -> list[dict]:
    rows = query(host, "SELECT id, name, price FROM items ORDER BY id")
    return [{"id": row[0], "name": row[1], "price": row[2]} for row in rows]


def new_item() -> dict:
    return {
        "name": f"{rng.choice(PRODUCTS + WIDE_PRODUCTS)} {rng.randrange(100, 999)}",
        "price": rng.randrange(100, 99999) / 100,
    }


def request_count(host: AppHost) -> Any:
    return host.probe("app_state")["request_count"]


def migrations(host: AppHost, **change: Any) -> list[str]:
    """The module's MIGRATIONS entries (after `change`: extend=[...] or replace=[...]); fails
    unless it is a list."""
    found = host.probe("migrations", **change)
    expect(
        found["is_list"],
        "app.py should define MIGRATIONS, a list of SQL strings.",
        got=show(found["repr"]),
    )
    return found["entries"]


def send_mix(api: Any, count: int) -> None:
    """`count` requests of several kinds: list, stats and an unknown path (404)."""
    for _ in range(count):
        path = rng.choice(["/items", "/stats", f"/no-such-page-{rng.randrange(1000)}"])
        api.get(path)


def read_stats(host: AppHost, path: Path, when: str) -> dict:
    found = look(host, path)
    expect(
        found["is_file"],
        f"No statistics file was written {when}.",
        expected=f"a JSON file at STATS_PATH ({path.name})",
        got="no file there",
    )
    text = found["text"] or ""
    try:
        data = json.loads(text)
    except ValueError:
        fail("The statistics file is not valid JSON.", expected="a JSON object", got=show(text))
    expect(
        isinstance(data, dict) and all(key in data for key in STATS_KEYS),
        "The statistics file should be a JSON object with these four keys.",
        expected=show(STATS_KEYS),
        got=show(data),
    )
    return data


def utc_time(data: dict, key: str) -> datetime:
    value = data.get(key)
    expect(isinstance(value, str), f"`{key}` should be an ISO 8601 time string.", got=show(value))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"`{key}` is not an ISO 8601 time.", expected='like "2025-01-31T12:00:00.123456+00:00"', got=show(value))
    offset = moment.utcoffset()
    expect(
        offset == timedelta(0),
        f"`{key}` has {'no offset' if offset is None else f'the offset {offset}'}, expected UTC (+00:00): "
        "write datetime.now(timezone.utc).isoformat(), not the host's local time.",
        expected="a time ending in +00:00 or Z (datetime.now(timezone.utc).isoformat())",
        got=show(value),
    )
    return moment


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception behind it: __cause__, __context__ and an ExceptionGroup's members."""
    found: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(found) < 50:
        current = todo.pop()
        if not isinstance(current, BaseException) or any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [current.__cause__, current.__context__]
        members = getattr(current, "exceptions", None)
        if isinstance(members, (tuple, list)):
            todo += list(members)
    return found


def is_sqlite_error(exc: BaseException) -> bool:
    """Whether `exc` is a sqlite3.Error. What the host raised comes back rebuilt, with the type's
    name and module but not the class itself, so the name is looked up in sqlite3."""
    if isinstance(exc, sqlite3.Error):
        return True
    known = getattr(sqlite3, type(exc).__name__, None)
    return (
        type(exc).__module__ in ("sqlite3", "_sqlite3") and isinstance(known, type) and issubclass(known, sqlite3.Error)
    )


# --- import and startup ---------------------------------------------------------------


def test_import_has_no_side_effects(host: AppHost, stats_path: Path) -> None:
    """Importing app.py opens no database connection, writes no file and sets no app.state.db"""
    seen = Seen(host, stats_path)
    expect(
        not seen.connections,
        "Importing app.py opened a database connection; open it in the lifespan's startup instead.",
        expected="no sqlite3.connect call at import",
        got=f"{counted(len(seen.connections), 'connection')} opened",
    )
    # The grader made STATS_PATH's folder and the system temp folder in the working folder.
    ours = {stats_path.parent.name, SYSTEM_TEMP}
    written = [name for name in look(host, ".")["names"] or [] if name not in ours]
    written += [f"{stats_path.parent.name}/{name}" for name in look(host, stats_path.parent)["names"] or []]
    written += [f"<system temp folder>/{name}" for name in look(host, SYSTEM_TEMP)["names"] or []]
    expect(
        not written,
        "Importing app.py wrote files; only shutdown writes the stats.",
        expected="no file",
        got=show(sorted(written)),
    )
    early = host.probe("app_state")
    expect(
        early["db"] is None,
        "app.state.db is already set before startup.",
        expected="no app.state.db until the lifespan runs",
        got=show(early["db_repr"]),
    )


def test_startup_opens_in_memory_db(host: AppHost) -> None:
    """Startup opens one in-memory SQLite connection and puts it in app.state.db"""
    with running(host):
        state_db(host)
        files = [row[2] for row in query(host, "PRAGMA database_list") if row[1] == "main"]
        expect(
            files == [""],
            'The database should live in memory: sqlite3.connect(":memory:", ...).',
            expected="an in-memory database",
            got=in_learner_terms(host, f"a database file {show(files)}"),
        )
        opened = Seen(host).connections
        expect(
            len(opened) == 1,
            "Startup should open exactly one connection and share it.",
            expected="1 sqlite3.connect call",
            got=f"{len(opened)} calls",
        )


def test_connection_shared_across_threads(host: AppHost) -> None:
    """app.state.db can be used from other threads (check_same_thread=False)"""
    with running(host):
        state_db(host)
        query(host, "SELECT 1", on_loop=False)


def test_migrations_set_user_version(host: AppHost) -> None:
    """After startup PRAGMA user_version equals len(MIGRATIONS)"""
    entries = migrations(host)
    with running(host):
        state_db(host)
        version = query(host, "PRAGMA user_version")[0][0]
    expect(
        version == len(entries),
        f"Startup should record how many migrations ran: PRAGMA user_version = {len(entries)}.",
        expected=str(len(entries)),
        got=str(version),
    )


def test_migrations_read_at_startup(host: AppHost) -> None:
    """Migrations appended to MIGRATIONS before startup are applied too, in order"""
    migrations(host)
    table = f"grader_notes_{rng.randrange(16**6):06x}"
    # The index needs the table, so applying these out of order fails.
    entries = migrations(
        host,
        extend=[
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note TEXT)",
            f"CREATE INDEX {table}_by_note ON {table} (note)",
        ],
    )
    with running(host):
        state_db(host)
        found = sorted(
            row[0] for row in query(host, "SELECT name FROM sqlite_master WHERE name LIKE ?", (f"{table}%",))
        )
        version = query(host, "PRAGMA user_version")[0][0]
    expect(
        found == [table, f"{table}_by_note"],
        "Startup should apply every entry of the module-level MIGRATIONS list "
        "as it is when the app starts (read it inside the lifespan, not at import).",
        expected=show([table, f"{table}_by_note"]),
        got=show(found),
    )
    expect(
        version == len(entries),
        "PRAGMA user_version should count every migration applied.",
        expected=str(len(entries)),
        got=str(version),
    )
    # A caller may also replace the list instead of extending it: the module's MIGRATIONS at startup counts.
    other = f"grader_tags_{rng.randrange(16**6):06x}"
    replacement = [*entries, f"CREATE TABLE {other} (id INTEGER PRIMARY KEY)"]
    migrations(host, replace=replacement)
    with running(host):
        state_db(host)
        found = [row[0] for row in query(host, "SELECT name FROM sqlite_master WHERE name = ?", (other,))]
    expect(
        found == [other],
        f"table {other} missing, expected it: MIGRATIONS was replaced by a new list before startup, and startup "
        "applied the old one. Read the module-level name MIGRATIONS inside the lifespan (no default argument, "
        "no copy made at import).",
        sent=f"app.MIGRATIONS = [...the old entries..., {show(replacement[-1])}], then startup",
        expected=show([other]),
        got=show(found),
    )


def test_app_restarts_cleanly(host: AppHost, stats_path: Path) -> None:
    """The same app started twice in one process gets a fresh database, count, start time and stats each time"""
    with running(host, raise_server_exceptions=False) as api:
        first_items = json_body(api.get("/items"))
        api.post("/items", json=new_item())
        send_mix(api, rng.randrange(1, 4))
    first = read_stats(host, stats_path, "when the app stopped the first time")
    sent = rng.randrange(2, 6)
    with running(host, raise_server_exceptions=False) as api:
        count = request_count(host)
        expect(
            count == 0,
            f"request_count {show(count)} after the second startup, expected 0: set it in the lifespan, not at import.",
            sent="the app started, served requests, stopped, and started again",
            expected="0",
            got=show(count),
        )
        again = json_body(api.get("/items"))
        expect(
            again == first_items,
            "GET /items differs after a restart, expected the freshly seeded rows again: each startup opens "
            "a new in-memory database (and the last shutdown closed the old one).",
            sent="GET /items after the app was stopped and started again",
            expected=show(first_items),
            got=show(again),
        )
        send_mix(api, sent - 1)
    second = read_stats(host, stats_path, "when the app stopped the second time")
    expect(
        second["total_requests"] == sent,
        f"total_requests {show(second['total_requests'])} for the second run, expected {sent}: count from 0 "
        "at each startup.",
        sent=f"a second run of the same app with {sent} requests",
        expected=str(sent),
        got=show(second["total_requests"]),
    )
    expect(
        isinstance(second["started_at"], str)
        and isinstance(first["stopped_at"], str)
        and second["started_at"] > first["stopped_at"],
        "the second run's started_at is not after the first run's stopped_at: record the start time in the "
        "lifespan's startup, not at import.",
        sent="the same app started twice",
        expected=f"started_at after {show(first['stopped_at'])}",
        got=show(second["started_at"]),
    )
    opened = Seen(host).connections
    closed = sum(connection["closed"] for connection in opened)
    expect(
        len(opened) == 2 and closed == 2,
        f"{counted(len(opened), 'connection')} opened over two runs, {len(opened) - closed} left open; "
        "expected one per startup, each closed at its shutdown.",
        expected="2 connections, both closed",
        got=f"{len(opened)} opened, {closed} closed",
    )


def test_seed_rows_at_startup(host: AppHost) -> None:
    """Startup seeds at least 3 rows into items(id, name, price)"""
    with running(host):
        state_db(host)
        columns = [row[1] for row in query(host, "PRAGMA table_info(items)")]
        expect(
            all(name in columns for name in ("id", "name", "price")),
            "The migrations should create items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL).",
            expected=show(["id", "name", "price"]),
            got=show(columns),
        )
        rows = items_in(host)
    expect(len(rows) >= 3, "Startup should seed at least 3 items.", expected="3 or more rows", got=f"{len(rows)} rows")
    expect(
        all(isinstance(r["name"], str) and r["name"] and is_number(r["price"]) for r in rows),
        "Every seeded item needs a name and a numeric price.",
        got=show(rows),
    )


# --- the endpoints --------------------------------------------------------------------


def test_list_items_reads_state_db(host: AppHost) -> None:
    """GET /items answers 200 with every row of app.state.db's items as {id, name, price}, by id"""
    with running(host) as api:
        state_db(host)
        item = new_item()
        query(host, "INSERT INTO items (name, price) VALUES (?, ?)", (item["name"], item["price"]))
        expected = items_in(host)
        response = api.get("/items")
        expect_status(response, 200)
        expect_json(
            response,
            expected,
            "GET /items should list every row of the items table in app.state.db "
            "(including one the grader inserted), as {id, name, price}, ordered by id.",
        )


def test_create_item_answers_201(host: AppHost) -> None:
    """POST /items answers 201 with the new row (its id from the database), which GET /items then lists"""
    with running(host) as api:
        state_db(host)
        # A random number of extra rows, and a deleted one, so a hard-coded or counted id is wrong.
        for _ in range(rng.randrange(2, 6)):
            extra = new_item()
            query(host, "INSERT INTO items (name, price) VALUES (?, ?)", (extra["name"], extra["price"]))
        rows = items_in(host)
        gone = rng.choice(rows[1:-1])
        query(host, "DELETE FROM items WHERE id = ?", (gone["id"],))
        item = new_item()
        response = api.post("/items", json=item)
        body = expect_created(
            response,
            "A successful POST /items should answer 201 Created.",
            no_id="The created item should carry its integer id.",
            expected='{"id": <int>, "name": ..., "price": ...}',
        )
        state_db(host)
        stored = items_in(host)
        newest = stored[-1] if stored else None
        expect(
            newest is not None and newest["id"] == body["id"] and body["id"] not in [row["id"] for row in rows],
            f"id {body['id']}, expected {newest['id'] if newest else '?'} (the id the database gave the new row): "
            "take it from cursor.lastrowid, never from a count of the rows.",
            sent=f"POST /items with body {show(item)}, after the grader inserted rows and deleted id {gone['id']}",
            expected=show(newest),
            got=show(body),
        )
        expect_json(response, {"id": body["id"], **item}, "POST /items should answer the new row as stored.")
        expect(
            stored[-1] == {"id": body["id"], **item},
            "The new item should be stored in app.state.db.",
            expected=show({"id": body["id"], **item}),
            got=show(stored[-1:] if stored else []),
        )
        expect_json(api.get("/items"), stored, "GET /items should now list the new item too.")


def test_create_item_validates(host: AppHost) -> None:
    """POST /items answers 422 for a negative price or a missing field, and stores nothing"""
    with running(host) as api:
        state_db(host)
        before = items_in(host)
        good = new_item()
        for bad in (
            {**good, "price": -good["price"]},
            {"name": good["name"]},
            {"price": good["price"]},
            {**good, "price": "cheap"},
        ):
            expect_status(api.post("/items", json=bad), 422, "An invalid item must be refused with 422.")
        state_db(host)
        after = items_in(host)
        expect(after == before, "A refused item must not be stored.", expected=show(before), got=show(after))


def test_create_item_price_bound(host: AppHost) -> None:
    """A price of exactly 0 is accepted (201) and a price just below it is refused (422)"""
    with running(host) as api:
        free = {"name": f"{rng.choice(WIDE_PRODUCTS)} sample {rng.randrange(100, 999)}", "price": 0}
        response = api.post("/items", json=free)
        expect_status(response, 201, "price >= 0 includes 0: a free item must be created (Field(ge=0), not gt=0).")
        below = {"name": free["name"], "price": -0.01}
        expect_status(api.post("/items", json=below), 422, "A price of -0.01 is below 0 and must be refused.")


def test_counter_counts_requests(host: AppHost) -> None:
    """app.state.request_count is 0 after startup and grows by one per request"""
    with running(host, raise_server_exceptions=False) as api:
        start = request_count(host)
        expect(start == 0, "Startup should set app.state.request_count = 0.", expected="0", got=show(start))
        sent = rng.randrange(2, 6)
        for _ in range(sent):
            api.get("/items")
        count = request_count(host)
        expect(
            count == sent,
            f"After {sent} requests app.state.request_count should be {sent}.",
            expected=str(sent),
            got=show(count),
        )


def test_counter_counts_404_and_500(host: AppHost) -> None:
    """The middleware also counts requests that end in 404 and in 500"""
    boom = f"/grader-boom-{rng.randrange(10**6)}"
    host.probe("add_failing_route", path=boom)
    with running(host, raise_server_exceptions=False) as api:
        plan = ["404"] * rng.randrange(1, 4) + ["500"] * rng.randrange(1, 4)
        rng.shuffle(plan)
        for kind in plan:
            before = request_count(host)
            response = api.get(f"/missing-{rng.randrange(1000)}" if kind == "404" else boom)
            expect_status(response, int(kind))
            after = request_count(host)
            expect(
                is_number(before) and is_number(after) and after == before + 1,
                f"A request that ended in {kind} was not counted. Count in an HTTP middleware, "
                "before `await call_next(request)`, so every request counts whatever happens after.",
                sent=f"GET {'an unknown path' if kind == '404' else 'an endpoint that raises'}",
                expected=f"request_count {before} -> {before + 1 if is_number(before) else '?'}",
                got=show(after),
            )


def test_stats_endpoint(host: AppHost) -> None:
    """GET /stats answers total_requests (counting itself) and a growing uptime_seconds"""
    with running(host) as api:
        started = time.monotonic()
        sent = rng.randrange(1, 5)
        for _ in range(sent):
            api.get("/items")
        first = api.get("/stats")
        expect_status(first, 200)
        body = json_body(first)
        expect(
            isinstance(body, dict) and body.get("total_requests") == sent + 1,
            f"After {sent} requests, GET /stats should report {sent + 1}: the requests before it and itself.",
            expected=show({"total_requests": sent + 1, "uptime_seconds": "<float>"}),
            got=show(body),
        )
        uptime = body.get("uptime_seconds")
        expect(
            is_number(uptime) and 0 <= uptime <= time.monotonic() - started + 1.0,
            "uptime_seconds should be the seconds since startup, as a number.",
            got=show(body),
        )
        # 0.3 s apart, 0.15 s of growth required: uptimes rounded to 0.01 s (or even 0.1 s) pass.
        time.sleep(0.3)
        second = json_body(api.get("/stats"))
        later = second.get("uptime_seconds") if isinstance(second, dict) else None
        expect(
            is_number(later) and later >= uptime + 0.15,
            "uptime_seconds should grow as time passes (seconds since startup, not rounded to whole seconds).",
            sent="GET /stats, then GET /stats again 0.3 s later",
            expected=f"uptime_seconds of at least {uptime + 0.15:.2f} the second time (it was {show(uptime)})",
            got=show(second),
        )


# --- shutdown: the statistics file ----------------------------------------------------


def test_stats_file_counts_requests(host: AppHost, stats_path: Path) -> None:
    """On shutdown STATS_PATH holds a JSON object whose total_requests counts every request"""
    sent = rng.randrange(3, 9)
    with running(host, raise_server_exceptions=False) as api:
        send_mix(api, sent)
    data = read_stats(host, stats_path, "when the app stopped")
    expect(
        data["total_requests"] == sent,
        f"{sent} requests were served, so total_requests should be {sent}. "
        "Write the file after `yield`, when every request has been counted.",
        expected=str(sent),
        got=show(data["total_requests"]),
    )


FAR_FROM_UTC = "WBT-05:45"  # a POSIX TZ (no tz database needed): local time is UTC+05:45


def test_stats_file_times(
    new_host: Callable[..., AppHost],
    host_env: dict[str, str],
    host_setup: list[tuple[str, dict[str, Any]]],
    stats_path: Path,
) -> None:
    """The stats file's started_at and stopped_at are UTC times of the run, also on a host far from UTC"""
    # The host's local time zone is UTC+05:45 (probes.watch re-reads TZ), so local times cannot pass for UTC.
    host = new_host(env={**host_env, "TZ": FAR_FROM_UTC}, setup=host_setup)
    before = datetime.now(timezone.utc)
    clock = time.monotonic()
    with running(host, raise_server_exceptions=False) as api:
        api.get("/items")
        time.sleep(0.05)
    elapsed = time.monotonic() - clock
    after = datetime.now(timezone.utc)
    data = read_stats(host, stats_path, "when the app stopped")
    started, stopped = utc_time(data, "started_at"), utc_time(data, "stopped_at")
    slack = timedelta(seconds=1)
    for key, moment, low, high in (
        ("started_at", started, before, after),
        ("stopped_at", stopped, started, after),
    ):
        off = moment - high if moment > high else moment - low
        expect(
            low - slack <= moment <= high + slack,
            f"{key} {data[key]} is off by {off}, expected the UTC time the app "
            f"{'started' if key == 'started_at' else 'stopped (after started_at)'}. The host's local time zone "
            "was UTC+05:45: use datetime.now(timezone.utc), not local time with an offset pasted on.",
            sent="one app run on a host whose local time zone is UTC+05:45",
            expected=f"between {before.isoformat()} and {after.isoformat()}",
            got=show({"started_at": data["started_at"], "stopped_at": data["stopped_at"]}),
        )
    uptime = data["uptime_seconds"]
    expect(
        is_number(uptime) and 0.05 <= uptime <= elapsed + 0.5,
        "uptime_seconds should be the seconds the app ran, as a number.",
        expected=f"between 0.05 and {elapsed:.2f}",
        got=show(uptime),
    )


def test_stats_file_creates_missing_folders(host: AppHost) -> None:
    """When STATS_PATH's folders do not exist yet, shutdown creates them and writes the file"""
    nested = Path(f"reports-{rng.randrange(10**6)}") / str(rng.randrange(2020, 2030)) / "stats.json"
    host.probe("prepare", env={"STATS_PATH": str(nested)})
    with running(host, raise_server_exceptions=False) as api:
        api.get("/items")
    read_stats(
        host, nested, "into folders that did not exist yet (create them with mkdir(parents=True, exist_ok=True))"
    )


def test_stats_file_replaced_atomically(host: AppHost, stats_path: Path) -> None:
    """The stats file is replaced atomically: os.replace() renames a temporary file from the same folder onto it"""
    host.probe("prepare", files={str(stats_path): '{"old": true}'})
    with running(host, raise_server_exceptions=False) as api:
        api.get("/items")
    read_stats(host, stats_path, "when the app stopped")
    seen = Seen(host, stats_path)
    done = [call for call in seen.onto(stats_path) if call["done"]]
    expect(
        bool(done),
        "no rename onto STATS_PATH: the stats file was written in place, so a reader (or a crash) could meet "
        "a half-written file. Write a temporary file in the same folder, then os.replace() it onto STATS_PATH.",
        sent=f"an app run with STATS_PATH={stats_path.name}, which already existed",
        expected="os.replace(<temporary file>, STATS_PATH)",
        got=seen.shown(),
    )
    source = done[-1]["src"]
    expect(
        source is not None and Path(source).parent == Path(done[-1]["dst"]).parent,
        f"the temporary file was in {seen.visible(Path(source).parent) if source else '?'}, expected STATS_PATH's "
        "folder. A rename is atomic only within one file system (shutil.move across them copies the file). "
        "Create the temporary file in the same folder as STATS_PATH (dir=...), then os.replace() it.",
        expected="a temporary file in <STATS_PATH's folder>",
        got=seen.shown_call(done[-1]),
    )


def test_stats_file_complete_when_renamed(host: AppHost, stats_path: Path) -> None:
    """At the moment it is renamed onto STATS_PATH, the temporary file already holds the complete JSON"""
    with running(host, raise_server_exceptions=False) as api:
        api.get("/items")
    seen = Seen(host, stats_path)
    done = [call for call in seen.onto(stats_path) if call["done"]]
    expect(
        bool(done),
        "no rename onto STATS_PATH: write a temporary file in the same folder, then os.replace() it onto the target.",
        expected="os.replace(<temporary file>, STATS_PATH)",
        got=seen.shown(),
    )
    held = done[-1]["src_text"]
    try:
        data = json.loads(held) if held is not None else None
    except ValueError:
        data = None
    expect(
        isinstance(data, dict) and all(key in data for key in STATS_KEYS),
        f"the temporary file held {clip(show(held), 80)} when it was renamed, expected the complete stats JSON. "
        "Python buffers writes: close the file (leave its `with` block) or flush it before os.replace(), or "
        "a reader, or a crash right after the rename, meets an empty or half-written file.",
        expected=f"a JSON object with {show(STATS_KEYS)} in the file at the moment of the rename",
        got=f"{seen.shown_call(done[-1])} while the file held {clip(show(held), 120)}",
    )


def leftovers(host: AppHost, stats_path: Path) -> list[str]:
    """Temporary files left behind: in STATS_PATH's folder, in the system temp folder, and any
    file that was renamed (or meant to be renamed) onto STATS_PATH and still exists."""
    seen = Seen(host, stats_path)
    names = look(host, stats_path.parent)["names"] or []
    found = [f"<STATS_PATH's folder>/{name}" for name in names if name != stats_path.name]
    found += [f"<system temp folder>/{name}" for name in look(host, SYSTEM_TEMP)["names"] or []]
    for call in seen.onto(stats_path):
        if call["src_exists"] and seen.visible(call["src"]) not in found:
            found.append(seen.visible(call["src"]))
    return found


def test_stats_folder_has_no_leftovers(host: AppHost, stats_path: Path) -> None:
    """After shutdown only the stats file remains: no temporary file is left, here or in the system temp folder"""
    with running(host, raise_server_exceptions=False) as api:
        api.get("/items")
    read_stats(host, stats_path, "when the app stopped")
    left = leftovers(host, stats_path)
    expect(
        not left,
        f"{counted(len(left), 'temporary file')} left behind, expected none: rename the temporary file onto STATS_PATH "
        "(and delete it if writing fails).",
        expected=f"only {show(stats_path.name)} in STATS_PATH's folder, and nothing in the system temp folder",
        got=show(left),
    )


def test_stats_path_read_at_shutdown(host: AppHost, stats_path: Path) -> None:
    """STATS_PATH is read when the app stops: a path set while it runs is the one written"""
    with running(host, raise_server_exceptions=False) as api:
        api.get("/items")
        # A relative path this time: it names a file in the working directory at shutdown.
        late = Path(f"late-{rng.randrange(10**6)}") / "stats.json"
        host.probe("prepare", folders=[str(late.parent)], env={"STATS_PATH": str(late)})
    expect(
        not look(host, stats_path)["exists"],
        "the stats went to the STATS_PATH of import time, expected the one set while the app ran: read "
        "os.environ when the app shuts down.",
        sent=f"STATS_PATH changed to the relative path {str(late)!r} while the app was running",
        expected=f"{late} in the working directory",
        got=f"{stats_path.name} (the path of import time)",
    )
    read_stats(host, late, f"to {late} (the relative STATS_PATH set while the app was running)")


def test_stats_default_path(new_host: Callable[..., AppHost], host_setup: list[tuple[str, dict[str, Any]]]) -> None:
    """Without STATS_PATH the stats go to stats.json in the working directory"""
    host = new_host(unset=["STATS_PATH"], setup=host_setup)
    with running(host, raise_server_exceptions=False) as api:
        api.get("/items")
    read_stats(host, Path("stats.json"), "to stats.json in the working directory (STATS_PATH unset)")


def test_no_temporary_file_left_when_rename_fails(host: AppHost, stats_path: Path) -> None:
    """When renaming onto STATS_PATH fails, shutdown deletes its temporary file, keeps the old file and closes the db"""
    old = json.dumps({"total_requests": rng.randrange(100, 999), "note": "written before this run"})
    host.probe("prepare", files={str(stats_path): old})
    sent = "os.replace() / os.rename() onto STATS_PATH made to raise OSError at shutdown"
    api = start(host, raise_server_exceptions=False)
    try:
        api.get("/items")
    finally:
        api.close()
        host.probe("fail_renames_onto", path=str(stats_path))
        stop(host)
    seen = Seen(host, stats_path)
    expect(
        bool(seen.onto(stats_path)),
        "no rename onto STATS_PATH: shutdown never renamed a file onto it. Write a temporary file in the same "
        "folder, then os.replace() it onto the target.",
        sent=sent,
        expected="os.replace(<temporary file>, STATS_PATH)",
        got=seen.shown(),
    )
    left = leftovers(host, stats_path)
    expect(
        not left,
        f"{counted(len(left), 'temporary file')} left behind, expected none: renaming the temporary file failed and it "
        "stayed. Delete it when writing or renaming fails (try: ... os.replace(...) except BaseException: "
        "os.unlink(temporary); raise).",
        sent=sent,
        expected=f"only the earlier file {show([stats_path.name])}, and nothing in the system temp folder",
        got=show(left),
    )
    found = look(host, stats_path)
    now = found["text"] if found["is_file"] else None
    expect(
        now == old,
        "Renaming the temporary file failed, yet the earlier stats file was changed. Change it only by "
        "renaming a complete temporary file onto it; when that fails, leave the earlier file as it was.",
        sent=sent,
        expected=f"{stats_path.name} still holding {show(old)}",
        got="no file there any more" if now is None else show(now),
    )
    expect(
        seen.all_closed(),
        "Writing the stats failed (the rename raised OSError) and the connection was left open. "
        "Close it in a `finally:` block around the shutdown code.",
        sent=sent,
        expected="the connection closed",
        got="the connection still open",
    )


# --- guaranteed cleanup ---------------------------------------------------------------


def test_db_closed_after_shutdown(host: AppHost) -> None:
    """Shutdown closes the database connection"""
    with running(host, raise_server_exceptions=False) as api:
        api.get("/items")
    expect(
        Seen(host).all_closed(),
        "After shutdown the connection opened at startup should be closed.",
        expected="connection.close() after the stats are written",
        got="the connection still open",
    )


def test_db_closed_when_stats_write_fails(host: AppHost) -> None:
    """The database is closed even when writing the stats file fails"""
    blocker = "not-a-folder"
    host.probe(
        "prepare",
        files={blocker: "a regular file where a folder should be"},
        env={"STATS_PATH": f"{blocker}/stats.json"},
    )
    start(host).close()
    try:
        state_db(host)
    finally:
        stop(host)
    expect(
        Seen(host).all_closed(),
        "Writing the stats failed (STATS_PATH's parent is a file) and the connection was "
        "left open. Close it in a `finally:` block around the shutdown code.",
        expected="the connection closed",
        got="the connection still open",
    )


def test_stats_write_error_propagates(host: AppHost, stats_path: Path) -> None:
    """When writing the stats fails, shutdown lets the OSError propagate instead of logging and swallowing it"""
    blocker = f"not-a-folder-{rng.randrange(1000)}"
    host.probe("prepare", files={blocker: "a regular file where a folder should be"})
    for how, path in (
        ("STATS_PATH's parent is a file", f"{blocker}/stats.json"),
        ("os.replace() onto STATS_PATH raises OSError", str(stats_path)),
    ):
        host.probe("prepare", env={"STATS_PATH": path})
        start(host, raise_server_exceptions=False).close()
        failing = "os.replace" in how
        if failing:
            host.probe("fail_renames_onto", path=str(stats_path))
        try:
            raised = stop(host)
        finally:
            if failing:
                host.probe("fail_renames_onto", path=None)
        expect(
            raised is not None and any(isinstance(exc, OSError) for exc in exception_chain(raised)),
            "shutdown finished quietly, expected the OSError to propagate: a stats file that could not be "
            "written must make the shutdown fail (re-raise after cleaning up; do not only log it)."
            if raised is None
            else f"shutdown raised {type(raised).__name__}, expected the OSError (or an error raised from it).",
            sent=f"an app run where {how}",
            expected="shutdown to raise the OSError",
            got="no error" if raised is None else f"{type(raised).__name__}: {clip(str(raised), 200)}",
        )


def test_db_closed_when_migration_fails(host: AppHost) -> None:
    """When a migration fails, startup fails with its sqlite3 error and the connection is closed"""
    migrations(host)
    broken = f"CREATE TABLE broken_{rng.randrange(1000)} (id INTEGER PRIMARY KEY,"
    migrations(host, extend=[broken])
    raised: Exception | None = None
    try:
        begin(host)
    except HostGone:
        raise
    except Exception as exc:  # noqa: BLE001
        raised = exc
    else:
        stop(host)
    expect(
        raised is not None,
        "A broken migration must make startup fail, not be skipped.",
        sent=f"MIGRATIONS with {show(broken)} appended",
        expected="startup to raise the sqlite3 error",
        got="the app started",
    )
    seen = Seen(host)
    if not seen.connections:
        fail(
            "Startup failed before it opened a database connection, so the broken migration was never reached.",
            sent=f"MIGRATIONS with {show(broken)} appended",
            expected="a connection opened, the migration failing, the connection closed",
            got=f"{type(raised).__name__}: {raised}",
            because=raised,
        )
    expect(
        any(is_sqlite_error(exc) for exc in exception_chain(raised)),
        "A broken migration must stop startup with its sqlite3 error. Close the connection, then let the "
        "error propagate (re-raise it, or raise your own error `from` it); do not catch it and return.",
        sent=f"MIGRATIONS with {show(broken)} appended",
        expected="startup to raise a sqlite3.Error (or an error caused by one)",
        got=f"{type(raised).__name__}: {raised}",
    )
    expect(
        seen.all_closed(),
        "A migration failed and the connection was left open. Wrap startup in try/finally "
        "(or except: close; raise) so the connection is closed before the error propagates.",
        sent=f"MIGRATIONS with {show(broken)} appended",
        expected="the connection closed",
        got="the connection still open",
    )


# --- lifespan, not on_event -----------------------------------------------------------


ON_EVENT_WORDS = ("on_event", "on_startup", "on_shutdown", "add_event_handler", "lifespan")


def test_no_deprecated_on_event(new_host: Callable[..., AppHost], host_env: dict[str, str], stats_path: Path) -> None:
    """Importing, starting and stopping the app triggers no on_event deprecation warning (use lifespan)"""
    # The host records every warning from before the import on (probes.watch with warn).
    host = new_host(env=host_env, setup=[("watch", {"folders": [str(stats_path.parent)], "warn": True})])
    with contextlib.suppress(HostGone):
        try:
            begin(host)
        except Exception:  # noqa: BLE001 - only the warnings matter here
            pass
        else:
            stop(host)
    ours = [w for w in Seen(host).warnings if w["deprecation"] and any(word in w["message"] for word in ON_EVENT_WORDS)]
    if ours:
        first = ours[0]
        text = " ".join(first["message"].split())
        fail(
            f"Your app triggers FastAPI's deprecation warning: {clip(text, 120)} Move the startup code "
            "before `yield` and the shutdown code after it in `lifespan`, and pass FastAPI(lifespan=lifespan).",
            expected="no deprecation warning about on_event",
            got=f"{Path(first['filename']).name}, line {first['lineno']}: {first['category']}: {text}",
        )


def test_lifespan_runs_as_context_manager(host: AppHost, stats_path: Path) -> None:
    """`async with lifespan(app)` opens app.state.db on entry and writes the stats and closes it on exit"""
    seen = host.probe("enter_lifespan")
    expect(
        seen["callable"],
        "app.py should define `lifespan`, an async context manager function "
        "(@asynccontextmanager async def lifespan(app): ...).",
        got=show(seen["repr"]),
    )
    if "call_error" in seen:
        fail(
            "Calling lifespan(app) failed; it should take the app as its one argument.",
            got=seen["call_error"],
        )
    expect(
        seen["is_manager"],
        "lifespan(app) should return an async context manager (decorate it with @asynccontextmanager).",
        got=f"a {seen['manager']}",
    )
    expect(
        seen["db_is_connection"] and seen["request_count"] == 0,
        "Inside `async with lifespan(app)` app.state.db and app.state.request_count = 0 should be set.",
        expected="a connection and 0",
        got=show([seen["db"] or "NoneType", seen["request_count"]]),
    )
    data = read_stats(host, stats_path, "when `async with lifespan(app)` ended")
    expect(
        data["total_requests"] == 0,
        "No request was served, so total_requests should be 0.",
        got=show(data["total_requests"]),
    )
    expect(
        Seen(host).all_closed(),
        "Leaving `async with lifespan(app)` should close the connection.",
        got="the connection still open",
    )


def test_uvicorn_sigterm_writes_stats(host: AppHost, stats_path: Path) -> None:
    """Under a real uvicorn, stopping with SIGTERM after N requests writes total_requests == N"""
    sent = rng.randrange(3, 8)
    # Startup, middleware and endpoints all run: when an earlier check found the app stuck,
    # uvicorn would only wait at the same place.
    expect_not_stuck("serve your app with uvicorn, startup and middleware included")
    # Worst case, well under the 8 s limit: start 4 s + all requests 1.2 s + stop 2 s.
    try:
        host.serve(wait=4.0)
    except HostGone:
        raise
    except StartupFailed as exc:
        fail("uvicorn did not finish starting your app.", expected="startup to finish", got=startup_failure(exc))
    except Exception as exc:  # noqa: BLE001 - the learner's startup may raise anything
        fail(
            "Starting the app raised an error in the lifespan's startup.",
            expected="startup to finish",
            got=learner_error(host, exc),
        )
    try:
        deadline = time.monotonic() + 1.2
        with host.client(raise_server_exceptions=False, timeout=1.0) as http:
            for _ in range(sent):
                path_sent = rng.choice(["/items", "/stats", f"/no-such-page-{rng.randrange(1000)}"])
                left = min(1.0, deadline - time.monotonic())
                try:
                    if left <= 0:
                        raise httpx.TimeoutException(f"{sent} requests took longer than 1.2 s together")
                    http.get(path_sent, timeout=left)
                except (httpx.HTTPError, HostError) as exc:
                    fail(
                        "uvicorn did not answer a request in time.",
                        sent=f"GET {path_sent}",
                        expected="an answer within 1 s",
                        got=f"{type(exc).__name__}: {exc}\n{host.log()}",
                    )
    finally:
        # What uvicorn does on SIGTERM: stop serving, then run the lifespan's shutdown.
        stopped = stop_server(host, 2.0)
    # uvicorn stops only after the lifespan's shutdown has finished, so the file is there or never will be.
    if not look(host, stats_path)["is_file"]:
        fail(
            "After one SIGTERM, uvicorn ran the lifespan's shutdown but no stats file appeared.",
            sent=f"{sent} requests, then SIGTERM",
            expected="the stats file at STATS_PATH",
            got=f"no file; uvicorn {stopped}; its output ends with:\n{host.log()}",
        )
    data = read_stats(host, stats_path, "by uvicorn after SIGTERM")
    expect(
        data["total_requests"] == sent,
        f"uvicorn served {sent} requests, so the stats file should say {sent}.",
        sent=f"{sent} requests, then SIGTERM",
        expected=str(sent),
        got=show(data["total_requests"]),
    )


def stop_server(host: AppHost, wait: float) -> str:
    """Stop uvicorn as SIGTERM does; how it went, for a message."""
    try:
        host.stop(wait=wait)
    except HostGone:
        raise
    except StartupFailed:
        return f"did not stop within {wait:g} s"
    except Exception as exc:  # noqa: BLE001
        return f"stopped with {type(exc).__name__}: {clip(str(exc), 200)}"
    return "stopped"

"""Grader for problem 5 — a lifespan that owns an in-memory database and exports statistics.

Each check imports the app afresh, in an empty working directory, with STATS_PATH pointing
to a file in an empty folder of its own. sqlite3.connect is wrapped before the import, so the
checks can see every connection the app opens and whether it was closed; os.replace and
os.rename are wrapped too (Path.replace, Path.rename and shutil.move call them), so the checks
can see which file was renamed onto STATS_PATH, and make that rename fail on purpose. The app
is started and stopped with `with TestClient(app)`, and once under a real uvicorn process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import json
import os
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from workbook.grading import (
    REAL_SQLITE_CONNECT,
    TrackedConnection,
    client,
    clip,
    expect,
    expect_created,
    expect_json,
    expect_not_stuck,
    expect_status,
    fail,
    import_learner,
    json_body,
    learner_frames,
    rng,
    serve,
    show,
)
from workbook.words import counted

REAL_CONNECT = REAL_SQLITE_CONNECT
REAL_RENAMES = {"replace": os.replace, "rename": os.rename}
PRODUCTS = ["Desk lamp", "Notebook", "Headphones", "Water bottle", "Backpack", "Stapler", "Webcam", "Plant pot"]
# Names outside ASCII (2-, 3- and 4-byte UTF-8) must round-trip through the database unchanged.
WIDE_PRODUCTS = ["Café crème mug", "Schreibtischlampe groß", "東京 notebook", "Plant pot 🌱"]
STATS_KEYS = ["total_requests", "uptime_seconds", "started_at", "stopped_at"]


@pytest.fixture
def opened(sqlite_connections: list[TrackedConnection]) -> list[TrackedConnection]:
    """The SQLite connections the learner's code opened (workbook.grading.sqlite_connections)."""
    return sqlite_connections


def real_path(path: Any, dir_fd: Any = None) -> str | None:
    """The absolute, symlink-free form of a path the learner's code handed to os.replace."""
    try:
        text = os.fsdecode(path)
        if isinstance(dir_fd, int) and not os.path.isabs(text):
            text = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), text)
        return os.path.realpath(text)
    except (TypeError, ValueError, OSError):
        return None


class Renames:
    """Every os.replace / os.rename call: {"function", "src", "dst", "done"}. While `fail_onto`
    is set, a rename onto that path raises OSError instead of renaming."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_onto: str | None = None

    def onto(self, path: Path) -> list[dict[str, Any]]:
        target = real_path(path)
        return [call for call in self.calls if call["dst"] == target]

    def shown(self) -> str:
        if not self.calls:
            return "no os.replace() or os.rename() call"
        return "; ".join(shown_call(call) for call in self.calls[-4:])


# Folders a learner can name, most specific first: messages show these names instead of the
# grader's scratch paths (/tmp/pytest-of-<user>/...), which mean nothing to a learner.
PLACES: list[tuple[str, str]] = []


def visible(path: Any) -> str:
    """A path as the learner knows it: relative to STATS_PATH's folder, the working directory or
    the system temp folder."""
    if path is None:
        return "?"
    text = os.fsdecode(path)
    for folder, label in PLACES:
        if text == folder or text.startswith(folder + os.sep):
            rest = text[len(folder) :].lstrip(os.sep)
            return f"{label}/{rest}" if rest else label
    return text


def shown_call(call: dict[str, Any]) -> str:
    return f"os.{call['function']}({visible(call['src'])!r}, {visible(call['dst'])!r})"


def text_of(path: str | None, limit: int = 100_000) -> str | None:
    """What the file at `path` holds right now (None when it is not a readable file)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:  # type: ignore[arg-type]
            return file.read(limit)
    except (OSError, TypeError, ValueError):
        return None


@pytest.fixture
def renames(monkeypatch: pytest.MonkeyPatch) -> Renames:
    log = Renames()

    def spy(function: str) -> Any:
        real = REAL_RENAMES[function]

        def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            call = {
                "function": function,
                "src": real_path(src, kwargs.get("src_dir_fd")),
                "dst": real_path(dst, kwargs.get("dst_dir_fd")),
                "done": False,
            }
            call["src_text"] = text_of(call["src"])
            log.calls.append(call)
            if log.fail_onto is not None and call["dst"] == log.fail_onto:
                raise OSError(errno.EIO, f"the grader made os.{function}() fail on purpose", os.fsdecode(dst))
            real(src, dst, *args, **kwargs)
            call["done"] = True

        return rename

    for function in REAL_RENAMES:
        monkeypatch.setattr(os, function, spy(function))
    return log


@pytest.fixture
def stats_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """STATS_PATH points to a randomly named file in an empty folder of its own."""
    path = tmp_path / f"exports-{rng.randrange(10**6)}" / f"stats-{rng.randrange(10**4)}.json"
    path.parent.mkdir()
    monkeypatch.setenv("STATS_PATH", str(path))
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    # tempfile's default folder is redirected into the check's own scratch space, so a temporary
    # file left in "the system temp folder" is seen, not lost among other programs' files.
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    PLACES[:] = [
        (os.path.realpath(path.parent), "<STATS_PATH's folder>"),
        (os.path.realpath(system_temp), "<system temp folder>"),
        (os.path.realpath(Path.cwd()), "<working directory>"),
        (os.path.realpath(tmp_path), "<another folder>"),
    ]
    return path


def system_temp_folder() -> Path:
    return Path(tempfile.gettempdir())


@pytest.fixture
def before_import(opened: list[TrackedConnection], renames: Renames, stats_path: Path) -> None:
    """Wrap sqlite3.connect, os.replace and os.rename, and set STATS_PATH, before the app is imported."""


# --- helpers --------------------------------------------------------------------------


def start(app: Any, **kwargs: Any) -> Any:
    """A TestClient whose startup (the lifespan up to `yield`) has run."""
    api = client(app, **kwargs)
    try:
        api.__enter__()
    except Exception as exc:  # noqa: BLE001 - the learner's startup may raise anything
        fail(
            "Starting the app raised an error in the lifespan's startup.",
            expected="startup to finish",
            got=f"{type(exc).__name__}: {exc}\n{learner_frames(exc)}".rstrip(),
        )
    return api


def stop(api: Any) -> Exception | None:
    """Run the shutdown; the error it raised, if any."""
    try:
        api.__exit__(None, None, None)
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


@contextlib.contextmanager
def running(app: Any, **kwargs: Any) -> Iterator[Any]:
    """`with TestClient(app)`: startup on entry, shutdown on exit, errors said in learner terms."""
    api = start(app, **kwargs)
    body_failed = True
    try:
        yield api
        body_failed = False
    finally:
        try:
            api.__exit__(None, None, None)
        except Exception as exc:  # noqa: BLE001
            if not body_failed:
                fail(
                    "Stopping the app raised an error in the lifespan's shutdown.",
                    expected="shutdown to finish",
                    got=f"{type(exc).__name__}: {exc}\n{learner_frames(exc)}".rstrip(),
                )


def state_db(app: Any) -> sqlite3.Connection:
    db = getattr(app.state, "db", None)
    expect(
        isinstance(db, sqlite3.Connection),
        "After startup, app.state.db should hold the sqlite3 connection the lifespan opened.",
        expected="a sqlite3.Connection in app.state.db",
        got="nothing in app.state.db" if db is None else f"a {type(db).__name__}",
    )
    return db


def query(api: Any, db: sqlite3.Connection, sql: str, params: tuple = ()) -> list[tuple]:
    """Run SQL on the learner's connection, failing in learner terms. With `api` (a started
    TestClient) it runs on the event loop's thread, where the lifespan opened the connection;
    with `api=None` it runs on the grader's own thread."""

    def run() -> list[tuple]:
        rows = db.execute(sql, params).fetchall()
        db.commit()
        return rows

    try:
        return api.portal.call(run) if api is not None else run()
    except sqlite3.ProgrammingError as exc:
        if "closed" in str(exc).lower():
            fail(
                f"app.state.db was already closed while the app was running ({sql.split()[0]} ...). Keep the "
                "connection open until shutdown: close it after `yield` (in `finally:`), not before.",
                expected="an open connection between startup and shutdown",
                got=f"ProgrammingError: {exc}",
            )
        fail(
            f"The grader could not use app.state.db from another thread ({sql.split()[0]} ...).",
            expected='sqlite3.connect(":memory:", check_same_thread=False), so sync endpoints (which run '
            "in worker threads) can share it",
            got=f"ProgrammingError: {exc}",
        )
    except sqlite3.Error as exc:
        fail(
            f"The database opened at startup does not hold what it should: `{sql}` failed.",
            expected="the tables created by MIGRATIONS",
            got=f"{type(exc).__name__}: {exc}",
        )


def items_in(api: Any, db: sqlite3.Connection) -> list[dict]:
    rows = query(api, db, "SELECT id, name, price FROM items ORDER BY id")
    return [{"id": row[0], "name": row[1], "price": row[2]} for row in rows]


def new_item() -> dict:
    return {
        "name": f"{rng.choice(PRODUCTS + WIDE_PRODUCTS)} {rng.randrange(100, 999)}",
        "price": rng.randrange(100, 99999) / 100,
    }


def request_count(app: Any) -> Any:
    return getattr(app.state, "request_count", None)


def send_mix(api: Any, count: int) -> None:
    """`count` requests of several kinds: list, stats and an unknown path (404)."""
    for _ in range(count):
        path = rng.choice(["/items", "/stats", f"/no-such-page-{rng.randrange(1000)}"])
        api.get(path)


def read_stats(path: Path, when: str) -> dict:
    expect(
        path.is_file(),
        f"No statistics file was written {when}.",
        expected=f"a JSON file at STATS_PATH ({path.name})",
        got="no file there",
    )
    text = path.read_text(encoding="utf-8", errors="replace")
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


def all_closed(opened: list[TrackedConnection]) -> bool:
    return bool(opened) and all(connection.was_closed for connection in opened)


def names_in(folder: Path) -> list[str]:
    try:
        return sorted(path.name for path in folder.iterdir())
    except OSError:
        return []


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


# --- import and startup ---------------------------------------------------------------


def test_import_has_no_side_effects(learner: Any, opened: list, stats_path: Path) -> None:
    """Importing app.py opens no database connection, writes no file and sets no app.state.db"""
    expect(
        not opened,
        "Importing app.py opened a database connection; open it in the lifespan's startup instead.",
        expected="no sqlite3.connect call at import",
        got=f"{counted(len(opened), 'connection')} opened",
    )
    written = sorted(path.name for path in Path.cwd().iterdir())
    expect(
        not written and not stats_path.exists(),
        "Importing app.py wrote files; only shutdown writes the stats.",
        expected="no file",
        got=show(written or [stats_path.name]),
    )
    early = getattr(learner.app.state, "db", None)
    expect(
        early is None,
        "app.state.db is already set before startup.",
        expected="no app.state.db until the lifespan runs",
        got=show(repr(early)),
    )


def test_startup_opens_in_memory_db(learner: Any, opened: list) -> None:
    """Startup opens one in-memory SQLite connection and puts it in app.state.db"""
    with running(learner.app) as api:
        db = state_db(learner.app)
        files = [row[2] for row in query(api, db, "PRAGMA database_list") if row[1] == "main"]
        expect(
            files == [""],
            'The database should live in memory: sqlite3.connect(":memory:", ...).',
            expected="an in-memory database",
            got=f"a database file {show(files)}",
        )
        expect(
            len(opened) == 1,
            "Startup should open exactly one connection and share it.",
            expected="1 sqlite3.connect call",
            got=f"{len(opened)} calls",
        )


def test_connection_shared_across_threads(learner: Any) -> None:
    """app.state.db can be used from other threads (check_same_thread=False)"""
    with running(learner.app):
        query(None, state_db(learner.app), "SELECT 1")


def test_migrations_set_user_version(learner: Any) -> None:
    """After startup PRAGMA user_version equals len(MIGRATIONS)"""
    migrations = getattr(learner, "MIGRATIONS", None)
    expect(
        isinstance(migrations, list),
        "app.py should define MIGRATIONS, a list of SQL strings.",
        got=show(repr(migrations)),
    )
    with running(learner.app) as api:
        version = query(api, state_db(learner.app), "PRAGMA user_version")[0][0]
    expect(
        version == len(migrations),
        f"Startup should record how many migrations ran: PRAGMA user_version = {len(migrations)}.",
        expected=str(len(migrations)),
        got=str(version),
    )


def test_migrations_read_at_startup(learner: Any) -> None:
    """Migrations appended to MIGRATIONS before startup are applied too, in order"""
    migrations = getattr(learner, "MIGRATIONS", None)
    expect(
        isinstance(migrations, list),
        "app.py should define MIGRATIONS, a list of SQL strings.",
        got=show(repr(migrations)),
    )
    table = f"grader_notes_{rng.randrange(16**6):06x}"
    # The index needs the table, so applying these out of order fails.
    migrations.extend(
        [f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note TEXT)", f"CREATE INDEX {table}_by_note ON {table} (note)"]
    )
    with running(learner.app) as api:
        db = state_db(learner.app)
        found = sorted(
            row[0] for row in query(api, db, "SELECT name FROM sqlite_master WHERE name LIKE ?", (f"{table}%",))
        )
        version = query(api, db, "PRAGMA user_version")[0][0]
    expect(
        found == [table, f"{table}_by_note"],
        "Startup should apply every entry of the module-level MIGRATIONS list "
        "as it is when the app starts (read it inside the lifespan, not at import).",
        expected=show([table, f"{table}_by_note"]),
        got=show(found),
    )
    expect(
        version == len(migrations),
        "PRAGMA user_version should count every migration applied.",
        expected=str(len(migrations)),
        got=str(version),
    )
    # A caller may also replace the list instead of extending it: the module's MIGRATIONS at startup counts.
    other = f"grader_tags_{rng.randrange(16**6):06x}"
    replacement = [*migrations, f"CREATE TABLE {other} (id INTEGER PRIMARY KEY)"]
    learner.MIGRATIONS = replacement
    with running(learner.app) as api:
        found = [
            row[0]
            for row in query(api, state_db(learner.app), "SELECT name FROM sqlite_master WHERE name = ?", (other,))
        ]
    expect(
        found == [other],
        f"table {other} missing, expected it: MIGRATIONS was replaced by a new list before startup, and startup "
        "applied the old one. Read the module-level name MIGRATIONS inside the lifespan (no default argument, "
        "no copy made at import).",
        sent=f"app.MIGRATIONS = [...the old entries..., {show(replacement[-1])}], then startup",
        expected=show([other]),
        got=show(found),
    )


def test_app_restarts_cleanly(learner: Any, opened: list, stats_path: Path) -> None:
    """The same app started twice in one process gets a fresh database, count, start time and stats each time"""
    with running(learner.app, raise_server_exceptions=False) as api:
        first_items = json_body(api.get("/items"))
        api.post("/items", json=new_item())
        send_mix(api, rng.randrange(1, 4))
    first = read_stats(stats_path, "when the app stopped the first time")
    sent = rng.randrange(2, 6)
    with running(learner.app, raise_server_exceptions=False) as api:
        count = request_count(learner.app)
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
    second = read_stats(stats_path, "when the app stopped the second time")
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
    expect(
        len(opened) == 2 and all_closed(opened),
        f"{counted(len(opened), 'connection')} opened over two runs, "
        f"{sum(not c.was_closed for c in opened)} left open; "
        "expected one per startup, each closed at its shutdown.",
        expected="2 connections, both closed",
        got=f"{len(opened)} opened, {sum(c.was_closed for c in opened)} closed",
    )


def test_seed_rows_at_startup(learner: Any) -> None:
    """Startup seeds at least 3 rows into items(id, name, price)"""
    with running(learner.app) as api:
        db = state_db(learner.app)
        columns = [row[1] for row in query(api, db, "PRAGMA table_info(items)")]
        expect(
            all(name in columns for name in ("id", "name", "price")),
            "The migrations should create items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL).",
            expected=show(["id", "name", "price"]),
            got=show(columns),
        )
        rows = items_in(api, db)
    expect(len(rows) >= 3, "Startup should seed at least 3 items.", expected="3 or more rows", got=f"{len(rows)} rows")
    expect(
        all(isinstance(r["name"], str) and r["name"] and is_number(r["price"]) for r in rows),
        "Every seeded item needs a name and a numeric price.",
        got=show(rows),
    )


# --- the endpoints --------------------------------------------------------------------


def test_list_items_reads_state_db(learner: Any) -> None:
    """GET /items answers 200 with every row of app.state.db's items as {id, name, price}, by id"""
    with running(learner.app) as api:
        db = state_db(learner.app)
        item = new_item()
        query(api, db, "INSERT INTO items (name, price) VALUES (?, ?)", (item["name"], item["price"]))
        expected = items_in(api, db)
        response = api.get("/items")
        expect_status(response, 200)
        expect_json(
            response,
            expected,
            "GET /items should list every row of the items table in app.state.db "
            "(including one the grader inserted), as {id, name, price}, ordered by id.",
        )


def test_create_item_answers_201(learner: Any) -> None:
    """POST /items answers 201 with the new row (its id from the database), which GET /items then lists"""
    with running(learner.app) as api:
        db = state_db(learner.app)
        # A random number of extra rows, and a deleted one, so a hard-coded or counted id is wrong.
        for _ in range(rng.randrange(2, 6)):
            extra = new_item()
            query(api, db, "INSERT INTO items (name, price) VALUES (?, ?)", (extra["name"], extra["price"]))
        rows = items_in(api, db)
        gone = rng.choice(rows[1:-1])
        query(api, db, "DELETE FROM items WHERE id = ?", (gone["id"],))
        item = new_item()
        response = api.post("/items", json=item)
        body = expect_created(
            response,
            "A successful POST /items should answer 201 Created.",
            no_id="The created item should carry its integer id.",
            expected='{"id": <int>, "name": ..., "price": ...}',
        )
        stored = items_in(api, state_db(learner.app))
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


def test_create_item_validates(learner: Any) -> None:
    """POST /items answers 422 for a negative price or a missing field, and stores nothing"""
    with running(learner.app) as api:
        before = items_in(api, state_db(learner.app))
        good = new_item()
        for bad in (
            {**good, "price": -good["price"]},
            {"name": good["name"]},
            {"price": good["price"]},
            {**good, "price": "cheap"},
        ):
            expect_status(api.post("/items", json=bad), 422, "An invalid item must be refused with 422.")
        after = items_in(api, state_db(learner.app))
        expect(after == before, "A refused item must not be stored.", expected=show(before), got=show(after))


def test_create_item_price_bound(learner: Any) -> None:
    """A price of exactly 0 is accepted (201) and a price just below it is refused (422)"""
    with running(learner.app) as api:
        free = {"name": f"{rng.choice(WIDE_PRODUCTS)} sample {rng.randrange(100, 999)}", "price": 0}
        response = api.post("/items", json=free)
        expect_status(response, 201, "price >= 0 includes 0: a free item must be created (Field(ge=0), not gt=0).")
        below = {"name": free["name"], "price": -0.01}
        expect_status(api.post("/items", json=below), 422, "A price of -0.01 is below 0 and must be refused.")


def test_counter_counts_requests(learner: Any) -> None:
    """app.state.request_count is 0 after startup and grows by one per request"""
    with running(learner.app, raise_server_exceptions=False) as api:
        start = request_count(learner.app)
        expect(start == 0, "Startup should set app.state.request_count = 0.", expected="0", got=show(start))
        sent = rng.randrange(2, 6)
        for _ in range(sent):
            api.get("/items")
        count = request_count(learner.app)
        expect(
            count == sent,
            f"After {sent} requests app.state.request_count should be {sent}.",
            expected=str(sent),
            got=show(count),
        )


def test_counter_counts_404_and_500(learner: Any) -> None:
    """The middleware also counts requests that end in 404 and in 500"""

    def grader_boom() -> None:
        raise RuntimeError("an error the grader raises on purpose")

    boom = f"/grader-boom-{rng.randrange(10**6)}"
    learner.app.add_api_route(boom, grader_boom, methods=["GET"])
    with running(learner.app, raise_server_exceptions=False) as api:
        plan = ["404"] * rng.randrange(1, 4) + ["500"] * rng.randrange(1, 4)
        rng.shuffle(plan)
        for kind in plan:
            before = request_count(learner.app)
            response = api.get(f"/missing-{rng.randrange(1000)}" if kind == "404" else boom)
            expect_status(response, int(kind))
            after = request_count(learner.app)
            expect(
                is_number(before) and is_number(after) and after == before + 1,
                f"A request that ended in {kind} was not counted. Count in an HTTP middleware, "
                "before `await call_next(request)`, so every request counts whatever happens after.",
                sent=f"GET {'an unknown path' if kind == '404' else 'an endpoint that raises'}",
                expected=f"request_count {before} -> {before + 1 if is_number(before) else '?'}",
                got=show(after),
            )


def test_stats_endpoint(learner: Any) -> None:
    """GET /stats answers total_requests (counting itself) and a growing uptime_seconds"""
    with running(learner.app) as api:
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


def test_stats_file_counts_requests(learner: Any, stats_path: Path) -> None:
    """On shutdown STATS_PATH holds a JSON object whose total_requests counts every request"""
    sent = rng.randrange(3, 9)
    with running(learner.app, raise_server_exceptions=False) as api:
        send_mix(api, sent)
    data = read_stats(stats_path, "when the app stopped")
    expect(
        data["total_requests"] == sent,
        f"{sent} requests were served, so total_requests should be {sent}. "
        "Write the file after `yield`, when every request has been counted.",
        expected=str(sent),
        got=show(data["total_requests"]),
    )


FAR_FROM_UTC = "WBT-05:45"  # a POSIX TZ (no tz database needed): local time is UTC+05:45


@contextlib.contextmanager
def host_far_from_utc() -> Iterator[None]:
    """Run with the host's local time zone at UTC+05:45, so local times cannot pass for UTC."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = FAR_FROM_UTC
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()


def test_stats_file_times(learner: Any, stats_path: Path) -> None:
    """The stats file's started_at and stopped_at are UTC times of the run, also on a host far from UTC"""
    before = datetime.now(timezone.utc)
    clock = time.monotonic()
    with host_far_from_utc(), running(learner.app, raise_server_exceptions=False) as api:
        api.get("/items")
        time.sleep(0.05)
    elapsed = time.monotonic() - clock
    after = datetime.now(timezone.utc)
    data = read_stats(stats_path, "when the app stopped")
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


def test_stats_file_creates_missing_folders(learner: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """When STATS_PATH's folders do not exist yet, shutdown creates them and writes the file"""
    nested = tmp_path / f"reports-{rng.randrange(10**6)}" / str(rng.randrange(2020, 2030)) / "stats.json"
    monkeypatch.setenv("STATS_PATH", str(nested))
    with running(learner.app, raise_server_exceptions=False) as api:
        api.get("/items")
    read_stats(nested, "into folders that did not exist yet (create them with mkdir(parents=True, exist_ok=True))")


def test_stats_file_replaced_atomically(learner: Any, renames: Renames, stats_path: Path) -> None:
    """The stats file is replaced atomically: os.replace() renames a temporary file from the same folder onto it"""
    stats_path.write_text('{"old": true}', encoding="utf-8")
    with running(learner.app, raise_server_exceptions=False) as api:
        api.get("/items")
    read_stats(stats_path, "when the app stopped")
    done = [call for call in renames.onto(stats_path) if call["done"]]
    expect(
        bool(done),
        "no rename onto STATS_PATH: the stats file was written in place, so a reader (or a crash) could meet "
        "a half-written file. Write a temporary file in the same folder, then os.replace() it onto STATS_PATH.",
        sent=f"an app run with STATS_PATH={stats_path.name}, which already existed",
        expected="os.replace(<temporary file>, STATS_PATH)",
        got=renames.shown(),
    )
    source = done[-1]["src"]
    expect(
        source is not None and Path(source).parent == Path(done[-1]["dst"]).parent,
        f"the temporary file was in {visible(Path(source).parent) if source else '?'}, expected STATS_PATH's "
        "folder. A rename is atomic only within one file system (shutil.move across them copies the file). "
        "Create the temporary file in the same folder as STATS_PATH (dir=...), then os.replace() it.",
        expected="a temporary file in <STATS_PATH's folder>",
        got=shown_call(done[-1]),
    )


def test_stats_file_complete_when_renamed(learner: Any, renames: Renames, stats_path: Path) -> None:
    """At the moment it is renamed onto STATS_PATH, the temporary file already holds the complete JSON"""
    with running(learner.app, raise_server_exceptions=False) as api:
        api.get("/items")
    done = [call for call in renames.onto(stats_path) if call["done"]]
    expect(
        bool(done),
        "no rename onto STATS_PATH: write a temporary file in the same folder, then os.replace() it onto the target.",
        expected="os.replace(<temporary file>, STATS_PATH)",
        got=renames.shown(),
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
        got=f"{shown_call(done[-1])} while the file held {clip(show(held), 120)}",
    )


def leftovers(stats_path: Path, renames: Renames) -> list[str]:
    """Temporary files left behind: in STATS_PATH's folder, in the system temp folder, and any
    file that was renamed (or meant to be renamed) onto STATS_PATH and still exists."""
    found = [f"<STATS_PATH's folder>/{name}" for name in names_in(stats_path.parent) if name != stats_path.name]
    found += [f"<system temp folder>/{name}" for name in names_in(system_temp_folder())]
    for call in renames.onto(stats_path):
        if call["src"] and os.path.exists(call["src"]) and visible(call["src"]) not in found:
            found.append(visible(call["src"]))
    return found


def test_stats_folder_has_no_leftovers(learner: Any, renames: Renames, stats_path: Path) -> None:
    """After shutdown only the stats file remains: no temporary file is left, here or in the system temp folder"""
    with running(learner.app, raise_server_exceptions=False) as api:
        api.get("/items")
    read_stats(stats_path, "when the app stopped")
    left = leftovers(stats_path, renames)
    expect(
        not left,
        f"{counted(len(left), 'temporary file')} left behind, expected none: rename the temporary file onto STATS_PATH "
        "(and delete it if writing fails).",
        expected=f"only {show(stats_path.name)} in STATS_PATH's folder, and nothing in the system temp folder",
        got=show(left),
    )


def test_stats_path_read_at_shutdown(learner: Any, stats_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STATS_PATH is read when the app stops: a path set while it runs is the one written"""
    with running(learner.app, raise_server_exceptions=False) as api:
        api.get("/items")
        # A relative path this time: it names a file in the working directory at shutdown.
        late = Path(f"late-{rng.randrange(10**6)}") / "stats.json"
        (Path.cwd() / late.parent).mkdir()
        monkeypatch.setenv("STATS_PATH", str(late))
    expect(
        not stats_path.exists(),
        "the stats went to the STATS_PATH of import time, expected the one set while the app ran: read "
        "os.environ when the app shuts down.",
        sent=f"STATS_PATH changed to the relative path {str(late)!r} while the app was running",
        expected=f"{late} in the working directory",
        got=f"{stats_path.name} (the path of import time)",
    )
    read_stats(Path.cwd() / late, f"to {late} (the relative STATS_PATH set while the app was running)")


def test_stats_default_path(learner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without STATS_PATH the stats go to stats.json in the working directory"""
    monkeypatch.delenv("STATS_PATH")
    with running(learner.app, raise_server_exceptions=False) as api:
        api.get("/items")
    read_stats(Path.cwd() / "stats.json", "to stats.json in the working directory (STATS_PATH unset)")


def test_no_temporary_file_left_when_rename_fails(
    learner: Any, opened: list, renames: Renames, stats_path: Path
) -> None:
    """When renaming onto STATS_PATH fails, shutdown deletes its temporary file, keeps the old file and closes the db"""
    old = json.dumps({"total_requests": rng.randrange(100, 999), "note": "written before this run"})
    stats_path.write_text(old, encoding="utf-8")
    sent = "os.replace() / os.rename() onto STATS_PATH made to raise OSError at shutdown"
    api = start(learner.app, raise_server_exceptions=False)
    try:
        api.get("/items")
    finally:
        renames.fail_onto = real_path(stats_path)
        try:
            stop(api)
        finally:
            renames.fail_onto = None
    expect(
        bool(renames.onto(stats_path)),
        "no rename onto STATS_PATH: shutdown never renamed a file onto it. Write a temporary file in the same "
        "folder, then os.replace() it onto the target.",
        sent=sent,
        expected="os.replace(<temporary file>, STATS_PATH)",
        got=renames.shown(),
    )
    left = leftovers(stats_path, renames)
    expect(
        not left,
        f"{counted(len(left), 'temporary file')} left behind, expected none: renaming the temporary file failed and it "
        "stayed. Delete it when writing or renaming fails (try: ... os.replace(...) except BaseException: "
        "os.unlink(temporary); raise).",
        sent=sent,
        expected=f"only the earlier file {show([stats_path.name])}, and nothing in the system temp folder",
        got=show(left),
    )
    now = stats_path.read_text(encoding="utf-8", errors="replace") if stats_path.is_file() else None
    expect(
        now == old,
        "Renaming the temporary file failed, yet the earlier stats file was changed. Change it only by "
        "renaming a complete temporary file onto it; when that fails, leave the earlier file as it was.",
        sent=sent,
        expected=f"{stats_path.name} still holding {show(old)}",
        got="no file there any more" if now is None else show(now),
    )
    expect(
        all_closed(opened),
        "Writing the stats failed (the rename raised OSError) and the connection was left open. "
        "Close it in a `finally:` block around the shutdown code.",
        sent=sent,
        expected="the connection closed",
        got="the connection still open",
    )


# --- guaranteed cleanup ---------------------------------------------------------------


def test_db_closed_after_shutdown(learner: Any, opened: list) -> None:
    """Shutdown closes the database connection"""
    with running(learner.app, raise_server_exceptions=False) as api:
        api.get("/items")
    expect(
        all_closed(opened),
        "After shutdown the connection opened at startup should be closed.",
        expected="connection.close() after the stats are written",
        got="the connection still open",
    )


def test_db_closed_when_stats_write_fails(
    learner: Any, opened: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The database is closed even when writing the stats file fails"""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where a folder should be", encoding="utf-8")
    monkeypatch.setenv("STATS_PATH", str(blocker / "stats.json"))
    api = start(learner.app)
    try:
        state_db(learner.app)
    finally:
        stop(api)
    expect(
        all_closed(opened),
        "Writing the stats failed (STATS_PATH's parent is a file) and the connection was "
        "left open. Close it in a `finally:` block around the shutdown code.",
        expected="the connection closed",
        got="the connection still open",
    )


def test_stats_write_error_propagates(
    learner: Any, renames: Renames, stats_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """When writing the stats fails, shutdown lets the OSError propagate instead of logging and swallowing it"""
    blocker = tmp_path / f"not-a-folder-{rng.randrange(1000)}"
    blocker.write_text("a regular file where a folder should be", encoding="utf-8")
    for how, prepare in (
        ("STATS_PATH's parent is a file", lambda: monkeypatch.setenv("STATS_PATH", str(blocker / "stats.json"))),
        ("os.replace() onto STATS_PATH raises OSError", lambda: monkeypatch.setenv("STATS_PATH", str(stats_path))),
    ):
        prepare()
        api = start(learner.app, raise_server_exceptions=False)
        renames.fail_onto = real_path(stats_path) if "os.replace" in how else None
        try:
            raised = stop(api)
        finally:
            renames.fail_onto = None
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


def test_db_closed_when_migration_fails(learner: Any, opened: list) -> None:
    """When a migration fails, startup fails with its sqlite3 error and the connection is closed"""
    migrations = getattr(learner, "MIGRATIONS", None)
    expect(
        isinstance(migrations, list),
        "app.py should define MIGRATIONS, a list of SQL strings.",
        got=show(repr(migrations)),
    )
    broken = f"CREATE TABLE broken_{rng.randrange(1000)} (id INTEGER PRIMARY KEY,"
    migrations.append(broken)
    raised: Exception | None = None
    api = client(learner.app)
    try:
        api.__enter__()
    except Exception as exc:  # noqa: BLE001
        raised = exc
    else:
        stop(api)
    expect(
        raised is not None,
        "A broken migration must make startup fail, not be skipped.",
        sent=f"MIGRATIONS with {show(broken)} appended",
        expected="startup to raise the sqlite3 error",
        got="the app started",
    )
    if not opened:
        fail(
            "Startup failed before it opened a database connection, so the broken migration was never reached.",
            sent=f"MIGRATIONS with {show(broken)} appended",
            expected="a connection opened, the migration failing, the connection closed",
            got=f"{type(raised).__name__}: {raised}",
            because=raised,
        )
    expect(
        any(isinstance(exc, sqlite3.Error) for exc in exception_chain(raised)),
        "A broken migration must stop startup with its sqlite3 error. Close the connection, then let the "
        "error propagate (re-raise it, or raise your own error `from` it); do not catch it and return.",
        sent=f"MIGRATIONS with {show(broken)} appended",
        expected="startup to raise a sqlite3.Error (or an error caused by one)",
        got=f"{type(raised).__name__}: {raised}",
    )
    expect(
        all_closed(opened),
        "A migration failed and the connection was left open. Wrap startup in try/finally "
        "(or except: close; raise) so the connection is closed before the error propagates.",
        sent=f"MIGRATIONS with {show(broken)} appended",
        expected="the connection closed",
        got="the connection still open",
    )


# --- lifespan, not on_event -----------------------------------------------------------


ON_EVENT_WORDS = ("on_event", "on_startup", "on_shutdown", "add_event_handler", "lifespan")


def test_no_deprecated_on_event(problem: Any, before_import: None) -> None:
    """Importing, starting and stopping the app triggers no on_event deprecation warning (use lifespan)"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = import_learner(problem)
        api = client(module.app)
        with contextlib.suppress(Exception):
            api.__enter__()
            stop(api)
    ours = [
        w
        for w in caught
        if issubclass(w.category, DeprecationWarning) and any(word in str(w.message) for word in ON_EVENT_WORDS)
    ]
    if ours:
        first = ours[0]
        text = " ".join(str(first.message).split())
        fail(
            f"Your app triggers FastAPI's deprecation warning: {clip(text, 120)} Move the startup code "
            "before `yield` and the shutdown code after it in `lifespan`, and pass FastAPI(lifespan=lifespan).",
            expected="no deprecation warning about on_event",
            got=f"{Path(first.filename).name}, line {first.lineno}: {first.category.__name__}: {text}",
        )


def test_lifespan_runs_as_context_manager(learner: Any, opened: list, stats_path: Path) -> None:
    """`async with lifespan(app)` opens app.state.db on entry and writes the stats and closes it on exit"""
    lifespan = getattr(learner, "lifespan", None)
    expect(
        callable(lifespan),
        "app.py should define `lifespan`, an async context manager function "
        "(@asynccontextmanager async def lifespan(app): ...).",
        got=show(repr(lifespan)),
    )
    if inspect.isasyncgenfunction(lifespan):  # FastAPI accepts a bare async generator too
        lifespan = contextlib.asynccontextmanager(lifespan)
    try:
        manager = lifespan(learner.app)
    except Exception as exc:  # noqa: BLE001 - a wrong signature raises TypeError here
        fail(
            "Calling lifespan(app) failed; it should take the app as its one argument.",
            got=f"{type(exc).__name__}: {exc}",
        )
    expect(
        hasattr(manager, "__aenter__") and hasattr(manager, "__aexit__"),
        "lifespan(app) should return an async context manager (decorate it with @asynccontextmanager).",
        got=f"a {type(manager).__name__}",
    )
    seen: dict[str, Any] = {}

    async def run() -> None:
        async with manager:
            seen["db"] = getattr(learner.app.state, "db", None)
            seen["count"] = request_count(learner.app)

    asyncio.run(run())
    expect(
        isinstance(seen["db"], sqlite3.Connection) and seen["count"] == 0,
        "Inside `async with lifespan(app)` app.state.db and app.state.request_count = 0 should be set.",
        expected="a connection and 0",
        got=show([type(seen["db"]).__name__, seen["count"]]),
    )
    data = read_stats(stats_path, "when `async with lifespan(app)` ended")
    expect(
        data["total_requests"] == 0,
        "No request was served, so total_requests should be 0.",
        got=show(data["total_requests"]),
    )
    expect(
        all_closed(opened),
        "Leaving `async with lifespan(app)` should close the connection.",
        got="the connection still open",
    )


def test_uvicorn_sigterm_writes_stats(problem: Any, tmp_path: Path) -> None:
    """Under a real uvicorn, stopping with SIGTERM after N requests writes total_requests == N"""
    import httpx

    path = tmp_path / f"uvicorn-{rng.randrange(10**6)}" / "stats.json"
    path.parent.mkdir()
    sent = rng.randrange(3, 8)
    # Startup, middleware and endpoints all run: when an earlier check found the app stuck,
    # uvicorn would only wait at the same place (and this process cannot see where).
    expect_not_stuck("serve your app with uvicorn, startup and middleware included")
    # Worst case, well under the 8 s limit: start 4 s + all requests 1.2 s + stop 2 s.
    server = serve(problem, env={"STATS_PATH": str(path)})
    try:
        deadline = time.monotonic() + 1.2
        with httpx.Client(base_url=server.http_url, timeout=1.0) as http:
            for _ in range(sent):
                path_sent = rng.choice(["/items", "/stats", f"/no-such-page-{rng.randrange(1000)}"])
                left = min(1.0, deadline - time.monotonic())
                try:
                    if left <= 0:
                        raise httpx.TimeoutException(f"{sent} requests took longer than 1.2 s together")
                    http.get(path_sent, timeout=left)
                except httpx.HTTPError as exc:
                    fail(
                        "uvicorn did not answer a request in time.",
                        sent=f"GET {path_sent}",
                        expected="an answer within 1 s",
                        got=f"{type(exc).__name__}: {exc}\n{server.log()}",
                    )
    finally:
        code = server.stop(timeout=2.0)
    # uvicorn exits only after the lifespan's shutdown has finished, so the file is there or never will be.
    if not path.is_file():
        fail(
            "After one SIGTERM, uvicorn ran the lifespan's shutdown but no stats file appeared.",
            sent=f"{sent} requests, then SIGTERM",
            expected="the stats file at STATS_PATH",
            got=f"no file; uvicorn {'had to be killed' if code is None else f'exited with {code}'}; "
            f"its output ends with:\n{server.log()}",
        )
    data = read_stats(path, "by uvicorn after SIGTERM")
    expect(
        data["total_requests"] == sent,
        f"uvicorn served {sent} requests, so the stats file should say {sent}.",
        sent=f"{sent} requests, then SIGTERM",
        expected=str(sent),
        got=show(data["total_requests"]),
    )

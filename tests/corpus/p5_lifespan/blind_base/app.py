"""Problem 5 — Lifespan resource management.

A lifespan that owns an in-memory SQLite database: startup opens, migrates and seeds it;
shutdown exports request statistics to a JSON file and closes it. Read README.md in this
folder for the exact contract, then run `workbook check 5` after each change.
"""

from __future__ import annotations

import json  # noqa: F401 - you will need it to write the stats file
import os  # noqa: F401 - STATS_PATH, os.replace
import sqlite3  # noqa: F401
import tempfile  # noqa: F401 - handy for the temporary file
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone  # noqa: F401
from pathlib import Path  # noqa: F401

from fastapi import FastAPI, Request, Response, status  # noqa: F401
from pydantic import BaseModel, Field  # noqa: F401

MIGRATIONS: list[str] = [
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)",
    "CREATE INDEX items_by_name ON items (name)",
]  # Don't change this line

SEED_ITEMS: list[tuple[str, float]] = [
    ("Mechanical keyboard", 89.5),
    ("Wireless mouse", 24.99),
    ("USB-C hub", 39.0),
]  # Don't change this line


def apply_migrations(db: sqlite3.Connection) -> None:
    for statement in MIGRATIONS:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    db.commit()


def seed(db: sqlite3.Connection) -> None:
    db.executemany("INSERT INTO items (name, price) VALUES (?, ?)", SEED_ITEMS)
    db.commit()


def write_stats_atomically(target: Path, stats: dict) -> None:
    """Write `stats` as JSON to `target` through a temporary file in the same folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(stats, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        apply_migrations(db)
        seed(db)
        app.state.db = db
        app.state.request_count = 0
        app.state.started_at = datetime.now(timezone.utc)
        app.state.started_monotonic = time.monotonic()
        yield
        stopped_at = datetime.now(timezone.utc)
        stats = {
            "total_requests": app.state.request_count,
            "uptime_seconds": round(time.monotonic() - app.state.started_monotonic, 3),
            "started_at": app.state.started_at.isoformat(),
            "stopped_at": stopped_at.isoformat(),
        }
        write_stats_atomically(Path(os.environ.get("STATS_PATH", "stats.json")), stats)
    finally:
        db.close()


app = FastAPI(title="Problem 5 — Lifespan resource management", lifespan=lifespan)  # Don't change this line


@app.middleware("http")
async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    request.app.state.request_count += 1
    return await call_next(request)


class ItemIn(BaseModel):
    name: str
    price: float = Field(ge=0)


def row_to_item(row: tuple) -> dict:
    return {"id": row[0], "name": row[1], "price": row[2]}


@app.get("/items")
def list_items(request: Request) -> list[dict]:
    rows = request.app.state.db.execute("SELECT id, name, price FROM items ORDER BY id").fetchall()
    return [row_to_item(row) for row in rows]


@app.post("/items", status_code=status.HTTP_201_CREATED)
def create_item(item: ItemIn, request: Request) -> dict:
    db = request.app.state.db
    cursor = db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (item.name, item.price))
    db.commit()
    return {"id": cursor.lastrowid, "name": item.name, "price": item.price}


@app.get("/stats")
def get_stats(request: Request) -> dict:
    return {
        "total_requests": request.app.state.request_count,
        "uptime_seconds": round(time.monotonic() - request.app.state.started_monotonic, 3),
    }

"""Problem 5 — Lifespan resource management (reference solution).

One lifespan owns the in-memory database: startup opens it, migrates and seeds it;
shutdown exports the request statistics and closes it, whatever goes wrong in between.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from fastapi import FastAPI, Request, Response, status
from pydantic import BaseModel, Field

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
    # Why read MIGRATIONS here, not at import: startup must apply the list as it is now.
    for sql in MIGRATIONS:
        db.execute(sql)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    db.commit()


def seed(db: sqlite3.Connection) -> None:
    # Why executemany and a commit: one statement for all rows, visible to every request.
    db.executemany("INSERT INTO items (name, price) VALUES (?, ?)", SEED_ITEMS)
    db.commit()


def uptime_seconds(app: FastAPI) -> float:
    # Why from app.state: the start time was recorded once, at startup.
    return (datetime.now(timezone.utc) - app.state.started_at).total_seconds()


def write_stats(path: Path, stats: dict) -> None:
    # Why a temporary file and os.replace: a reader sees the old file or the new one, never half of one.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(stats, file, indent=2)
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Why check_same_thread=False: sync endpoints run in worker threads, not the startup thread.
    db = sqlite3.connect(":memory:", check_same_thread=False)
    # Why try/finally: the connection is closed if a migration, the stats export, or anything fails.
    try:
        apply_migrations(db)
        seed(db)
        app.state.db = db
        app.state.request_count = 0
        app.state.started_at = datetime.now(timezone.utc)
        yield
        stopped_at = datetime.now(timezone.utc)
        stats = {
            "total_requests": app.state.request_count,
            "uptime_seconds": (stopped_at - app.state.started_at).total_seconds(),
            "started_at": app.state.started_at.isoformat(),
            "stopped_at": stopped_at.isoformat(),
        }
        # Why read STATS_PATH now: the path in force when the app stops is the one that counts.
        write_stats(Path(os.environ.get("STATS_PATH", "stats.json")), stats)
    finally:
        db.close()


app = FastAPI(title="Problem 5 — Lifespan resource management", lifespan=lifespan)  # Don't change this line


@app.middleware("http")
async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    # Why count before call_next: a request whose endpoint raises (500) still counts, and /stats sees itself.
    request.app.state.request_count += 1
    return await call_next(request)


class ItemIn(BaseModel):
    # Why Field(ge=0): FastAPI answers 422 for a negative price before our code runs.
    name: str
    price: float = Field(ge=0)


@app.get("/items")
def list_items(request: Request) -> list[dict]:
    # Why request.app.state.db: the one connection the lifespan opened, shared by every request.
    rows = request.app.state.db.execute("SELECT id, name, price FROM items ORDER BY id").fetchall()
    return [{"id": row[0], "name": row[1], "price": row[2]} for row in rows]


@app.post("/items", status_code=status.HTTP_201_CREATED)
def create_item(item: ItemIn, request: Request) -> dict:
    # Why commit: the row must be there for the next request.
    db = request.app.state.db
    cursor = db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (item.name, item.price))
    db.commit()
    return {"id": cursor.lastrowid, "name": item.name, "price": item.price}


@app.get("/stats")
def get_stats(request: Request) -> dict:
    # Why no increment here: the middleware has already counted this request.
    return {"total_requests": request.app.state.request_count, "uptime_seconds": uptime_seconds(request.app)}

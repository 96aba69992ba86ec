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
    # TODO: run each statement of MIGRATIONS in order (read the list here, when the app starts),
    #       then set `PRAGMA user_version` to len(MIGRATIONS) and commit.
    raise NotImplementedError("apply_migrations() is not written yet")


def seed(db: sqlite3.Connection) -> None:
    # TODO: insert SEED_ITEMS into the items table and commit.
    raise NotImplementedError("seed() is not written yet")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # TODO (startup, before `yield`): open sqlite3.connect(":memory:", check_same_thread=False),
    #       apply the migrations, seed, and set app.state.db, app.state.request_count = 0 and
    #       the start time. If a migration fails, close the connection before the error propagates.
    # TODO (shutdown, after `yield`): write {"total_requests", "uptime_seconds", "started_at",
    #       "stopped_at"} (ISO 8601 UTC) to os.environ.get("STATS_PATH", "stats.json"), creating
    #       missing folders and replacing the file atomically (temporary file + os.replace), then
    #       close the connection -- even when writing the file fails (try/finally).
    raise NotImplementedError("lifespan() is not written yet")
    yield


app = FastAPI(title="Problem 5 — Lifespan resource management", lifespan=lifespan)  # Don't change this line


@app.middleware("http")
async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    # TODO: add 1 to request.app.state.request_count for every request, whatever its path or
    #       status (a 404 or a 500 counts too).
    return await call_next(request)


class ItemIn(BaseModel):
    # TODO: a price below 0 must make FastAPI answer 422.
    name: str
    price: float


@app.get("/items")
def list_items(request: Request) -> list[dict]:
    # TODO: return every row of items in request.app.state.db as {"id", "name", "price"}, ordered by id.
    raise NotImplementedError("GET /items is not written yet")


@app.post("/items")
def create_item(item: ItemIn, request: Request) -> dict:
    # TODO: insert the item into app.state.db and answer 201 with {"id", "name", "price"}.
    raise NotImplementedError("POST /items is not written yet")


@app.get("/stats")
def get_stats(request: Request) -> dict:
    # TODO: return {"total_requests": the count so far (this request included),
    #       "uptime_seconds": seconds since startup, as a float}.
    raise NotImplementedError("GET /stats is not written yet")

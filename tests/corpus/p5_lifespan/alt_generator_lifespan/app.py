"""Problem 5, alternative: a bare async-generator lifespan (FastAPI wraps it), an AsyncExitStack
for cleanup, a BaseHTTPMiddleware subclass and NamedTemporaryFile + Path.replace."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import AsyncExitStack, closing
from datetime import datetime, timezone
from pathlib import Path
from tempfile import NamedTemporaryFile

from fastapi import FastAPI, Request, status
from pydantic import BaseModel, Field
from starlette.middleware.base import BaseHTTPMiddleware

MIGRATIONS: list[str] = [
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)",
    "CREATE INDEX items_by_name ON items (name)",
]

SEED_ITEMS: list[tuple[str, float]] = [
    ("Mechanical keyboard", 89.5),
    ("Wireless mouse", 24.99),
    ("USB-C hub", 39.0),
]


def now() -> datetime:
    return datetime.now(timezone.utc)


async def lifespan(app: FastAPI):
    async with AsyncExitStack() as stack:
        db = stack.enter_context(closing(sqlite3.connect(":memory:", check_same_thread=False)))
        for sql in MIGRATIONS:
            db.executescript(sql)
        db.execute("PRAGMA user_version = " + str(len(MIGRATIONS)))
        for name, price in SEED_ITEMS:
            db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (name, price))
        db.commit()
        app.state.db, app.state.request_count, app.state.started = db, 0, now()
        yield
        stopped = now()
        target = Path(os.getenv("STATS_PATH") or "stats.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        with NamedTemporaryFile("w", dir=target.parent, suffix=".tmp", delete=False) as file:
            json.dump(
                {
                    "total_requests": app.state.request_count,
                    "uptime_seconds": (stopped - app.state.started).total_seconds(),
                    "started_at": app.state.started.isoformat().replace("+00:00", "Z"),
                    "stopped_at": stopped.isoformat().replace("+00:00", "Z"),
                },
                file,
            )
        temporary = Path(file.name)
        try:
            temporary.replace(target)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise


class CountRequests(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        request.app.state.request_count += 1
        return await call_next(request)


app = FastAPI(lifespan=lifespan)
app.add_middleware(CountRequests)


class Item(BaseModel):
    name: str
    price: float = Field(..., ge=0.0)


@app.get("/items")
def read_items(request: Request):
    db: sqlite3.Connection = request.app.state.db
    return [{"id": i, "name": n, "price": p} for i, n, p in db.execute("SELECT id, name, price FROM items ORDER BY id")]


@app.post("/items", status_code=status.HTTP_201_CREATED)
def write_item(item: Item, request: Request):
    db: sqlite3.Connection = request.app.state.db
    cursor = db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (item.name, item.price))
    db.commit()
    return {"id": cursor.lastrowid, "name": item.name, "price": item.price}


@app.get("/stats")
def read_stats(request: Request):
    return {
        "total_requests": request.app.state.request_count,
        "uptime_seconds": (now() - request.app.state.started).total_seconds(),
    }

"""Problem 5 written the old way: @app.on_event handlers instead of a lifespan."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

from fastapi import FastAPI, Request, Response, status
from pydantic import BaseModel, Field

MIGRATIONS: list[str] = [
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)",
    "CREATE INDEX items_by_name ON items (name)",
]

SEED_ITEMS: list[tuple[str, float]] = [
    ("Mechanical keyboard", 89.5),
    ("Wireless mouse", 24.99),
    ("USB-C hub", 39.0),
]

app = FastAPI(title="Problem 5 — Lifespan resource management")


@app.on_event("startup")
def startup() -> None:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        for sql in MIGRATIONS:
            db.execute(sql)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        db.executemany("INSERT INTO items (name, price) VALUES (?, ?)", SEED_ITEMS)
        db.commit()
    except BaseException:
        db.close()
        raise
    app.state.db = db
    app.state.request_count = 0
    app.state.started_at = datetime.now(timezone.utc)


@app.on_event("shutdown")
def shutdown() -> None:
    try:
        stopped_at = datetime.now(timezone.utc)
        stats = {
            "total_requests": app.state.request_count,
            "uptime_seconds": (stopped_at - app.state.started_at).total_seconds(),
            "started_at": app.state.started_at.isoformat(),
            "stopped_at": stopped_at.isoformat(),
        }
        path = Path(os.environ.get("STATS_PATH", "stats.json"))
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(stats, file)
        os.replace(temporary, path)
    finally:
        app.state.db.close()


@app.middleware("http")
async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    request.app.state.request_count += 1
    return await call_next(request)


class ItemIn(BaseModel):
    name: str
    price: float = Field(ge=0)


@app.get("/items")
def list_items(request: Request) -> list[dict]:
    rows = request.app.state.db.execute("SELECT id, name, price FROM items ORDER BY id").fetchall()
    return [{"id": row[0], "name": row[1], "price": row[2]} for row in rows]


@app.post("/items", status_code=status.HTTP_201_CREATED)
def create_item(item: ItemIn, request: Request) -> dict:
    db = request.app.state.db
    cursor = db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (item.name, item.price))
    db.commit()
    return {"id": cursor.lastrowid, "name": item.name, "price": item.price}


@app.get("/stats")
def get_stats(request: Request) -> dict:
    uptime = (datetime.now(timezone.utc) - request.app.state.started_at).total_seconds()
    return {"total_requests": request.app.state.request_count, "uptime_seconds": uptime}

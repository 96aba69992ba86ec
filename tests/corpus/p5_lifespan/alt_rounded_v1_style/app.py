"""Problem 5, alternative: pydantic-v1 habits that still work (Field(example=...), which warns
PydanticDeprecatedSince20; datetime.utcnow(), deprecated on Python 3.12+), uptimes rounded to
1 decimal in /stats and 2 in the file, a migration error re-raised as a RuntimeError `from`
the sqlite3 error, and a fixed-name temporary file renamed with os.rename."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
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


def utc_now() -> datetime:
    return datetime.utcnow().replace(tzinfo=timezone.utc)


def migrate(db: sqlite3.Connection) -> None:
    for number, sql in enumerate(MIGRATIONS, start=1):
        try:
            db.execute(sql)
        except sqlite3.Error as exc:
            raise RuntimeError(f"migration {number} failed: {sql}") from exc
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    db.commit()


def save_stats(target: str, stats: dict) -> None:
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, os.path.basename(target) + ".writing")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(json.dumps(stats, indent=1))
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, target)
    except Exception:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


@asynccontextmanager
async def lifespan(app: FastAPI):
    db = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        migrate(db)
        db.executemany("INSERT INTO items (name, price) VALUES (?, ?)", SEED_ITEMS)
        db.commit()
    except BaseException:
        db.close()
        raise
    app.state.db = db
    app.state.request_count = 0
    app.state.started_at = utc_now()
    try:
        yield
        stopped_at = utc_now()
        save_stats(
            os.environ.get("STATS_PATH", "stats.json"),
            {
                "total_requests": app.state.request_count,
                "uptime_seconds": round((stopped_at - app.state.started_at).total_seconds(), 2),
                "started_at": app.state.started_at.isoformat(),
                "stopped_at": stopped_at.isoformat(),
            },
        )
    finally:
        db.close()


app = FastAPI(lifespan=lifespan)


@app.middleware("http")
async def count_every_request(request: Request, call_next):
    app.state.request_count += 1
    return await call_next(request)


class ItemIn(BaseModel):
    name: str = Field(..., example="Desk lamp")
    price: float = Field(..., ge=0, example=25.0)


@app.get("/items")
def get_items(request: Request):
    rows = request.app.state.db.execute("SELECT id, name, price FROM items ORDER BY id").fetchall()
    return [{"id": row_id, "name": name, "price": price} for row_id, name, price in rows]


@app.post("/items")
def post_item(item: ItemIn, request: Request):
    db = request.app.state.db
    with db:
        row_id = db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (item.name, item.price)).lastrowid
    return JSONResponse(status_code=201, content={"id": row_id, "name": item.name, "price": item.price})


@app.get("/stats")
def get_stats(request: Request):
    uptime = (utc_now() - request.app.state.started_at).total_seconds()
    return {"total_requests": request.app.state.request_count, "uptime_seconds": round(uptime, 1)}

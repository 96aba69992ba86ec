"""Problem 5, alternative: a pure ASGI middleware class, time.monotonic() uptime, async endpoints."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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


def export(path: Path, stats: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
    try:
        temporary.write_text(json.dumps(stats), encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        with db:
            for number, sql in enumerate(MIGRATIONS, start=1):
                db.execute(sql)
                db.execute(f"PRAGMA user_version = {number}")
            db.executemany("INSERT INTO items (name, price) VALUES (?, ?)", SEED_ITEMS)
        app.state.db = db
        app.state.request_count = 0
        app.state.clock = time.monotonic()
        started_at = datetime.now(timezone.utc).isoformat()
        yield
        export(
            Path(os.environ.get("STATS_PATH", "stats.json")),
            {
                "total_requests": app.state.request_count,
                "uptime_seconds": time.monotonic() - app.state.clock,
                "started_at": started_at,
                "stopped_at": datetime.now(timezone.utc).isoformat(),
            },
        )
    finally:
        db.close()


class RequestCounter:
    """Counts every HTTP request before anything else can fail."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["app"].state.request_count += 1
        await self.app(scope, receive, send)


app = FastAPI(lifespan=lifespan)
app.add_middleware(RequestCounter)


class NewItem(BaseModel):
    name: str
    price: float = Field(ge=0)


@app.get("/items")
async def items(request: Request) -> list[dict]:
    cursor = request.app.state.db.execute("SELECT id, name, price FROM items ORDER BY id")
    return [dict(zip(("id", "name", "price"), row, strict=True)) for row in cursor]


@app.post("/items")
async def add_item(item: NewItem, request: Request) -> JSONResponse:
    with request.app.state.db as db:
        new_id = db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (item.name, item.price)).lastrowid
    return JSONResponse({"id": new_id, **item.model_dump()}, status_code=201)


@app.get("/stats")
async def stats(request: Request) -> dict:
    return {
        "total_requests": request.app.state.request_count,
        "uptime_seconds": time.monotonic() - request.app.state.clock,
    }

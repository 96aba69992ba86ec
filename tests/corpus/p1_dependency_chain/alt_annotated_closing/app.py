"""Alternative correct solution: Annotated dependencies, contextlib.closing in the yield
dependency, the API-key check as a route-level dependency, validation with Field patterns."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, Field

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "name TEXT NOT NULL, email TEXT NOT NULL UNIQUE)"
)


@dataclass(frozen=True)
class Settings:
    database_path: str = field(default="users.db")
    api_key: str = field(default="change-me")


def get_settings() -> Settings:
    env = os.environ
    return Settings(env.get("DATABASE_PATH", "users.db"), env.get("API_KEY", "change-me"))


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_db(settings: SettingsDep):
    with closing(sqlite3.connect(settings.database_path, check_same_thread=False)) as db:
        db.execute(SCHEMA)
        try:
            yield db
        except Exception:
            db.rollback()
            raise
        else:
            db.commit()


class UserRepository:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def list_users(self) -> list[dict]:
        self._db.row_factory = sqlite3.Row
        return [dict(row) for row in self._db.execute("SELECT id, name, email FROM users ORDER BY id")]

    def create_user(self, name: str, email: str) -> dict:
        cursor = self._db.execute("INSERT INTO users (name, email) VALUES (?, ?)", (name, email))
        return {"id": cursor.lastrowid, "name": name, "email": email}

    def delete_user(self, user_id: int) -> bool:
        return self._db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0


def get_user_repo(db: Annotated[sqlite3.Connection, Depends(get_db)]) -> UserRepository:
    return UserRepository(db)


RepoDep = Annotated[UserRepository, Depends(get_user_repo)]


def require_api_key(settings: SettingsDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    if x_api_key is None or x_api_key != settings.api_key:
        raise HTTPException(status_code=403, detail="API key required")


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    email: str = Field(pattern=r"@")


app = FastAPI()


@app.get("/users")
def users_index(repo: RepoDep) -> list[dict]:
    return repo.list_users()


@app.post("/users", status_code=201)
def users_create(body: UserIn, repo: RepoDep) -> dict:
    try:
        return repo.create_user(body.name, body.email)
    except sqlite3.IntegrityError as exc:
        raise HTTPException(status_code=409, detail="duplicate email") from exc


@app.delete("/users/{user_id}", dependencies=[Depends(require_api_key)])
def users_delete(user_id: int, repo: RepoDep) -> Response:
    if not repo.delete_user(user_id):
        raise HTTPException(status_code=404, detail="not found")
    return Response(status_code=204)

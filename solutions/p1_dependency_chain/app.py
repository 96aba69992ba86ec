"""Problem 1 — Dependency injection chain (reference solution).

get_settings() -> get_db(settings) -> get_user_repo(db), and three endpoints that only
ever see the repository. Override get_settings and the whole chain follows.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Header, HTTPException, Response, status
from pydantic import BaseModel, Field, field_validator

CREATE_USERS_TABLE = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE
)
"""  # Don't change this line


@dataclass
class Settings:
    # Why a default per field: Settings() must work with no arguments.
    database_path: str = "users.db"
    api_key: str = "change-me"


def get_settings() -> Settings:
    # Why read the environment here: this is the one place configuration comes from.
    return Settings(
        database_path=os.environ.get("DATABASE_PATH", "users.db"),
        api_key=os.environ.get("API_KEY", "change-me"),
    )


def get_db(settings: Settings = Depends(get_settings)) -> Iterator[sqlite3.Connection]:
    # Why Depends(get_settings) and try/finally: overrides reach us, and the connection closes even on errors.
    # Why check_same_thread=False: FastAPI may run this set-up, the endpoint and the clean-up on different threads.
    connection = sqlite3.connect(settings.database_path, check_same_thread=False)
    try:
        connection.execute(CREATE_USERS_TABLE)
        yield connection
        connection.commit()
    finally:
        connection.close()


class UserRepository:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def list_users(self) -> list[dict]:
        # Why ORDER BY: SQLite promises no order without it.
        rows = self.connection.execute("SELECT id, name, email FROM users ORDER BY id").fetchall()
        return [{"id": row[0], "name": row[1], "email": row[2]} for row in rows]

    def create_user(self, name: str, email: str) -> dict:
        # Why let IntegrityError escape: the endpoint turns a duplicate email into 409.
        cursor = self.connection.execute("INSERT INTO users (name, email) VALUES (?, ?)", (name, email))
        return {"id": cursor.lastrowid, "name": name, "email": email}

    def delete_user(self, user_id: int) -> bool:
        # Why rowcount: it tells whether a user with that id existed.
        cursor = self.connection.execute("DELETE FROM users WHERE id = ?", (user_id,))
        return cursor.rowcount > 0


def get_user_repo(db: sqlite3.Connection = Depends(get_db)) -> UserRepository:
    # Why Depends(get_db): the repository gets the request's connection, never its own.
    return UserRepository(db)


class UserCreate(BaseModel):
    # Why Field and a validator: FastAPI answers 422 for us when they fail.
    name: str = Field(min_length=1, max_length=100)
    email: str

    @field_validator("name")
    @classmethod
    def name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        return value

    @field_validator("email")
    @classmethod
    def email_has_at(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("email must contain @")
        return value


app = FastAPI(title="Problem 1 — Dependency injection chain")  # Don't change this line


@app.get("/users")
def list_users(repo: UserRepository = Depends(get_user_repo)) -> list[dict]:
    # Why so short: the repository does the work; the endpoint only wires it.
    return repo.list_users()


@app.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(user: UserCreate, repo: UserRepository = Depends(get_user_repo)) -> dict:
    # Why catch IntegrityError: a duplicate email is the client's mistake (409), not a crash (500).
    try:
        return repo.create_user(user.name, user.email)
    except sqlite3.IntegrityError:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="Email already registered") from None


@app.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(
    user_id: int,
    x_api_key: str | None = Header(default=None),
    settings: Settings = Depends(get_settings),
    repo: UserRepository = Depends(get_user_repo),
) -> Response:
    # Why check the key before the id: strangers must not learn which ids exist.
    if x_api_key != settings.api_key:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Invalid or missing API key")
    if not repo.delete_user(user_id):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="User not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)

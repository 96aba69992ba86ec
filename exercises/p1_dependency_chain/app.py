"""Problem 1 — Dependency injection chain.

Build get_settings() -> get_db(settings) -> get_user_repo(db) and three endpoints that use
the repository. Read README.md in this folder for the exact contract, then run
`workbook check 1` after each change.
"""

from __future__ import annotations

import os  # noqa: F401 - you will need it in get_settings()
import sqlite3
from collections.abc import Iterator  # noqa: F401 - handy for get_db's return type
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Header, HTTPException, Response, status  # noqa: F401
from pydantic import BaseModel, Field, field_validator  # noqa: F401

CREATE_USERS_TABLE = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE
)
"""  # Don't change this line


@dataclass
class Settings:
    database_path: str = "users.db"
    api_key: str = "change-me"


def get_settings() -> Settings:
    # TODO: read DATABASE_PATH and API_KEY from os.environ, falling back to the defaults above.
    return Settings()


def get_db():
    # TODO: take `settings` as a parameter declared with Depends(get_settings).
    # TODO: open ONE sqlite3.connect(settings.database_path, check_same_thread=False) (FastAPI may
    #       run this function and the endpoint in different worker threads), run CREATE_USERS_TABLE,
    #       yield the connection, commit after the request, and close it in a `finally:` block so
    #       it is closed even when the endpoint raises.
    raise NotImplementedError("get_db() is not written yet")


class UserRepository:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def list_users(self) -> list[dict]:
        # TODO: return every user as {"id", "name", "email"}, ordered by id.
        raise NotImplementedError("UserRepository.list_users() is not written yet")

    def create_user(self, name: str, email: str) -> dict:
        # TODO: insert the user and return it as {"id", "name", "email"}.
        raise NotImplementedError("UserRepository.create_user() is not written yet")

    def delete_user(self, user_id: int) -> bool:
        # TODO: delete the user; return True if one was deleted, False if the id was unknown.
        raise NotImplementedError("UserRepository.delete_user() is not written yet")


def get_user_repo():
    # TODO: take `db` as a parameter declared with Depends(get_db) and return UserRepository(db).
    raise NotImplementedError("get_user_repo() is not written yet")


class UserCreate(BaseModel):
    # TODO: a name of 1 to 100 characters (not only spaces) and an email containing "@";
    #       anything else must make FastAPI answer 422.
    name: str
    email: str


app = FastAPI(title="Problem 1 — Dependency injection chain")  # Don't change this line


@app.get("/users")
def list_users():
    # TODO: receive the repository with Depends(get_user_repo) and return its users.
    raise NotImplementedError("GET /users is not written yet")


@app.post("/users")
def create_user(user: UserCreate):
    # TODO: answer 201 with the created user; a duplicate email answers 409, not 500.
    raise NotImplementedError("POST /users is not written yet")


@app.delete("/users/{user_id}")
def delete_user(user_id: int):
    # TODO: require the X-API-Key header to equal the settings' api_key (403 otherwise),
    #       answer 404 for an unknown id, and 204 with an empty body once deleted.
    raise NotImplementedError("DELETE /users/{user_id} is not written yet")

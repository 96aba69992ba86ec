"""Alternative correct solution: pydantic settings cached with lru_cache, an async yield
dependency, a class used directly as the repository dependency, async endpoints."""

import os
import sqlite3
from functools import lru_cache

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, field_validator


class Settings(BaseModel):
    database_path: str = "users.db"
    api_key: str = "change-me"


@lru_cache
def get_settings() -> Settings:
    return Settings(
        database_path=os.getenv("DATABASE_PATH", "users.db"),
        api_key=os.getenv("API_KEY", "change-me"),
    )


async def get_db(config: Settings = Depends(get_settings)):
    # Autocommit: async endpoints run on the event loop, so a write transaction left open
    # across an await would make the next request's INSERT block the loop waiting for it.
    conn = sqlite3.connect(config.database_path, isolation_level=None)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " name TEXT NOT NULL, email TEXT NOT NULL UNIQUE)"
        )
        yield conn
        conn.commit()
    finally:
        conn.close()


class UserRepository:
    def __init__(self, conn: sqlite3.Connection = Depends(get_db)):
        self.conn = conn

    def list_users(self):
        cur = self.conn.execute("SELECT id, name, email FROM users ORDER BY id ASC")
        return [dict(zip(("id", "name", "email"), row)) for row in cur]

    def create_user(self, name, email):
        new_id = self.conn.execute("INSERT INTO users(name, email) VALUES (?, ?)", (name, email)).lastrowid
        return {"id": new_id, "name": name, "email": email}

    def delete_user(self, user_id):
        return self.conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 1


get_user_repo = UserRepository


class NewUser(BaseModel):
    name: str
    email: str

    @field_validator("name")
    @classmethod
    def check_name(cls, v):
        if not v.strip() or len(v) > 100:
            raise ValueError("bad name")
        return v

    @field_validator("email")
    @classmethod
    def check_email(cls, v):
        if "@" not in v:
            raise ValueError("bad email")
        return v


app = FastAPI()


@app.get("/users")
async def all_users(repo: UserRepository = Depends(get_user_repo)):
    return repo.list_users()


@app.post("/users", status_code=201)
async def add_user(payload: NewUser, repo: UserRepository = Depends(get_user_repo)):
    try:
        return repo.create_user(payload.name, payload.email)
    except sqlite3.IntegrityError:
        raise HTTPException(409, "email taken")


@app.delete("/users/{user_id}", status_code=204)
async def remove_user(
    user_id: int,
    x_api_key: str = Header(None),
    config: Settings = Depends(get_settings),
    repo: UserRepository = Depends(get_user_repo),
):
    if x_api_key != config.api_key:
        raise HTTPException(403, "forbidden")
    if not repo.delete_user(user_id):
        raise HTTPException(404, "no such user")

"""Shared dependencies: every router imports these, none defines its own copy.

The store, the password context and the token helpers live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Depends, HTTPException, Query, status  # noqa: F401 - you will need them
from fastapi.security import OAuth2PasswordBearer
from jose import JWTError, jwt
from passlib.context import CryptContext

SECRET_KEY = "p4-modular-app-change-me-in-production"
ALGORITHM = "HS256"
ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
REFRESH_TOKEN_LIFETIME = timedelta(days=7)

pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login")


@dataclass
class Store:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_item_id: int = 1


STORE = Store(
    users={
        "admin": {"username": "admin", "role": "admin", "hashed_password": pwd_context.hash("admin-secret")},
    }
)


def create_token(username: str, token_type: str) -> str:
    lifetime = ACCESS_TOKEN_LIFETIME if token_type == "access" else REFRESH_TOKEN_LIFETIME
    claims = {"sub": username, "type": token_type, "exp": datetime.now(timezone.utc) + lifetime}
    return jwt.encode(claims, SECRET_KEY, algorithm=ALGORITHM)


def decode_token(token: str, expected_type: str) -> str | None:
    """The token's username when it is a valid, unexpired token of `expected_type`, else None."""
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    except JWTError:
        return None
    username = payload.get("sub")
    if payload.get("type") != expected_type or not isinstance(username, str):
        return None
    return username


def credentials_error() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )


def get_db() -> Store:
    return STORE


def get_current_user(token: str = Depends(oauth2_scheme), db: Store = Depends(get_db)) -> dict[str, Any]:
    username = decode_token(token, "access")
    if username is None or username not in db.users:
        raise credentials_error()
    return db.users[username]


def get_current_admin(user: dict[str, Any] = Depends(get_current_user)) -> dict[str, Any]:
    if user["role"] != "admin":
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Admin role required")
    return user


def pagination(
    skip: int = Query(0, ge=0),
    limit: int = Query(10, ge=1, le=100),
) -> dict[str, int]:
    return {"skip": skip, "limit": limit}

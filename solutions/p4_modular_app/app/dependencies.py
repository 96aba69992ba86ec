"""Shared dependencies: the in-memory store, token handling, the current user, pagination.

Every router imports these; none defines its own copy, so one
`app.dependency_overrides[get_current_user] = ...` reaches every route that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fastapi import Depends, HTTPException, Query, status
from fastapi.security import OAuth2PasswordBearer
from jose import JWTError, jwt
from passlib.context import CryptContext

SECRET_KEY = "p4-modular-app-change-me-in-production"
ALGORITHM = "HS256"
ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
REFRESH_TOKEN_LIFETIME = timedelta(days=7)
# bcrypt hashes at most 72 bytes of a password (the register route enforces it too).
BCRYPT_MAX_BYTES = 72

pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login")


@dataclass
class User:
    username: str
    role: str
    hashed_password: str


@dataclass
class Item:
    id: int
    name: str
    description: str | None
    price: float
    owner: str

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "price": self.price,
            "owner": self.owner,
        }


class Database:
    """The app's whole state: users by name and items by id, in memory."""

    def __init__(self) -> None:
        # Why the admin is created here: one admin must exist as soon as the app starts.
        self.users: dict[str, User] = {}
        self.items: dict[int, Item] = {}
        self.next_item_id = 1
        self.add_user("admin", "admin-secret", role="admin")

    def add_user(self, username: str, password: str, role: str = "user") -> User:
        # Why hash: only the bcrypt hash is stored, never the password itself.
        user = User(username=username, role=role, hashed_password=pwd_context.hash(password))
        self.users[username] = user
        return user

    def authenticate(self, username: str, password: str) -> User | None:
        # Why measure bytes first: registration refuses more than 72 bytes, and bcrypt 5 raises
        # ValueError for them in verify() (a 500 instead of 401).
        if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
            return None
        user = self.users.get(username)
        if user is None or not pwd_context.verify(password, user.hashed_password):
            return None
        return user

    def add_item(self, name: str, description: str | None, price: float, owner: str) -> Item:
        item = Item(id=self.next_item_id, name=name, description=description, price=price, owner=owner)
        self.items[item.id] = item
        self.next_item_id += 1
        return item


database = Database()


def get_db() -> Database:
    # Why a function: routes receive the store through Depends(get_db), so tests can override it.
    return database


def create_token(username: str, token_type: str) -> str:
    # Why a `type` claim: a refresh token must never pass as an access token, and back.
    lifetime = ACCESS_TOKEN_LIFETIME if token_type == "access" else REFRESH_TOKEN_LIFETIME
    claims = {"sub": username, "type": token_type, "exp": datetime.now(timezone.utc) + lifetime}
    return jwt.encode(claims, SECRET_KEY, algorithm=ALGORITHM)


def username_from_token(token: str, token_type: str) -> str | None:
    """The token's subject if it is a valid, unexpired token of `token_type`, else None."""
    try:
        claims = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    except JWTError:
        return None
    subject = claims.get("sub")
    if claims.get("type") != token_type or not isinstance(subject, str):
        return None
    return subject


def credentials_error(detail: str = "Could not validate credentials") -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_current_user(token: str = Depends(oauth2_scheme), db: Database = Depends(get_db)) -> User:
    # Why demand type "access": a stolen long-lived refresh token must not open the API.
    username = username_from_token(token, "access")
    user = db.users.get(username) if username else None
    if user is None:
        raise credentials_error()
    return user


def get_current_admin(user: User = Depends(get_current_user)) -> User:
    # Why chain on get_current_user: 401 for no token comes first, then 403 for a plain user.
    if user.role != "admin":
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Admin role required")
    return user


@dataclass
class Page:
    skip: int
    limit: int


def pagination(
    skip: int = Query(default=0, ge=0),
    limit: int = Query(default=10, ge=1, le=100),
) -> Page:
    # Why Query bounds: FastAPI answers 422 itself for skip < 0 or limit outside 1..100.
    return Page(skip=skip, limit=limit)

"""Problem 2, an alternative correct solution: OAuth2PasswordBearer(auto_error=False) with our
own 401 answers, an IntEnum for the role ranks, a class-based role checker, sync endpoints."""

from __future__ import annotations

import enum
import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jose import JWTError, jwt
from passlib.context import CryptContext
from pydantic import BaseModel, Field

SECRET_KEY = "an-alternative-secret-key"
ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = 30


class Role(enum.IntEnum):
    viewer = 1
    editor = 2
    admin = 3

    @classmethod
    def parse(cls, value: Any) -> Role | None:
        return cls.__members__.get(value) if isinstance(value, str) else None


pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token", auto_error=False)

users_db: dict[str, dict[str, str]] = {}
for _name, _role in (("alice", "admin"), ("bob", "editor"), ("carol", "viewer")):
    users_db[_name] = {"username": _name, "role": _role, "hashed_password": pwd_context.hash(f"{_name}-secret")}

posts: list[dict[str, Any]] = []
_ids = itertools.count(1)


class PostIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def create_access_token(data: dict, expires_delta: timedelta | None = None) -> str:
    claims = dict(data)
    claims["exp"] = datetime.now(timezone.utc) + (expires_delta or timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES))
    return jwt.encode(claims, SECRET_KEY, algorithm=ALGORITHM)


def current_claims(token: str | None = Depends(oauth2_scheme)) -> dict[str, Any]:
    if not token:
        raise unauthorized("Not authenticated")
    try:
        claims = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    except JWTError:
        raise unauthorized("Invalid token") from None
    if claims.get("sub") not in users_db or "role" not in claims:
        raise unauthorized("Invalid token")
    return claims


class RoleChecker:
    def __init__(self, minimum: Role) -> None:
        self.minimum = minimum

    def __call__(self, claims: dict[str, Any] = Depends(current_claims)) -> dict[str, Any]:
        role = Role.parse(claims["role"])
        if role is None or role < self.minimum:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Insufficient role")
        return claims


def require_role(role: str) -> RoleChecker:
    minimum = Role.parse(role)
    if minimum is None:
        raise ValueError(f"no such role: {role}")
    return RoleChecker(minimum)


app = FastAPI()


@app.post("/token")
def login(form: OAuth2PasswordRequestForm = Depends()) -> dict[str, str]:
    user = users_db.get(form.username)
    # bcrypt stops at 72 bytes (bcrypt 5 raises beyond), so a longer password matches nobody.
    too_long = len(form.password.encode()) > 72
    if not user or too_long or not pwd_context.verify(form.password, user["hashed_password"]):
        raise unauthorized("Incorrect username or password")
    token = create_access_token({"sub": user["username"], "role": user["role"]})
    return {"access_token": token, "token_type": "bearer"}


@app.get("/admin/dashboard", dependencies=[Depends(require_role("admin"))])
def dashboard() -> dict[str, int]:
    return {"users": len(users_db), "posts": len(posts)}


@app.post("/posts", status_code=201)
def create_post(post: PostIn, claims: dict = Depends(require_role("editor"))) -> dict[str, Any]:
    created = {"id": next(_ids), "title": post.title, "body": post.body, "author": claims["sub"]}
    posts.append(created)
    return created


@app.get("/posts", dependencies=[Depends(require_role("viewer"))])
def list_posts() -> list[dict[str, Any]]:
    return posts

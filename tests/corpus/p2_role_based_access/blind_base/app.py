"""Problem 2 — Role-based access control with JWT.

Start from the lesson's OAuth2 password flow (§2 Authentication: OAuth2 with JWT) and add
roles: viewer < editor < admin. Read README.md in this folder for the exact contract, then
run `workbook check 2` after each change.
"""

from __future__ import annotations

from collections.abc import Callable  # noqa: F401 - handy for require_role's return type
from datetime import datetime, timedelta, timezone  # noqa: F401 - you will need them for `exp`
from typing import Annotated, Any  # noqa: F401

from fastapi import Depends, FastAPI, HTTPException, status  # noqa: F401
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jose import JWTError, jwt  # noqa: F401
from passlib.context import CryptContext
from pydantic import BaseModel, Field  # noqa: F401

# --- Configuration (in a real app, read SECRET_KEY from the environment) ---
SECRET_KEY = "workbook-p2-change-me-in-production"  # Don't change this line
ALGORITHM = "HS256"  # Don't change this line
ACCESS_TOKEN_EXPIRE_MINUTES = 30  # Don't change this line

ROLE_RANK: dict[str, int] = {"viewer": 1, "editor": 2, "admin": 3}

pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")  # Don't change this line
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")  # Don't change this line

users_db: dict[str, dict[str, str]] = {
    "alice": {"username": "alice", "role": "admin", "hashed_password": pwd_context.hash("alice-secret")},
    "bob": {"username": "bob", "role": "editor", "hashed_password": pwd_context.hash("bob-secret")},
    "carol": {"username": "carol", "role": "viewer", "hashed_password": pwd_context.hash("carol-secret")},
}

posts: list[dict[str, Any]] = []  # Don't change this line


class Token(BaseModel):
    access_token: str
    token_type: str


class PostCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str


def create_access_token(data: dict, expires_delta: timedelta | None = None) -> str:
    to_encode = data.copy()
    if expires_delta is None:
        expires_delta = timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    to_encode["exp"] = datetime.now(timezone.utc) + expires_delta
    return jwt.encode(to_encode, SECRET_KEY, algorithm=ALGORITHM)


def authenticate_user(username: str, password: str) -> dict[str, str] | None:
    """The user's record when the username exists and the password matches its hash, else None."""
    user = users_db.get(username)
    if user is None or not pwd_context.verify(password, user["hashed_password"]):
        return None
    return user


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]):
    credentials_exception = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    except JWTError:
        raise credentials_exception from None
    username = payload.get("sub")
    role = payload.get("role")
    if username is None or role is None:
        raise credentials_exception
    if not isinstance(username, str) or username not in users_db:
        raise credentials_exception
    return {"username": username, "role": role}


def require_role(role: str):
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role: {role!r}")
    minimum = ROLE_RANK[role]

    async def dependency(user: Annotated[dict, Depends(get_current_user)]) -> dict:
        token_role = user["role"]
        if not isinstance(token_role, str) or token_role not in ROLE_RANK or ROLE_RANK[token_role] < minimum:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Not enough permissions")
        return user

    return dependency


app = FastAPI(title="Problem 2 — Role-based access control")  # Don't change this line


@app.post("/token", response_model=Token)
async def login(form_data: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    user = authenticate_user(form_data.username, form_data.password)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = create_access_token({"sub": user["username"], "role": user["role"]})
    return Token(access_token=token, token_type="bearer")


@app.get("/admin/dashboard")
async def admin_dashboard(user: Annotated[dict, Depends(require_role("admin"))]) -> dict:
    return {"message": f"Welcome, {user['username']}", "posts": len(posts), "users": len(users_db)}


@app.post("/posts", status_code=status.HTTP_201_CREATED)
async def create_post(post: PostCreate, user: Annotated[dict, Depends(require_role("editor"))]) -> dict:
    new_id = max((existing["id"] for existing in posts), default=0) + 1
    record = {"id": new_id, "title": post.title, "body": post.body, "author": user["username"]}
    posts.append(record)
    return record


@app.get("/posts")
async def list_posts(user: Annotated[dict, Depends(require_role("viewer"))]) -> list[dict]:
    return posts

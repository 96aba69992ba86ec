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

# TODO: rank the three roles so that viewer < editor < admin can be compared
#       (a dict of numbers, or an IntEnum). Nothing else is a role.

pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")  # Don't change this line
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")  # Don't change this line

users_db: dict[str, dict[str, str]] = {
    # TODO: give each user a "role": alice is an admin, bob an editor, carol a viewer.
    "alice": {"username": "alice", "hashed_password": pwd_context.hash("alice-secret")},
    "bob": {"username": "bob", "hashed_password": pwd_context.hash("bob-secret")},
    "carol": {"username": "carol", "hashed_password": pwd_context.hash("carol-secret")},
}

posts: list[dict[str, Any]] = []  # Don't change this line


class Token(BaseModel):
    access_token: str
    token_type: str


class PostCreate(BaseModel):
    # TODO: a title of 1 to 200 characters and a body; anything else must make FastAPI answer 422.
    title: str
    body: str


def create_access_token(data: dict, expires_delta: timedelta | None = None) -> str:
    # TODO: copy `data`, add "exp" = now (UTC) + expires_delta, or ACCESS_TOKEN_EXPIRE_MINUTES
    #       when no delta is given, and sign it with jwt.encode(..., SECRET_KEY, algorithm=ALGORITHM).
    raise NotImplementedError("create_access_token() is not written yet")


def authenticate_user(username: str, password: str) -> dict[str, str] | None:
    """The user's record when the username exists and the password matches its hash, else None."""
    # TODO: bcrypt reads at most 72 bytes of a password, and bcrypt 5 raises ValueError for a
    #       longer one, so POST /token would answer 500. Return None (a wrong password: 401)
    #       for a password over 72 bytes once UTF-8 encoded; count bytes, not characters.
    user = users_db.get(username)
    if user is None or not pwd_context.verify(password, user["hashed_password"]):
        return None
    return user


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]):
    # TODO: decode the token with SECRET_KEY, allowing only ALGORITHM. Answer 401 with the header
    #       WWW-Authenticate: Bearer when it cannot be decoded (bad signature, expired, `alg: none`,
    #       not a JWT at all), when it has no "sub" or no "role", or when "sub" is not in users_db.
    #       Otherwise return who the caller is and the role THE TOKEN names.
    raise NotImplementedError("get_current_user() is not written yet")


def require_role(role: str):
    # TODO: raise ValueError right away when `role` is not one of the three roles.
    # TODO: return a dependency that takes the current user (Depends(get_current_user)) and
    #       answers 403 unless the token's role is a known role ranked at least `role`.
    def dependency():
        raise NotImplementedError("the dependency returned by require_role() is not written yet")

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
    # TODO: the token must carry the user's "role" next to "sub".
    token = create_access_token({"sub": user["username"]})
    return Token(access_token=token, token_type="bearer")


@app.get("/admin/dashboard")
async def admin_dashboard():
    # TODO: admins only: declare a parameter with Depends(require_role(...)); return a JSON object.
    raise NotImplementedError("GET /admin/dashboard is not written yet")


@app.post("/posts")
async def create_post(post: PostCreate):
    # TODO: editors and admins only. Answer 201 with {"id", "title", "body", "author"}, where
    #       "author" is the token's "sub", and keep the post in `posts`.
    raise NotImplementedError("POST /posts is not written yet")


@app.get("/posts")
async def list_posts():
    # TODO: any authenticated user with a known role: return `posts` in creation order.
    raise NotImplementedError("GET /posts is not written yet")

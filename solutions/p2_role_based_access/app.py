"""Problem 2 — Role-based access control with JWT (reference solution).

The lesson's OAuth2 password flow (§2), extended with roles: the role travels in the token,
and require_role(role) builds a dependency that admits that role and every role above it
(viewer < editor < admin).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jose import JWTError, jwt
from passlib.context import CryptContext
from pydantic import BaseModel, Field

# --- Configuration (in a real app, read SECRET_KEY from the environment) ---
SECRET_KEY = "workbook-p2-change-me-in-production"  # Don't change this line
ALGORITHM = "HS256"  # Don't change this line
ACCESS_TOKEN_EXPIRE_MINUTES = 30  # Don't change this line

# Why a rank per role: "at least editor" becomes a comparison of two numbers.
ROLE_RANK: dict[str, int] = {"viewer": 1, "editor": 2, "admin": 3}

pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")  # Don't change this line
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")  # Don't change this line

# Why only hashes: a leaked users_db must not reveal anyone's password.
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
    # Why Field: FastAPI answers 422 by itself when the title is empty or too long.
    title: str = Field(min_length=1, max_length=200)
    body: str


class CurrentUser(BaseModel):
    username: str
    role: Any  # whatever the token says; require_role decides whether it is good enough


def credentials_error() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )


def create_access_token(data: dict, expires_delta: timedelta | None = None) -> str:
    # Why a copy and an aware datetime: never change the caller's dict, and `exp` must be UTC.
    to_encode = data.copy()
    expire = datetime.now(timezone.utc) + (expires_delta or timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES))
    to_encode["exp"] = expire
    return jwt.encode(to_encode, SECRET_KEY, algorithm=ALGORITHM)


# bcrypt's limit: it hashes at most 72 bytes, and bcrypt 5 raises ValueError beyond that.
BCRYPT_MAX_BYTES = 72


def authenticate_user(username: str, password: str) -> dict[str, str] | None:
    # Why measure bytes first: no stored hash can match a longer password, and verify() would raise (500).
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        return None
    user = users_db.get(username)
    if user is None or not pwd_context.verify(password, user["hashed_password"]):
        return None
    return user


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> CurrentUser:
    # Why algorithms=[ALGORITHM]: without it python-jose trusts the token's own `alg` header.
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    except JWTError:
        raise credentials_error() from None
    username = payload.get("sub")
    if not isinstance(username, str) or "role" not in payload or username not in users_db:
        raise credentials_error()
    return CurrentUser(username=username, role=payload["role"])


def require_role(role: str) -> Callable[..., Any]:
    # Why check here and not per request: a typo like require_role("admn") must fail at startup.
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLE_RANK)}")
    needed = ROLE_RANK[role]

    async def dependency(user: Annotated[CurrentUser, Depends(get_current_user)]) -> CurrentUser:
        rank = ROLE_RANK.get(user.role) if isinstance(user.role, str) else None
        if rank is None or rank < needed:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=f"Requires role {role} or higher")
        return user

    return dependency


app = FastAPI(title="Problem 2 — Role-based access control")  # Don't change this line


@app.post("/token", response_model=Token)
async def login(form_data: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    # Why put the role in the token: the protected endpoints read it from there, not from users_db.
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
async def admin_dashboard(user: Annotated[CurrentUser, Depends(require_role("admin"))]) -> dict[str, Any]:
    # Why Depends(require_role("admin")): the check runs before the body, for every request.
    return {"message": f"Welcome to the dashboard, {user.username}", "users": len(users_db), "posts": len(posts)}


@app.post("/posts", status_code=status.HTTP_201_CREATED)
async def create_post(
    post: PostCreate, user: Annotated[CurrentUser, Depends(require_role("editor"))]
) -> dict[str, Any]:
    # Why the author comes from the token: a client must not post in someone else's name.
    created = {"id": len(posts) + 1, "title": post.title, "body": post.body, "author": user.username}
    posts.append(created)
    return created


@app.get("/posts")
async def list_posts(user: Annotated[CurrentUser, Depends(require_role("viewer"))]) -> list[dict[str, Any]]:
    # Why "viewer": the lowest role, so every authenticated user with a known role gets in.
    return posts

"""Problem 2, an alternative correct solution: HTTPBearer(auto_error=False), jwt.decode told to
require `sub` and `exp`, a set of admitted roles per required role, posts kept in a dict."""

from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordRequestForm
from jose import jwt
from jose.exceptions import JOSEError
from passlib.context import CryptContext
from pydantic import BaseModel, Field

SECRET_KEY = "alt-two-" + "x" * 24
ALGORITHM = "HS256"

pwd_context = CryptContext(schemes=["bcrypt"])
bearer_scheme = HTTPBearer(auto_error=False)

ADMITS = {
    "viewer": frozenset({"viewer", "editor", "admin"}),
    "editor": frozenset({"editor", "admin"}),
    "admin": frozenset({"admin"}),
}

users_db = {
    "alice": {"username": "alice", "role": "admin", "hashed_password": pwd_context.hash("alice-secret")},
    "bob": {"username": "bob", "role": "editor", "hashed_password": pwd_context.hash("bob-secret")},
    "carol": {"username": "carol", "role": "viewer", "hashed_password": pwd_context.hash("carol-secret")},
}
posts_by_id: dict[int, dict] = {}

UNAUTHORIZED = {"status_code": 401, "headers": {"WWW-Authenticate": 'Bearer error="invalid_token"'}}


class NewPost(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    body: str


def create_access_token(data: dict, expires_delta: timedelta | None = None) -> str:
    expires = datetime.now(timezone.utc) + (expires_delta if expires_delta is not None else timedelta(minutes=30))
    return jwt.encode({**data, "exp": int(expires.timestamp())}, SECRET_KEY, algorithm=ALGORITHM)


async def token_payload(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> dict:
    if credentials is None:
        raise HTTPException(detail="Missing bearer token", **UNAUTHORIZED)
    try:
        payload = jwt.decode(
            credentials.credentials,
            SECRET_KEY,
            algorithms=[ALGORITHM],
            options={"require_sub": True, "require_exp": True},
        )
    except JOSEError:
        raise HTTPException(detail="Invalid token", **UNAUTHORIZED) from None
    if payload["sub"] not in users_db or "role" not in payload:
        raise HTTPException(detail="Invalid token", **UNAUTHORIZED)
    return payload


def require_role(role: str):
    if role not in ADMITS:
        raise ValueError(role)
    admitted = ADMITS[role]

    async def check(payload: Annotated[dict, Depends(token_payload)]) -> dict:
        given = payload["role"]
        if not (isinstance(given, str) and given in admitted):
            raise HTTPException(status_code=403, detail="Forbidden")
        return payload

    return check


app = FastAPI()


@app.post("/token")
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict:
    user = users_db.get(form.username)
    try:
        verified = user is not None and pwd_context.verify(form.password, user["hashed_password"])
    except ValueError:  # bcrypt 5 refuses passwords over 72 bytes: no stored one is that long
        verified = False
    if not verified:
        raise HTTPException(detail="Bad credentials", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    access_token = create_access_token({"sub": user["username"], "role": user["role"]})
    return {"access_token": access_token, "token_type": "bearer"}


@app.get("/admin/dashboard")
async def dashboard(payload: Annotated[dict, Depends(require_role("admin"))]) -> dict:
    return {"hello": payload["sub"]}


@app.post("/posts", status_code=201)
async def add_post(post: NewPost, payload: Annotated[dict, Depends(require_role("editor"))]) -> dict:
    new_id = max(posts_by_id, default=0) + 1
    posts_by_id[new_id] = {"id": new_id, **post.model_dump(), "author": payload["sub"]}
    return posts_by_id[new_id]


@app.get("/posts")
async def get_posts(payload: Annotated[dict, Depends(require_role("viewer"))]) -> list:
    return list(posts_by_id.values())

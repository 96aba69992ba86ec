"""Authentication: register, log in, refresh an access token. Public: no router-level guard."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field, field_validator

from ..dependencies import Database, create_token, credentials_error, get_db, username_from_token

# Why prefix and tags on the router: every path below starts with /auth and is grouped under "auth".
router = APIRouter(prefix="/auth", tags=["auth"])


class RegisterIn(BaseModel):
    username: str = Field(pattern=r"^[a-z0-9_]{3,32}$")
    password: str

    @field_validator("password")
    @classmethod
    def password_length(cls, value: str) -> str:
        # Why bytes: bcrypt refuses more than 72 bytes, and "é" is two bytes.
        if not 8 <= len(value.encode("utf-8")) <= 72:
            raise ValueError("password must be 8 to 72 bytes long")
        return value


class RefreshIn(BaseModel):
    refresh_token: str


@router.post("/register", status_code=status.HTTP_201_CREATED)
def register(body: RegisterIn, db: Database = Depends(get_db)) -> dict[str, str]:
    # Why 409: the name is taken; the request was well formed.
    if body.username in db.users:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="Username already taken")
    user = db.add_user(body.username, body.password)
    return {"username": user.username, "role": user.role}


@router.post("/login")
def login(form: OAuth2PasswordRequestForm = Depends(), db: Database = Depends(get_db)) -> dict[str, str]:
    # Why one message for both failures: callers must not learn which usernames exist.
    user = db.authenticate(form.username, form.password)
    if user is None:
        raise credentials_error("Incorrect username or password")
    return {
        "access_token": create_token(user.username, "access"),
        "refresh_token": create_token(user.username, "refresh"),
        "token_type": "bearer",
    }


@router.post("/refresh")
def refresh(body: RefreshIn, db: Database = Depends(get_db)) -> dict[str, str]:
    # Why insist on type "refresh": an access token must not extend itself forever.
    username = username_from_token(body.refresh_token, "refresh")
    if username is None or username not in db.users:
        raise credentials_error("Invalid refresh token")
    return {"access_token": create_token(username, "access"), "token_type": "bearer"}

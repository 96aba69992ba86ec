"""Authentication: POST /auth/register, /auth/login and /auth/refresh."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field, field_validator

from ..dependencies import Store, create_token, credentials_error, decode_token, get_db, pwd_context

router = APIRouter(prefix="/auth", tags=["auth"])


class RegisterIn(BaseModel):
    username: str = Field(pattern=r"^[a-z0-9_]{3,32}$")
    password: str

    @field_validator("password")
    @classmethod
    def password_bytes(cls, value: str) -> str:
        size = len(value.encode("utf-8"))
        if size < 8 or size > 72:
            raise ValueError("the password must be 8 to 72 bytes long once UTF-8 encoded")
        return value


class RefreshIn(BaseModel):
    refresh_token: str


@router.post("/register", status_code=status.HTTP_201_CREATED)
def register(body: RegisterIn, db: Store = Depends(get_db)) -> dict[str, str]:
    if body.username in db.users:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="Username already taken")
    db.users[body.username] = {
        "username": body.username,
        "role": "user",
        "hashed_password": pwd_context.hash(body.password),
    }
    return {"username": body.username, "role": "user"}


@router.post("/login")
def login(form: OAuth2PasswordRequestForm = Depends(), db: Store = Depends(get_db)) -> dict[str, str]:
    user = db.users.get(form.username)
    if user is None or not pwd_context.verify(form.password, user["hashed_password"]):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return {
        "access_token": create_token(user["username"], "access"),
        "refresh_token": create_token(user["username"], "refresh"),
        "token_type": "bearer",
    }


@router.post("/refresh")
def refresh(body: RefreshIn, db: Store = Depends(get_db)) -> dict[str, str]:
    username = decode_token(body.refresh_token, "refresh")
    if username is None or username not in db.users:
        raise credentials_error()
    return {"access_token": create_token(username, "access"), "token_type": "bearer"}

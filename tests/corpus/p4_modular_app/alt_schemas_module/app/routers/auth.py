from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import OAuth2PasswordRequestForm

from ..dependencies import DB
from ..schemas import AccessToken, RefreshRequest, TokenPair, UserCreate, UserOut
from ..security import make_token, pwd, read_token

router = APIRouter(prefix="/auth", tags=["auth"])


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


@router.post("/register", response_model=UserOut, status_code=201)
async def register(body: UserCreate, db: DB):
    if body.username in db["users"]:
        raise HTTPException(409, "taken")
    db["users"][body.username] = {"username": body.username, "role": "user", "hash": pwd.hash(body.password)}
    return db["users"][body.username]


@router.post("/login", response_model=TokenPair)
async def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], db: DB):
    user = db["users"].get(form.username)
    # Over 72 bytes bcrypt 5 raises; registration never stores such a password anyway.
    if not user or len(form.password.encode()) > 72 or not pwd.verify(form.password, user["hash"]):
        raise unauthorized("Bad credentials")
    return TokenPair(access_token=make_token(user["username"], "access"), refresh_token=make_token(user["username"], "refresh"))


@router.post("/refresh", response_model=AccessToken)
async def refresh(body: RefreshRequest, db: DB):
    name = read_token(body.refresh_token, "refresh")
    if name is None or name not in db["users"]:
        raise unauthorized("Bad refresh token")
    return AccessToken(access_token=make_token(name, "access"))

"""Shared dependencies, Annotated style."""

from typing import Annotated

from fastapi import Depends, HTTPException, Query
from fastapi.security import OAuth2PasswordBearer

from .security import pwd, read_token

STORE = {
    "users": {"admin": {"username": "admin", "role": "admin", "hash": pwd.hash("admin-secret")}},
    "items": {},
    "next_id": 1,
}
oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/login")


async def get_db() -> dict:
    return STORE


async def get_current_user(token: Annotated[str, Depends(oauth2)], db: Annotated[dict, Depends(get_db)]) -> dict:
    name = read_token(token, "access")
    if name is None or name not in db["users"]:
        raise HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return db["users"][name]


async def get_current_admin(user: Annotated[dict, Depends(get_current_user)]) -> dict:
    if user["role"] != "admin":
        raise HTTPException(403, "Admins only")
    return user


async def pagination(
    skip: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> dict[str, int]:
    return {"skip": skip, "limit": limit}


DB = Annotated[dict, Depends(get_db)]
CurrentUser = Annotated[dict, Depends(get_current_user)]
CurrentAdmin = Annotated[dict, Depends(get_current_admin)]
Page = Annotated[dict, Depends(pagination)]

"""Authentication: POST /auth/register, /auth/login and /auth/refresh."""

from __future__ import annotations

from fastapi import APIRouter

# TODO: give the router its prefix "/auth" and its tag "auth" (here, or in include_router).
router = APIRouter()

# TODO: move register and login here from main.py, with paths relative to the prefix
#       (@router.post("/register"), not "/auth/register").
# TODO: login answers {"access_token", "refresh_token", "token_type": "bearer"}.
# TODO: add POST /refresh: JSON {"refresh_token"} -> {"access_token", "token_type": "bearer"};
#       an access token, an expired or an invalid token answers 401.

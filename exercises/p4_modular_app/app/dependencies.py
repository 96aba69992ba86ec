"""Shared dependencies: every router imports these, none defines its own copy.

Move the store and the token code here from main.py (or into a module of your own that
this file imports) and fill in the four functions below.
"""

from __future__ import annotations

from fastapi import Depends, HTTPException, Query, status  # noqa: F401 - you will need them


def get_db():
    # TODO: return the app's in-memory store (users and items). One store for the whole app,
    #       created when the module is imported, with the user admin / admin-secret (role
    #       "admin") already in it and every password kept only as a bcrypt hash.
    raise NotImplementedError("get_db() is not written yet")


def get_current_user():
    # TODO: read the Bearer token (OAuth2PasswordBearer), decode the JWT and return the user.
    #       A missing, invalid or expired token, a token of type "refresh" or an unknown user
    #       answers 401 with the header WWW-Authenticate: Bearer.
    raise NotImplementedError("get_current_user() is not written yet")


def get_current_admin():
    # TODO: take the user with Depends(get_current_user); answer 403 unless their role is "admin".
    raise NotImplementedError("get_current_admin() is not written yet")


def pagination():
    # TODO: query parameters skip (>= 0, default 0) and limit (1 to 100, default 10), declared
    #       with Query(...) bounds so that values out of range answer 422. Return both.
    raise NotImplementedError("pagination() is not written yet")

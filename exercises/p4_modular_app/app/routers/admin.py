"""Admin only: GET /admin/stats, GET /admin/users, DELETE /admin/users/{username}."""

from __future__ import annotations

from fastapi import APIRouter

# TODO: prefix "/admin", tag "admin", and a router-level dependency on get_current_admin
#       imported from app.dependencies.
router = APIRouter()

# TODO: move GET /stats here from main.py (without its own role check: the router guards it).
# TODO: add GET /users -> [{"username", "role"}] and DELETE /users/{username} -> 204,
#       404 for an unknown user, 400 when the admin tries to delete themself.

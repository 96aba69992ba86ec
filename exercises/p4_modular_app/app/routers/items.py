"""Items CRUD: GET/POST /items and GET/PUT/DELETE /items/{id}."""

from __future__ import annotations

from fastapi import APIRouter

# TODO: prefix "/items", tag "items", and ONE router-level dependency on get_current_user
#       imported from app.dependencies (dependencies=[Depends(get_current_user)]).
router = APIRouter()

# TODO: move the five item endpoints here from main.py. They receive the store with
#       Depends(get_db), the page with Depends(pagination), and, where they need to know who
#       asks, the user with Depends(get_current_user) (FastAPI runs it once per request).

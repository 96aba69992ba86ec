"""Problem 4 — a correct alternative: the three routers are gathered on one APIRouter, which
main.py includes once (a nested router)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from .routers import admin, auth, items

app = FastAPI(title="Problem 4 — Modular application")  # Don't change this line

api = APIRouter()
api.include_router(auth.router)
api.include_router(items.router)
api.include_router(admin.router)
app.include_router(api)


@app.get("/")
def root() -> dict[str, str]:
    return {"message": "Modular API is running"}

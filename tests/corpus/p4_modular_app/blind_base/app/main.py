"""Problem 4 — Modular application: the app and its three routers."""

from __future__ import annotations

from fastapi import FastAPI

from .routers import admin, auth, items

app = FastAPI(title="Problem 4 — Modular application")  # Don't change this line

app.include_router(auth.router)
app.include_router(items.router)
app.include_router(admin.router)


@app.get("/")
def root() -> dict[str, str]:
    return {"message": "Modular API is running"}

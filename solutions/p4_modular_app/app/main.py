"""Problem 4 — Modular application (reference solution).

main.py only builds the app and mounts the three routers; every feature lives in
app/routers/, every shared dependency in app/dependencies.py.
"""

from __future__ import annotations

from fastapi import FastAPI

from .routers import admin, auth, items

app = FastAPI(title="Problem 4 — Modular application")  # Don't change this line

# Why no arguments: each router declares its own prefix, tags and router-level dependencies.
app.include_router(auth.router)
app.include_router(items.router)
app.include_router(admin.router)


@app.get("/")
def root() -> dict[str, str]:
    # Why keep it: the one endpoint allowed on the app itself, a cheap "is it running?" probe.
    return {"message": "Modular API is running"}

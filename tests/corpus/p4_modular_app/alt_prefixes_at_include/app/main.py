"""Problem 4 — Modular application (reference solution).

main.py only builds the app and mounts the three routers; every feature lives in
app/routers/, every shared dependency in app/dependencies.py.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from .dependencies import get_current_admin, get_current_user
from .routers import admin, auth, items

app = FastAPI(title="Problem 4 — Modular application")  # Don't change this line

# The routers stay bare; main.py decides where they live and how they are guarded.
app.include_router(auth.router, prefix="/auth", tags=["auth"])
app.include_router(items.router, prefix="/items", tags=["items"], dependencies=[Depends(get_current_user)])
app.include_router(admin.router, prefix="/admin", tags=["admin"], dependencies=[Depends(get_current_admin)])


@app.get("/")
def root() -> dict[str, str]:
    # Why keep it: the one endpoint allowed on the app itself, a cheap "is it running?" probe.
    return {"message": "Modular API is running"}

"""Admin only: GET /admin/stats, GET /admin/users, DELETE /admin/users/{username}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response, status

from ..dependencies import Store, get_current_admin, get_db

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(get_current_admin)])


@router.get("/stats")
def stats(db: Store = Depends(get_db)) -> dict[str, int]:
    return {"users": len(db.users), "items": len(db.items)}


@router.get("/users")
def list_users(db: Store = Depends(get_db)) -> list[dict[str, Any]]:
    return [{"username": user["username"], "role": user["role"]} for user in db.users.values()]


@router.delete("/users/{username}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(
    username: str, db: Store = Depends(get_db), admin: dict[str, Any] = Depends(get_current_admin)
) -> Response:
    if username not in db.users:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="User not found")
    if username == admin["username"]:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="You cannot delete yourself")
    del db.users[username]
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Admin-only statistics and user management, guarded once on the router."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response, status

from ..dependencies import Database, User, get_current_admin, get_db

# Why get_current_admin on the router: every route here is admin-only, including ones added later.
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(get_current_admin)])


@router.get("/stats")
def stats(db: Database = Depends(get_db)) -> dict[str, int]:
    return {"users": len(db.users), "items": len(db.items)}


@router.get("/users")
def list_users(db: Database = Depends(get_db)) -> list[dict[str, str]]:
    return [{"username": user.username, "role": user.role} for user in db.users.values()]


@router.delete("/users/{username}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(username: str, admin: User = Depends(get_current_admin), db: Database = Depends(get_db)) -> Response:
    # Why refuse yourself: the last admin would lock everyone out of this router.
    if username == admin.username:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="You cannot delete yourself")
    if username not in db.users:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="User not found")
    del db.users[username]
    return Response(status_code=status.HTTP_204_NO_CONTENT)

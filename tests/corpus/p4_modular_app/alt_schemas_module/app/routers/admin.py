from fastapi import APIRouter, Depends, HTTPException, Response

from ..dependencies import DB, CurrentAdmin, get_current_admin
from ..schemas import UserOut

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(get_current_admin)])


@router.get("/stats")
async def stats(db: DB):
    return {"users": len(db["users"]), "items": len(db["items"])}


@router.get("/users", response_model=list[UserOut])
async def users(db: DB):
    return list(db["users"].values())


@router.delete("/users/{username}", status_code=204)
async def delete_user(username: str, db: DB, me: CurrentAdmin):
    if username == me["username"]:
        raise HTTPException(400, "Not yourself")
    if db["users"].pop(username, None) is None:
        raise HTTPException(404, "No such user")
    return Response(status_code=204)

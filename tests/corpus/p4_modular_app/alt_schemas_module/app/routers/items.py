from fastapi import APIRouter, Depends, HTTPException, Response

from ..dependencies import DB, CurrentUser, Page, get_current_user
from ..schemas import ItemIn, ItemOut

router = APIRouter(prefix="/items", tags=["items"], dependencies=[Depends(get_current_user)])


def owned(db: dict, item_id: int, user: dict) -> dict:
    item = db["items"].get(item_id)
    if item is None:
        raise HTTPException(404, "No such item")
    if item["owner"] != user["username"] and user["role"] != "admin":
        raise HTTPException(403, "Not yours")
    return item


@router.get("/", response_model=list[ItemOut])
async def list_items(db: DB, page: Page):
    ordered = [db["items"][key] for key in sorted(db["items"])]
    return ordered[page["skip"] : page["skip"] + page["limit"]]


@router.post("/", response_model=ItemOut, status_code=201)
async def create_item(body: ItemIn, db: DB, user: CurrentUser):
    item = {"id": db["next_id"], **body.model_dump(), "owner": user["username"]}
    db["items"][item["id"]] = item
    db["next_id"] += 1
    return item


@router.get("/{id}", response_model=ItemOut)
async def read_item(id: int, db: DB):
    if id not in db["items"]:
        raise HTTPException(404, "No such item")
    return db["items"][id]


@router.put("/{id}", response_model=ItemOut)
async def update_item(id: int, body: ItemIn, db: DB, user: CurrentUser):
    item = owned(db, id, user)
    item.update(body.model_dump())
    return item


@router.delete("/{id}", status_code=204)
async def delete_item(id: int, db: DB, user: CurrentUser):
    owned(db, id, user)
    del db["items"][id]
    return Response(status_code=204)

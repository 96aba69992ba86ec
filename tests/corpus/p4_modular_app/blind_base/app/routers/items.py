"""Items CRUD: GET/POST /items and GET/PUT/DELETE /items/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel, Field

from ..dependencies import Store, get_current_user, get_db, pagination

router = APIRouter(prefix="/items", tags=["items"], dependencies=[Depends(get_current_user)])


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    price: float = Field(ge=0)


def find_item(db: Store, item_id: int) -> dict[str, Any]:
    if item_id not in db.items:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Item not found")
    return db.items[item_id]


def check_owner(item: dict[str, Any], user: dict[str, Any]) -> None:
    if item["owner"] != user["username"] and user["role"] != "admin":
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Not your item")


@router.get("")
def list_items(page: dict[str, int] = Depends(pagination), db: Store = Depends(get_db)) -> list[dict[str, Any]]:
    ordered = sorted(db.items.values(), key=lambda item: item["id"])
    return ordered[page["skip"] : page["skip"] + page["limit"]]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_item(
    body: ItemIn, db: Store = Depends(get_db), user: dict[str, Any] = Depends(get_current_user)
) -> dict[str, Any]:
    item = {"id": db.next_item_id, **body.model_dump(), "owner": user["username"]}
    db.items[item["id"]] = item
    db.next_item_id += 1
    return item


@router.get("/{item_id}")
def read_item(item_id: int, db: Store = Depends(get_db)) -> dict[str, Any]:
    return find_item(db, item_id)


@router.put("/{item_id}")
def update_item(
    item_id: int, body: ItemIn, db: Store = Depends(get_db), user: dict[str, Any] = Depends(get_current_user)
) -> dict[str, Any]:
    item = find_item(db, item_id)
    check_owner(item, user)
    item.update(body.model_dump())
    return item


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_item(
    item_id: int, db: Store = Depends(get_db), user: dict[str, Any] = Depends(get_current_user)
) -> Response:
    item = find_item(db, item_id)
    check_owner(item, user)
    del db.items[item_id]
    return Response(status_code=status.HTTP_204_NO_CONTENT)

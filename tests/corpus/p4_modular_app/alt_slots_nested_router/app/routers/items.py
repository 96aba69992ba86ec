"""Items CRUD. Every route needs a logged-in user, declared once on the router."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel, Field

from ..dependencies import Database, Item, Page, User, get_current_user, get_db, pagination

# Why a router-level dependency: no route in this module can forget to require a user.
router = APIRouter(prefix="/items", tags=["items"], dependencies=[Depends(get_current_user)])


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    price: float = Field(ge=0)


def find_item(db: Database, item_id: int) -> Item:
    item = db.items.get(item_id)
    if item is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Item not found")
    return item


def ensure_may_change(item: Item, user: User) -> None:
    # Why admins pass: they moderate everyone's items.
    if item.owner != user.username and user.role != "admin":
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Not your item")


@router.get("")
def list_items(page: Page = Depends(pagination), db: Database = Depends(get_db)) -> list[dict]:
    # Why sort by id: dict order is insertion order today, but the contract promises id order.
    ordered = sorted(db.items.values(), key=lambda item: item.id)
    return [item.as_dict() for item in ordered[page.skip : page.skip + page.limit]]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_item(body: ItemIn, user: User = Depends(get_current_user), db: Database = Depends(get_db)) -> dict:
    # Why ask for the user again: FastAPI caches it per request, and we need the owner's name.
    return db.add_item(body.name, body.description, body.price, owner=user.username).as_dict()


@router.get("/{item_id}")
def read_item(item_id: int, db: Database = Depends(get_db)) -> dict:
    return find_item(db, item_id).as_dict()


@router.put("/{item_id}")
def update_item(
    item_id: int, body: ItemIn, user: User = Depends(get_current_user), db: Database = Depends(get_db)
) -> dict:
    item = find_item(db, item_id)
    ensure_may_change(item, user)
    item.name, item.description, item.price = body.name, body.description, body.price
    return item.as_dict()


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_item(item_id: int, user: User = Depends(get_current_user), db: Database = Depends(get_db)) -> Response:
    item = find_item(db, item_id)
    ensure_may_change(item, user)
    del db.items[item_id]
    return Response(status_code=status.HTTP_204_NO_CONTENT)

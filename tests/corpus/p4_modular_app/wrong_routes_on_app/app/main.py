"""A learner's main.py that kept every route on `app` (right paths, wrong place)."""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field, field_validator

from .dependencies import (
    Database,
    Item,
    Page,
    User,
    create_token,
    credentials_error,
    get_current_admin,
    get_current_user,
    get_db,
    pagination,
    username_from_token,
)
from .routers import admin, auth, items

app = FastAPI(title="Problem 4 — Modular application")
app.include_router(auth.router)
app.include_router(items.router)
app.include_router(admin.router)


# --- auth ------------------------------------------------------------


class RegisterIn(BaseModel):
    username: str = Field(pattern=r"^[a-z0-9_]{3,32}$")
    password: str

    @field_validator("password")
    @classmethod
    def password_length(cls, value: str) -> str:
        # Why bytes: bcrypt refuses more than 72 bytes, and "é" is two bytes.
        if not 8 <= len(value.encode("utf-8")) <= 72:
            raise ValueError("password must be 8 to 72 bytes long")
        return value


class RefreshIn(BaseModel):
    refresh_token: str


@app.post("/auth/register", status_code=status.HTTP_201_CREATED, tags=["auth"])
def register(body: RegisterIn, db: Database = Depends(get_db)) -> dict[str, str]:
    # Why 409: the name is taken; the request was well formed.
    if body.username in db.users:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="Username already taken")
    user = db.add_user(body.username, body.password)
    return {"username": user.username, "role": user.role}


@app.post("/auth/login", tags=["auth"])
def login(form: OAuth2PasswordRequestForm = Depends(), db: Database = Depends(get_db)) -> dict[str, str]:
    # Why one message for both failures: callers must not learn which usernames exist.
    user = db.authenticate(form.username, form.password)
    if user is None:
        raise credentials_error("Incorrect username or password")
    return {
        "access_token": create_token(user.username, "access"),
        "refresh_token": create_token(user.username, "refresh"),
        "token_type": "bearer",
    }


@app.post("/auth/refresh", tags=["auth"])
def refresh(body: RefreshIn, db: Database = Depends(get_db)) -> dict[str, str]:
    # Why insist on type "refresh": an access token must not extend itself forever.
    username = username_from_token(body.refresh_token, "refresh")
    if username is None or username not in db.users:
        raise credentials_error("Invalid refresh token")
    return {"access_token": create_token(username, "access"), "token_type": "bearer"}


# --- items ------------------------------------------------------------


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


@app.get("/items", tags=["items"], dependencies=[Depends(get_current_user)])
def list_items(page: Page = Depends(pagination), db: Database = Depends(get_db)) -> list[dict]:
    # Why sort by id: dict order is insertion order today, but the contract promises id order.
    ordered = sorted(db.items.values(), key=lambda item: item.id)
    return [item.as_dict() for item in ordered[page.skip : page.skip + page.limit]]


@app.post("/items", status_code=status.HTTP_201_CREATED, tags=["items"], dependencies=[Depends(get_current_user)])
def create_item(body: ItemIn, user: User = Depends(get_current_user), db: Database = Depends(get_db)) -> dict:
    # Why ask for the user again: FastAPI caches it per request, and we need the owner's name.
    return db.add_item(body.name, body.description, body.price, owner=user.username).as_dict()


@app.get("/items/{item_id}", tags=["items"], dependencies=[Depends(get_current_user)])
def read_item(item_id: int, db: Database = Depends(get_db)) -> dict:
    return find_item(db, item_id).as_dict()


@app.put("/items/{item_id}", tags=["items"], dependencies=[Depends(get_current_user)])
def update_item(
    item_id: int, body: ItemIn, user: User = Depends(get_current_user), db: Database = Depends(get_db)
) -> dict:
    item = find_item(db, item_id)
    ensure_may_change(item, user)
    item.name, item.description, item.price = body.name, body.description, body.price
    return item.as_dict()


@app.delete(
    "/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["items"], dependencies=[Depends(get_current_user)]
)
def delete_item(item_id: int, user: User = Depends(get_current_user), db: Database = Depends(get_db)) -> Response:
    item = find_item(db, item_id)
    ensure_may_change(item, user)
    del db.items[item_id]
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- admin ------------------------------------------------------------


@app.get("/admin/stats", tags=["admin"], dependencies=[Depends(get_current_admin)])
def stats(db: Database = Depends(get_db)) -> dict[str, int]:
    return {"users": len(db.users), "items": len(db.items)}


@app.get("/admin/users", tags=["admin"], dependencies=[Depends(get_current_admin)])
def list_users(db: Database = Depends(get_db)) -> list[dict[str, str]]:
    return [{"username": user.username, "role": user.role} for user in db.users.values()]


@app.delete(
    "/admin/users/{username}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["admin"],
    dependencies=[Depends(get_current_admin)],
)
def delete_user(username: str, admin: User = Depends(get_current_admin), db: Database = Depends(get_db)) -> Response:
    # Why refuse yourself: the last admin would lock everyone out of this router.
    if username == admin.username:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="You cannot delete yourself")
    if username not in db.users:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="User not found")
    del db.users[username]
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Problem 4 — Modular application.

This file is a WORKING monolith: every endpoint sits on `app`. Your job is to move the code
into app/dependencies.py and app/routers/{auth,items,admin}.py, add what is missing (refresh
tokens, admin user management, bounded pagination), and leave here only the app, the three
`include_router` calls and, if you like, `GET /`. Read README.md in exercises/p4_modular_app/
for the exact contract, then run `workbook check 4` after each step.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jose import JWTError, jwt
from passlib.context import CryptContext
from pydantic import BaseModel, Field

from .routers import admin, auth, items  # noqa: F401 - you will include their routers below

# TODO: move the configuration, the password context and the token helpers into
#       app/dependencies.py (or a module of your own that dependencies.py imports).
SECRET_KEY = "p4-modular-app-change-me-in-production"
ALGORITHM = "HS256"
ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)

pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login")

# TODO: the store belongs behind get_db() in app/dependencies.py: routes must receive it
#       through Depends(get_db) instead of reading these globals.
USERS: dict[str, dict] = {
    "admin": {"username": "admin", "role": "admin", "hashed_password": pwd_context.hash("admin-secret")}
}
ITEMS: dict[int, dict] = {}
NEXT_ITEM_ID = [1]


class RegisterIn(BaseModel):
    username: str = Field(pattern=r"^[a-z0-9_]{3,32}$")
    # TODO: 8 to 72 *bytes* (bcrypt refuses longer secrets), not only a minimum length.
    password: str = Field(min_length=8)


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    price: float = Field(ge=0)


def create_access_token(username: str) -> str:
    # TODO: tokens need a `type` claim ("access" or "refresh"); refresh tokens live 7 days.
    claims = {"sub": username, "exp": datetime.now(timezone.utc) + ACCESS_TOKEN_LIFETIME}
    return jwt.encode(claims, SECRET_KEY, algorithm=ALGORITHM)


def current_user(token: str = Depends(oauth2_scheme)) -> dict:
    # TODO: this becomes get_current_user in app/dependencies.py, and it must refuse
    #       refresh tokens (type "refresh") with 401.
    error = HTTPException(
        status_code=401, detail="Could not validate credentials", headers={"WWW-Authenticate": "Bearer"}
    )
    try:
        username = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM]).get("sub")
    except JWTError:
        raise error from None
    if username not in USERS:
        raise error
    return USERS[username]


app = FastAPI(title="Problem 4 — Modular application")  # Don't change this line

# TODO: include auth.router, items.router and admin.router here. Give each its prefix
#       (/auth, /items, /admin), its tag and, for items and admin, a router-level
#       dependency from app.dependencies: on the APIRouter itself or in include_router.
# TODO: then delete every endpoint below this line (GET / may stay).


@app.get("/")
def root() -> dict[str, str]:
    return {"message": "Modular API is running"}


# --- auth: move to app/routers/auth.py, and add POST /auth/refresh -----------------


@app.post("/auth/register", status_code=201)
def register(body: RegisterIn) -> dict[str, str]:
    if body.username in USERS:
        raise HTTPException(status_code=409, detail="Username already taken")
    USERS[body.username] = {
        "username": body.username,
        "role": "user",
        "hashed_password": pwd_context.hash(body.password),
    }
    return {"username": body.username, "role": "user"}


@app.post("/auth/login")
def login(form: OAuth2PasswordRequestForm = Depends()) -> dict[str, str]:
    # TODO: also hand out a refresh_token.
    # TODO: a password over 72 bytes once UTF-8 encoded matches no stored one, and bcrypt 5
    #       raises ValueError for it in verify() (a 500): answer 401 for it without verifying.
    user = USERS.get(form.username)
    if user is None or not pwd_context.verify(form.password, user["hashed_password"]):
        raise HTTPException(
            status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Bearer"}
        )
    return {"access_token": create_access_token(user["username"]), "token_type": "bearer"}


# --- items: move to app/routers/items.py ---------------------------------------------


def find_item(item_id: int) -> dict:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="Item not found")
    return ITEMS[item_id]


@app.get("/items")
def list_items(skip: int = 0, limit: int = 10, user: dict = Depends(current_user)) -> list[dict]:
    # TODO: use the shared `pagination` dependency: skip >= 0, limit 1..100, else 422.
    ordered = sorted(ITEMS.values(), key=lambda item: item["id"])
    return ordered[skip : skip + limit]


@app.post("/items", status_code=201)
def create_item(body: ItemIn, user: dict = Depends(current_user)) -> dict:
    item = {"id": NEXT_ITEM_ID[0], **body.model_dump(), "owner": user["username"]}
    ITEMS[item["id"]] = item
    NEXT_ITEM_ID[0] += 1
    return item


@app.get("/items/{item_id}")
def read_item(item_id: int, user: dict = Depends(current_user)) -> dict:
    return find_item(item_id)


@app.put("/items/{item_id}")
def update_item(item_id: int, body: ItemIn, user: dict = Depends(current_user)) -> dict:
    item = find_item(item_id)
    if item["owner"] != user["username"] and user["role"] != "admin":
        raise HTTPException(status_code=403, detail="Not your item")
    item.update(body.model_dump())
    return item


@app.delete("/items/{item_id}", status_code=204)
def delete_item(item_id: int, user: dict = Depends(current_user)) -> Response:
    item = find_item(item_id)
    if item["owner"] != user["username"] and user["role"] != "admin":
        raise HTTPException(status_code=403, detail="Not your item")
    del ITEMS[item_id]
    return Response(status_code=204)


# --- admin: move to app/routers/admin.py, and add GET /admin/users and
#     DELETE /admin/users/{username} ---------------------------------------------------


@app.get("/admin/stats")
def stats(user: dict = Depends(current_user)) -> dict[str, int]:
    if user["role"] != "admin":
        raise HTTPException(status_code=403, detail="Admin role required")
    return {"users": len(USERS), "items": len(ITEMS)}

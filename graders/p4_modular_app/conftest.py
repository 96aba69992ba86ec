"""Fixtures shared by both halves of the problem 4 grader: a kit that registers users,
logs them in and creates items through the learner's API, served in this check's app host
(workbook/hostkit.py). (bcrypt is made cheap in every host: workbook.apphost.warm_up.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from workbook.grading import bearer, expect, expect_created, expect_status, json_body, rng, show

ADMIN_NAME, ADMIN_PASSWORD = "admin", "admin-secret"
STEMS = ["ada", "grace", "linus", "guido", "barbara", "ken", "margaret", "dennis", "frances", "alan"]
THINGS = ["lamp", "kettle", "chair", "bicycle", "guitar", "notebook", "teapot", "backpack", "clock", "camera"]


@dataclass
class Account:
    username: str
    password: str
    access: str
    refresh: Any  # the refresh token, or None when login did not hand one out

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)


def new_username() -> str:
    return f"{rng.choice(STEMS)}_{rng.randrange(10**5)}"


def new_password() -> str:
    return "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(rng.randrange(10, 17)))


def new_item() -> dict[str, Any]:
    description = rng.choice([None, f"a {rng.choice(['red', 'old', 'tiny', 'shiny'])} one, #{rng.randrange(1000)}"])
    return {
        "name": f"{rng.choice(THINGS)} {rng.randrange(100, 1000)}",
        "description": description,
        "price": rng.randrange(0, 100000) / 100,
    }


class Kit:
    """Drives the learner's API the way a client would (the grader files cannot import this
    module, so the helpers travel on the fixture)."""

    bearer = staticmethod(bearer)
    new_username = staticmethod(new_username)
    new_password = staticmethod(new_password)
    new_item = staticmethod(new_item)
    admin_name, admin_password = ADMIN_NAME, ADMIN_PASSWORD

    def __init__(self, host: Any) -> None:
        self.host = host
        self.api = host.client()

    def register(self, username: str | None = None, password: str | None = None) -> tuple[str, str]:
        username, password = username or new_username(), password or new_password()
        response = self.api.post("/auth/register", json={"username": username, "password": password})
        expect_status(response, 201, "Registering a new user should answer 201 Created.")
        return username, password

    def login_response(self, username: str, password: str) -> Any:
        return self.api.post("/auth/login", data={"username": username, "password": password})

    def login(self, username: str, password: str) -> Account:
        response = self.login_response(username, password)
        expect_status(response, 200, f"Logging in as {username} with the right password should answer 200.")
        body = json_body(response)
        expect(
            isinstance(body, dict) and isinstance(body.get("access_token"), str),
            "POST /auth/login answered no access_token string; answer a JSON object holding it.",
            expected='{"access_token": "...", "refresh_token": "...", "token_type": "bearer"}',
            got=show(body),
        )
        return Account(username, password, body["access_token"], body.get("refresh_token"))

    def user(self) -> Account:
        return self.login(*self.register())

    def admin(self) -> Account:
        return self.login(ADMIN_NAME, ADMIN_PASSWORD)

    def refresh_token(self, account: Account) -> str:
        expect(
            isinstance(account.refresh, str),
            "POST /auth/login handed out no refresh_token string next to the access_token.",
            expected="a refresh_token string next to the access_token",
            got=show(account.refresh),
        )
        return account.refresh

    def create_item(self, account: Account, item: dict[str, Any] | None = None) -> dict[str, Any]:
        item = item or new_item()
        return expect_created(
            self.api.post("/items", json=item, headers=account.headers),
            "Creating an item should answer 201 Created.",
            no_id="The created item has no integer id; it must carry one.",
            expected='{"id": <int>, "name", "description", "price", "owner"}',
        )


@pytest.fixture
def kit(host: Any) -> Iterator[Kit]:
    tools = Kit(host)
    with tools.api:
        yield tools

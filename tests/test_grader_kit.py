"""The grader kit (workbook/grading.py) and the conventions graders share."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from workbook.engine import discover_checks
from workbook.grading import CheckFailed, bearer, client, expect_created
from workbook.manifest import load_manifest

# A title may open with code as written (an identifier, a path, `backticks`, an HTTP method).
CODE_WORD = re.compile(r"[_().`/{]|^[A-Z]+$")


def test_check_titles_are_sentence_case() -> None:
    """Titles are shown to learners one under another: each starts with a capital letter,
    unless its first word is code (`get_settings()`, `users_db`, POST), kept as written,
    and none ends with a full stop."""
    off_rule = [
        f"{problem.slug}::{check.id}: {check.title}"
        for problem in load_manifest().problems
        for check in discover_checks(problem)
        if (check.title[:1].islower() and not CODE_WORD.search(check.title.split()[0])) or check.title.endswith(".")
    ]
    assert off_rule == [], "\n".join(off_rule)


def created_app(status: int, body: object) -> FastAPI:
    app = FastAPI()

    @app.post("/items")
    def create_item() -> JSONResponse:
        return JSONResponse(body, status_code=status)

    return app


def test_expect_created_returns_the_created_object() -> None:
    response = client(created_app(201, {"id": 7, "name": "pen"})).post("/items", json={"name": "pen"})
    assert expect_created(response, "Creating an item should answer 201.", no_id="no id") == {"id": 7, "name": "pen"}


def test_expect_created_fails_on_another_status_with_what_to_change() -> None:
    response = client(created_app(200, {"id": 7})).post("/items", json={"name": "pen"})
    with pytest.raises(CheckFailed) as failed:
        expect_created(response, "Creating an item should answer 201 Created.", no_id="no id")
    assert str(failed.value) == (
        "status 200, expected 201. Creating an item should answer 201 Created.\n"
        '  sent:     POST /items with body {"name":"pen"}\n'
        "  expected: status 201\n"
        '  got:      status 200 with body {"id":7}'
    )


def test_expect_created_fails_without_an_integer_id_showing_the_shape() -> None:
    response = client(created_app(201, {"id": "7"})).post("/items", json={"name": "pen"})
    with pytest.raises(CheckFailed) as failed:
        expect_created(response, "unused", no_id="The created item has no integer id.", expected='{"id": <int>}')
    assert str(failed.value) == (
        "The created item has no integer id.\n"
        '  sent:     POST /items with body {"name":"pen"}\n'
        '  expected: {"id": <int>}\n'
        '  got:      {"id": "7"}'
    )


def test_bearer_sends_the_token_in_the_authorization_header() -> None:
    assert bearer("abc.def.ghi") == {"Authorization": "Bearer abc.def.ghi"}

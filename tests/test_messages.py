"""Failure messages lead with what differed, library errors say what to do, and one cause
is one id (issue 14, items 2-4). Pure functions: no grading process is started."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi import FastAPI, Header
from pydantic import BaseModel, Field
from support import MANIFEST, ROOT

from workbook import causes, translate
from workbook.engine import CheckResult
from workbook.grading import first_difference, learner_visible, status_mismatch
from workbook.report import rerun_command

P1 = MANIFEST.by_number(1)


def raised(exc: BaseException) -> BaseException:
    """`exc` with a traceback, as the grading process sees it."""
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - any exception under test
        return caught


@pytest.mark.parametrize(
    ("actual", "allowed", "words"),
    [
        (200, {201}, "status 200, expected 201"),
        (403, {201}, "refused with status 403, expected 201"),
        (200, {403}, "admitted with status 200, expected a refusal with 403"),
        (404, {401, 403}, "status 404, expected 401 or 403"),
    ],
)
def test_a_status_mismatch_is_worded_by_its_direction(actual, allowed, words):
    assert status_mismatch(actual, allowed) == words


def test_the_first_json_difference_names_the_key():
    expected = {"id": 1, "title": "Draft", "tags": ["a", "b"]}
    assert first_difference(expected, {"id": 1, "title": "Draft", "tags": ["a", "c"]}) == (
        'body["tags"][1] is "c", expected "b"'
    )
    assert first_difference(expected, {"id": 1, "title": "Draft"}) == 'body lacks the key "tags"'
    assert first_difference([1], [1, 2]) == "body has 2 items, expected 1"


def test_internal_temporary_folders_are_not_shown(tmp_path):
    text = f"expected: {tmp_path / 'cwd' / 'env-1.db'}"
    assert learner_visible(text) == "expected: <tmp>/cwd/env-1.db"


def test_jose_errors_for_a_missing_algorithms_argument_say_to_pass_it():
    from jose import jwt
    from jose.exceptions import JWKError

    token = jwt.encode({"sub": "ada"}, "secret", algorithm="HS256")
    with pytest.raises(JWKError) as caught:
        jwt.decode(token, {"kty": "unknown"})
    advice = translate.advice([caught.value])
    assert advice is not None and "algorithms=[ALGORITHM]" in advice and "JWKError" in advice


def test_sqlite_used_from_another_thread_says_check_same_thread():
    import threading

    connection = sqlite3.connect(":memory:")
    errors = []

    def use() -> None:
        try:
            connection.execute("select 1")
        except sqlite3.ProgrammingError as exc:
            errors.append(exc)

    worker = threading.Thread(target=use)
    worker.start()
    worker.join(5)
    (error,) = errors
    advice = translate.advice([error])
    assert "check_same_thread=False" in advice
    # A connection opened per request in a `yield` dependency meets it too (problem 1).
    assert "a `yield` dependency's set-up, the endpoint and the clean-up" in advice


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (RuntimeError('Cannot call "send" once a close message has been sent.'), "already closed"),
        (RuntimeError("generator didn't yield"), "without reaching `yield`"),
        (TypeError("'coroutine' object is not an async iterator"), "has no `yield`"),
        (
            AttributeError("'State' object has no attribute 'request_count'", name="request_count"),
            "app.state.request_count was never set: set it in your lifespan's startup code",
        ),
    ],
)
def test_framework_errors_are_translated(error, words):
    assert words in translate.advice([raised(error)])


def test_a_pydantic_error_inside_a_handler_is_explained():
    from pydantic import BaseModel, ValidationError

    class Post(BaseModel):
        title: str

    with pytest.raises(ValidationError) as caught:
        Post(title=None)
    assert "500, not a 422" in translate.advice([caught.value])


def test_an_unknown_error_gets_no_advice():
    assert translate.advice([raised(ValueError("nothing we know"))]) is None


def result(check_id: str, kind: str, message: str, status: str = "fail", **fields) -> CheckResult:
    return CheckResult(check_id, check_id, status, message, 0.0, kind, **fields)


def test_the_same_learner_error_at_the_same_line_is_one_cause():
    frame = "  p2_role_based_access/app.py, line 42, in require_role"
    checks = causes.assign_causes(
        [
            result("a", "learner", f"Your code raised NameError: name 'ROLE_RANKS'\n  while handling GET /a\n{frame}"),
            result("b", "pass", "", status="pass"),
            result("c", "learner", f"Your code raised NameError: name 'ROLE_RANKS'\n  while handling GET /c\n{frame}"),
            result("d", "assertion", "status 200, expected 201.\n  sent: POST /a/3"),
            result("e", "assertion", "status 200, expected 201.\n  sent: POST /a/41"),
            result("f", "assertion", "status 200, expected 204."),
        ]
    )
    assert [check.cause for check in checks] == ["c1", "", "c1", "c2", "c2", "c3"]
    learner_error, mismatch = causes.groups(checks).values()
    assert causes.headline(learner_error) == "2 checks failed: Your code raised NameError: name 'ROLE_RANKS'"
    assert causes.headline(mismatch) == "2 checks failed: status 200, expected 201 (POST /a/{n})"


def test_the_same_wrong_status_for_the_same_request_is_one_cause_whatever_each_check_says():
    sent = "\n  sent:     POST /users with body {}\n  expected: status 201\n  got:      status 200"
    checks = causes.assign_causes(
        [
            result("a", "assertion", f"status 200, expected 201. A successful POST /users should answer 201.{sent}"),
            result("b", "assertion", f"status 200, expected 201. Creating a user should answer 201 Created.{sent}"),
            result("c", "assertion", f"status 200, expected 201.{sent}"),
            result("d", "assertion", "status 200, expected 201.\n  sent:     POST /posts"),
            result("e", "assertion", f"status 200, expected 204.{sent}"),
            result("f", "assertion", "refused with status 403, expected 204.\n  sent:     DELETE /users/7"),
            result("g", "assertion", "refused with status 403, expected 204.\n  sent:     DELETE /users/12?x=1"),
        ]
    )

    assert [check.cause for check in checks] == ["c1", "c1", "c1", "c2", "c3", "c4", "c4"]
    users, deletes = causes.groups(checks).values()
    assert causes.headline(users) == "3 checks failed: status 200, expected 201 (POST /users)"
    assert causes.details(users) == [
        "A successful POST /users should answer 201.",
        "  sent:     POST /users with body {}",
        "  expected: status 201",
        "  got:      status 200",
    ]
    assert causes.headline(deletes) == "2 checks failed: refused with status 403, expected 204 (DELETE /users/{n})"


def test_a_check_blocked_by_an_earlier_hang_shares_its_cause():
    site = {"file": "p1/app.py", "line": 9, "function": "delete_user", "code": "while True:", "running": True}
    checks = causes.assign_causes(
        [
            result("a", "timeout", "No answer after 1.5 s", status="error", site=site),
            result("b", "timeout", "Stopped after 0.1 s", status="error", site=site, blocked_by="a"),
            result("c", "import", "Python cannot read app.py", status="error"),
        ]
    )
    assert [check.cause for check in checks] == ["c1", "c1", "c2"]


def test_waits_for_the_same_missing_event_share_a_cause_whatever_the_data():
    first = causes.missing_answer_key('ada12 waited for {"type": "join", "room": "lobby-4"}, but nothing came')
    second = causes.missing_answer_key('bob77 waited for {"type": "join", "room": "books"}, but nothing came')
    other = causes.missing_answer_key('bob77 waited for {"type": "leave", "room": "books"}, but nothing came')
    assert first == second != other


def test_the_rerun_line_grades_the_same_folder_with_the_same_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert rerun_command(P1, "x", target=ROOT / "exercises", seed=7) == "workbook check 1 -k x --seed 7"
    assert rerun_command(P1, "x", target=ROOT / "solutions", seed=7) == "workbook check 1 -k x --solutions --seed 7"
    submission = tmp_path / "their work"
    assert rerun_command(P1, "x", target=submission, seed=7) == "workbook check 1 -k x --dir 'their work' --seed 7"
    assert rerun_command(P1, "x", target=Path("/elsewhere")) == "workbook check 1 -k x --dir /elsewhere"


def test_watch_and_check_show_a_shared_cause_once():
    from workbook.engine import ProblemResult
    from workbook.report import Style, human_problem
    from workbook.watcher import screen

    message = "Importing your code raised NameError: name 'ROLE_RANKS' is not defined\n  app.py, line 42, in <module>"
    checks = causes.assign_causes(
        [result("a", "import", message, status="error"), result("b", "import", message, status="error")]
    )
    problem_result = ProblemResult(problem=P1, target=ROOT / "exercises", checks=checks, seed=5)
    plain = Style(color=False, unicode=False)
    for text in ("\n".join(screen(problem_result, plain, 1.0)), human_problem(problem_result, plain)):
        assert text.count("NameError: name 'ROLE_RANKS' is not defined") == 1, text
        assert "2 checks could not run: Importing your code raised NameError" in text, text


class Settings(BaseModel):
    path: str = "x.db"


class Item(BaseModel):
    name: str = Field(min_length=1)


def unsent_app() -> FastAPI:
    app = FastAPI()

    @app.post("/items", status_code=201)
    def create(item: Item, settings: Settings) -> dict:
        return {}

    @app.post("/valid", status_code=201)
    def valid(item: Item) -> dict:
        return {}

    @app.get("/items")
    def listing(settings: Settings) -> list:
        return []

    @app.get("/search")
    def search(term: str, x_api_key: str = Header()) -> list:
        return []

    return app


def status_failure(response, expected: int) -> str:
    from workbook.grading import CheckFailed, expect_status

    with pytest.raises(CheckFailed) as caught:
        expect_status(response, expected, "It should work.")
    return str(caught.value)


def test_a_422_for_parameters_the_request_never_sent_says_to_declare_dependencies_with_depends():
    from fastapi.testclient import TestClient

    api = TestClient(unsent_app())

    posted = status_failure(api.post("/items", json={"name": "ada"}), 201)
    listed = status_failure(api.get("/items"), 200)
    searched = status_failure(api.get("/search", params={"other": "1"}), 200)

    assert posted.splitlines()[:2] == [
        "status 422, expected 201. It should work.",
        "  FastAPI tried to read `item`, `settings` from the request body (422), which the request did not send: "
        "if one of them is a dependency, declare it with `Depends(...)` (a model parameter without Depends is "
        "read from the body, and with two of them FastAPI looks for each under its own name).",
    ], posted
    assert listed.splitlines()[1] == (
        "  FastAPI tried to read the request body (422), and GET /items sent none: if a parameter is a "
        "dependency, declare it with `Depends(...)` (a model parameter without Depends is read from the body, "
        "and with two of them FastAPI looks for each under its own name)."
    ), listed
    assert searched.splitlines()[1] == (
        "  FastAPI tried to read `term` from the query string (422), which the request did not send: if it is a "
        "dependency, declare it with `Depends(...)`. FastAPI tried to read `x-api-key` from the headers (422), "
        "which the request did not send: if it is a dependency, declare it with `Depends(...)` (a header that "
        "may be missing needs a default, Header(default=None))."
    ), searched


def test_a_422_for_what_the_request_did_send_gets_no_dependency_advice():
    from fastapi.testclient import TestClient

    from workbook.grading import expect_status, unsent_parameters

    api = TestClient(unsent_app())
    blank = api.post("/valid", json={"name": ""})
    sent_header = api.get("/search", params={"term": "a"}, headers={"x-api-key": "k"})

    expect_status(blank, 422)  # a 422 the check expects is no failure at all
    assert status_failure(blank, 201).splitlines()[1].startswith("  sent:     POST /valid"), status_failure(blank, 201)
    assert unsent_parameters(blank) is None
    assert unsent_parameters(api.post("/valid", content=b"not json")) is None
    assert unsent_parameters(sent_header) is None, sent_header.text


def test_a_dependency_made_by_a_factory_and_used_without_depends_names_the_factory():
    def require_role(role: str):
        def dependency() -> str:
            return role

        return dependency

    user = require_role("admin")
    with pytest.raises(AttributeError) as caught:
        user.username  # noqa: B018 - the handler's mistake, as a learner writes it

    assert "Declare a dependency with `Depends(require_role(...))`" in translate.advice([caught.value])

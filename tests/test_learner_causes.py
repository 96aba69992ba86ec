"""What a failure says it was sent, and one cause for one exception at one line (issue 14,
items 1-2): the `sent:` line is the request that failed, never an earlier one or one sent
by a thread left from another check, and the stub's NotImplementedError is one cause
whether it surfaced as an exception or as a 500."""

from __future__ import annotations

import importlib
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import EXERCISES, MANIFEST, ROOT

from workbook import causes, grading, runner
from workbook.engine import CheckResult, grade

LEARNER_APP = """
    import threading

    from fastapi import FastAPI, WebSocket

    app = FastAPI()
    released = threading.Event()
    late_sent = threading.Event()


    @app.get("/ok")
    def ok():
        return {"ok": True}


    @app.post("/items", status_code=201)
    def create_item():
        raise NotImplementedError("POST /items is not written yet")


    @app.get("/boom")
    def boom():
        released.set()
        late_sent.wait(5)
        raise NotImplementedError("GET /boom is not written yet")


    def helper():
        raise NotImplementedError("helper() is not written yet")


    @app.websocket("/ws/{room}")
    async def chat(websocket: WebSocket, room: str):
        await websocket.accept()
        await websocket.receive_text()
        raise NotImplementedError("chat() is not written yet")


    @app.middleware("http")
    async def passing(request, call_next):
        return await call_next(request)


    class Repository:
        def list_users(self):
            return []


    def get_repo():
        return Repository()


    @app.get("/typo")
    def typo():
        return Repository().list_user()


    @app.get("/no-depends")
    def no_depends(repo=get_repo):
        return repo.list_users()
"""


@pytest.fixture
def learner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    folder = (tmp_path / "p9_learner").resolve()
    folder.mkdir()
    (folder / "learner_app.py").write_text(textwrap.dedent(LEARNER_APP), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setitem(grading.state, "problem_dir", folder)
    sys.modules.pop("learner_app", None)
    module = importlib.import_module("learner_app")
    yield module
    sys.modules.pop("learner_app", None)


def new_check(name: str) -> None:
    grading.pytest_runtest_setup(SimpleNamespace(name=name))


def raising(action: Any) -> BaseException:
    try:
        action()
    except BaseException as exc:  # noqa: BLE001 - whatever the check raised
        return exc
    raise AssertionError("the action raised nothing")


def test_an_error_outside_any_request_shows_no_earlier_request_as_sent(learner: Any) -> None:
    new_check("a")
    api = grading.client(learner.app)
    assert api.get("/ok").status_code == 200

    result = runner.classify(raising(learner.helper))

    assert result["message"].splitlines()[0] == "Your code raised NotImplementedError: helper() is not written yet"
    assert "GET /ok" not in result["message"], result["message"]


def test_a_request_sent_meanwhile_by_a_thread_of_an_earlier_check_is_not_what_was_sent(learner: Any) -> None:
    new_check("earlier")
    api = grading.client(learner.app)

    def left_over() -> None:
        # Stuck in the grader until the current check's request is in the app, then sends.
        learner.released.wait(5)
        api.get("/ok")
        learner.late_sent.set()

    thread = threading.Thread(target=lambda: grading.work_for_current_check(left_over))
    thread.start()
    new_check("current")
    error = raising(lambda: api.get("/boom"))
    thread.join(5)

    message = runner.classify(error)["message"]
    assert message.splitlines()[1] == "  while handling: GET /boom", message
    assert grading.last_sent() == "GET /boom"


def test_a_500_from_the_stub_and_the_raised_stub_error_are_one_cause(learner: Any) -> None:
    new_check("raised")
    raised = runner.classify(raising(lambda: grading.client(learner.app).post("/items")))
    new_check("answered_500")
    lenient = grading.client(learner.app, raise_server_exceptions=False)
    answered = runner.classify(raising(lambda: grading.expect_status(lenient.post("/items"), 201)))

    assert answered["kind"] == "assertion"
    assert answered["message"].splitlines()[0] == "status 500, expected 201."
    assert "  because your code raised NotImplementedError: POST /items is not written yet" in answered["message"]
    assert raised["cause"] == answered["cause"] == "raised:learner_app.py:18:NotImplementedError"
    checks = [
        CheckResult(
            name, name, "fail", found["message"], 0.0, found["kind"], cause=found["cause"], raised=found["raised"]
        )
        for name, found in (("raised", raised), ("answered_500", answered))
    ]
    (members,) = causes.groups(causes.assign_causes(checks)).values()
    assert causes.headline(members) == (
        "2 checks failed: learner_app.py line 18 raised NotImplementedError: POST /items is not written yet"
    )


def test_a_failure_reporting_a_startup_error_shares_its_cause(learner: Any) -> None:
    new_check("startup")
    startup_error = raising(learner.helper)

    def report() -> None:
        grading.fail("Starting the app raised an error.", got=str(startup_error), because=startup_error)

    result = runner.classify(raising(report))

    assert result["cause"] == "raised:learner_app.py:29:NotImplementedError"
    assert result["raised"] == "learner_app.py line 29 raised NotImplementedError: helper() is not written yet"


@pytest.mark.parametrize("number", [1, 2, 3, 5, 6])
def test_each_stub_error_of_the_untouched_stubs_is_one_cause_per_line(number: int, tmp_path: Path) -> None:
    problem = MANIFEST.by_number(number)
    result = grade(problem, EXERCISES, seed=3)
    by_cause: dict[str, set[str]] = {}
    for check in result.checks:
        if check.raised:
            by_cause.setdefault(check.raised, set()).add(check.cause)
    assert by_cause, [check.message for check in result.checks]
    assert any(" raised NotImplementedError: " in raised for raised in by_cause), by_cause
    for raised, ids in by_cause.items():
        assert len(ids) == 1, (raised, ids)
    unnamed = [check.id for check in result.checks if check.kind == "learner" and not check.raised]
    assert unnamed == [], "learner exceptions without a cause of their own"
    # A 500 the stub answered, in process or on a real server, names what the stub raised.
    hidden = [check.id for check in result.checks if "500" in (check.message or "") and not check.raised]
    assert hidden == [], [check.message for check in result.checks if check.id in hidden]


def test_problem_6_says_a_missing_header_in_words_never_as_null() -> None:
    ids = ["request_id_new_when_invalid", "timing_wraps_request_id", "headers_on_404_and_500"]
    ids += ["request_state_has_request_id", "process_time_header", "request_id_echoed_when_valid"]
    result = grade(MANIFEST.by_number(6), EXERCISES, only=ids, seed=4)
    messages = {check.id: check.message or "" for check in result.checks}

    assert messages["request_id_new_when_invalid"].splitlines()[0] == (
        "no X-Request-Id header, expected a new uuid4. Without a valid UUID from the client, make a new one."
    )
    assert "  got:      no X-Request-Id header" in messages["request_id_new_when_invalid"]
    assert messages["request_state_has_request_id"].startswith("request.state.request_id is not set, expected ")
    for check_id, message in messages.items():
        first_line = message.splitlines()[0] if message else ""
        assert "null" not in first_line, (check_id, message)


def test_a_startup_failure_the_grader_reports_says_what_to_do_about_a_library_error() -> None:
    new_check("no_yield")

    def report() -> None:
        try:  # what contextlib raises for an @asynccontextmanager function without `yield`
            raise TypeError("'coroutine' object is not an async iterator")
        except TypeError as exc:
            grading.fail("Starting the app raised an error.", got=f"{type(exc).__name__}: {exc}")

    message = runner.classify(raising(report))["message"]

    assert message.splitlines()[:2] == [
        "Starting the app raised an error.",
        "  Your lifespan (or an async dependency) has no `yield`: with @asynccontextmanager the function must "
        "yield exactly once, after the startup code and before the shutdown code (chapter §8).",
    ], message


def test_an_exception_in_a_real_servers_log_is_the_same_cause_as_in_process(learner: Any) -> None:
    new_check("in_process")
    in_process = runner.classify(raising(lambda: grading.client(learner.app).post("/items")))
    folder = grading.state["problem_dir"]
    log = "\n".join(
        [
            "      await dependant.call(**solved_result.values)",
            f'    File "{folder}/learner_app.py", line 18, in create_item',
            '      raise NotImplementedError("POST /items is not written yet")',
            "  NotImplementedError: POST /items is not written yet",
            "  INFO:     connection rejected (500 Internal Server Error)",
        ]
    )
    new_check("real_server")

    def report() -> None:
        grading.fail(
            "The real server did not accept the connection.", got=f"HTTP 500; the server log ends with:\n{log}"
        )

    on_server = runner.classify(raising(report))

    assert on_server["cause"] == in_process["cause"] == "raised:learner_app.py:18:NotImplementedError"
    assert on_server["raised"] == "learner_app.py line 18 raised NotImplementedError: POST /items is not written yet"


def test_an_error_in_a_websocket_handler_shows_the_connection_as_sent(learner: Any) -> None:
    new_check("websocket")
    api = grading.client(learner.app)
    assert api.get("/ok").status_code == 200

    def chat() -> None:
        with api.websocket_connect("/ws/lobby?username=ada") as websocket:
            websocket.send_text("hello")
            websocket.receive_text()

    message = runner.classify(raising(chat))["message"]

    assert message.splitlines()[:2] == [
        "Your code raised NotImplementedError: chat() is not written yet",
        "  while handling: WebSocket /ws/lobby?username=ada",
    ], message


def grader_function(source: str, name: str) -> Any:
    """Function `name` defined by `source` as if it were written in a file under graders/."""
    namespace: dict[str, Any] = {}
    exec(compile(source, str(ROOT / "graders" / "x.py"), "exec"), namespace)
    return namespace[name]


def test_a_500_a_grader_endpoint_raises_on_purpose_is_not_the_learners_cause(learner: Any) -> None:
    new_check("grader_500")
    # An endpoint as a grader adds it.
    explode = grader_function("def explode():\n    raise RuntimeError('on purpose')\n", "explode")
    learner.app.add_api_route("/grader-boom", explode, methods=["GET"])
    lenient = grading.client(learner.app, raise_server_exceptions=False)

    result = runner.classify(raising(lambda: grading.expect_status(lenient.get("/grader-boom"), 404)))

    assert result["message"].splitlines()[0] == "status 500, expected 404."
    assert "raised" not in result and not result["cause"], result


def test_a_typo_in_the_learners_code_is_the_learners_exception_at_its_line(learner: Any) -> None:
    new_check("typo")
    result = runner.classify(raising(lambda: grading.client(learner.app).get("/typo")))

    assert result["message"].splitlines()[:2] == [
        "Your code raised AttributeError: 'Repository' object has no attribute 'list_user'",
        "  while handling: GET /typo",
    ], result["message"]
    assert (
        result["raised"]
        == "learner_app.py line 55 raised AttributeError: 'Repository' object has no attribute 'list_user'"
    )
    assert result["cause"] == "raised:learner_app.py:55:AttributeError"


def test_a_dependency_without_depends_is_the_learners_exception_with_what_to_do(learner: Any) -> None:
    new_check("no_depends")
    result = runner.classify(raising(lambda: grading.client(learner.app).get("/no-depends")))

    assert result["message"].splitlines()[0] == (
        "Your code used the function get_repo itself where it meant what get_repo returns: a parameter whose "
        "default is `get_repo` receives the function. Declare a dependency with `Depends(get_repo)`, so "
        "FastAPI calls it for each request (chapter §1)."
    ), result["message"]
    assert (
        result["raised"]
        == "learner_app.py line 60 raised AttributeError: 'function' object has no attribute 'list_users'"
    )


def test_a_name_a_grader_looks_up_and_the_learner_did_not_define_says_the_grader_needs_it(learner: Any) -> None:
    new_check("missing_name")
    # A lookup as a grader does it.
    look_up = grader_function("def look_up(module):\n    return module.get_settings\n", "look_up")

    result = runner.classify(raising(lambda: look_up(learner)))

    assert result["message"] == (
        "The grader needs `get_settings` on `learner_app`, and your code does not define it. The problem's "
        "README lists the names the grader uses; keep them as they are spelled there."
    )

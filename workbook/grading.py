"""What graders use: the learner's module, a client that remembers what it sent, and
failures phrased as sentences a learner can act on.

This module is also a pytest plugin (``graders/conftest.py`` loads it), so a grader
runs the same way under ``workbook check`` and under bare ``pytest``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import pytest

from workbook import hangs, learnercode
from workbook.learnercode import cheap_password_hashing
from workbook.learnercode import describe_import_exception as _describe_import_exception
from workbook.learnercode import describe_syntax_error as _describe_syntax_error
from workbook.manifest import Manifest, Problem, load_manifest
from workbook.spies import TrackedConnection, counting_connect
from workbook.words import counted
from workbook.workspace import BUNDLED_EXERCISES

if TYPE_CHECKING:  # a hosted grader never needs TestClient: its import costs 0.2 s a process
    from fastapi.testclient import TestClient

TARGET_ENV = "WORKBOOK_TARGET"
SEED_ENV = "WORKBOOK_SEED"
HOST_TARGET_ENV = "WORKBOOK_HOST_TARGET"  # the graded folder as app hosts see it
MAX_BODY_CHARS = 300
MAX_MESSAGE_CHARS = 2500
MAX_HOST_OUTPUT_CHARS = 8000  # of what the learner's code printed in one app host

T = TypeVar("T")


class CheckFailed(AssertionError):
    """The learner's code behaved differently from the problem statement."""


class LearnerImportError(Exception):
    """The learner's code could not be imported; the message says why, in learner terms."""


class CheckTimeout(Exception):
    """Something the grader waited for did not happen in time; `site` is where the learner's
    code was then (a workbook.hangs.Site, or None), `blocked_by` the earlier check that hung
    at the same place."""

    def __init__(self, message: str, *, site: Any = None, blocked_by: str | None = None) -> None:
        super().__init__(message)
        self.site = site
        self.blocked_by = blocked_by


# The runner restarts the grading process after a check that left a thread stuck in
# learner code, so the next check starts clean.
state: dict[str, Any] = {
    "last_sent": None,  # the last request the current check sent
    "check_serial": 0,  # counts checks in this process, so a request knows whose it is
    "server_errors": [],  # (check serial, exception) for each 500 the app answered
    "tainted": False,
    "problem_dir": None,
    "waited_site": None,
    "check_id": "",
    "first_stuck": None,  # (hangs.Site, check id): where this run first found the learner's code stuck
}


@dataclass
class GradedRun:
    """What the runner tells this module once, before pytest starts: the problem graded
    and the seed of its random test data. Under bare `pytest graders/<slug>` nobody does,
    and the first use finds both (the folder's problem in the manifest; WORKBOOK_SEED or a
    fresh seed)."""

    problem: Problem | None = None
    seed: int | None = None


this_run = GradedRun()


def configure(problem: Problem, seed: int) -> None:
    """Called by workbook/runner.py before the first check: the problem and seed it was given."""
    this_run.problem = problem
    this_run.seed = seed


def seed() -> int:
    """The seed for this run's random test data (`workbook check --seed S` replays a run;
    under bare pytest, WORKBOOK_SEED=S does)."""
    if this_run.seed is None:
        this_run.seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(1, 10**6))
    return this_run.seed


# Seeded for each check in pytest_runtest_setup, from seed() and the check's name.
rng = random.Random()


def target_root() -> Path:
    """The folder being graded: laid out like exercises/ (one sub-folder per problem)."""
    return Path(os.environ.get(TARGET_ENV) or BUNDLED_EXERCISES).resolve()


# --- loading the learner's code -------------------------------------------------------


def import_learner(problem: Problem) -> ModuleType:
    """Import the learner's module afresh, so no state leaks from one check to the next."""
    folder = target_root() / problem.slug
    if not folder.is_dir():
        raise LearnerImportError(f"There is no folder {problem.slug}/ in {folder.parent}.")
    _forget_modules(problem.module.split(".")[0], folder)
    _put_first_on_path(folder)
    state["problem_dir"] = folder
    try:
        module = importlib.import_module(problem.module)
    except SyntaxError as exc:
        raise LearnerImportError(_describe_syntax_error(exc, folder)) from None
    except BaseException as exc:  # noqa: BLE001 - learner code may raise anything, even SystemExit
        raise LearnerImportError(_describe_import_exception(exc, folder)) from None
    if not hasattr(module, "app"):
        raise LearnerImportError(
            f"{_relative_module_file(problem)} defines no `app`. Keep the line `app = FastAPI(...)` at module level."
        )
    return module


def _forget_modules(root_name: str, folder: Path) -> None:
    # A plain prefix test: the learner's modules were imported from str(folder) itself, and
    # resolving the path of every module in sys.modules would cost ~25 ms per check.
    prefix = str(folder) + os.sep
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if name == root_name or name.startswith(root_name + ".") or file.startswith(prefix):
            del sys.modules[name]
    importlib.invalidate_caches()


def _put_first_on_path(folder: Path) -> None:
    previous = state.get("problem_dir")
    if previous is not None and str(previous) in sys.path:
        sys.path.remove(str(previous))
    sys.path.insert(0, str(folder))


def _relative_module_file(problem: Problem) -> str:
    return problem.module.replace(".", "/") + ".py"


def learner_frames(exc: BaseException, folder: Path | None = None) -> str:
    """The traceback of `exc` trimmed to the frames in the learner's files (by default the
    folder of the problem being graded)."""
    return learnercode.learner_frames(exc, folder or state.get("problem_dir"))


# --- talking to the learner's app -----------------------------------------------------


def client(app: Any, *, raise_server_exceptions: bool = True, **kwargs: Any) -> TestClient:
    """A TestClient for `app` that remembers what it sent, so failures can say so: an
    exception the app raised carries the request it raised for (`sent_with`), and so does
    one the app answered with a 500 while `raise_server_exceptions` is False
    (`server_errors`). `raise_server_exceptions=False` turns an exception in the learner's
    endpoint into the 500 a real server would answer; other keywords go to TestClient.

    Example (a grader's `api` fixture; `with` runs the app's lifespan and keeps one event
    loop for all of a check's requests)::

        @pytest.fixture
        def api(learner: ModuleType) -> Iterator[TestClient]:
            with client(learner.app) as test_client:
                yield test_client
    """
    test_client = _remembering_client_class()(app, raise_server_exceptions=raise_server_exceptions, **kwargs)
    test_client.event_hooks = {"request": [_remember_request], "response": []}
    return test_client


# Which check a thread works for: a thread left over from an earlier check (stuck in the
# grader, say) must not become "what was sent" for the current one (issue 14).
_thread = threading.local()
SENT_ATTRIBUTE = "workbook_sent"


def work_for_current_check(action: Callable[[], T], owner: int | None = None) -> T:
    """Run `action` in this thread on behalf of check `owner` (default: the current one)."""
    _thread.owner = state["check_serial"] if owner is None else owner
    return action()


def _owned_by_current_check() -> bool:
    return getattr(_thread, "owner", state["check_serial"]) == state["check_serial"]


def _remember_request(request: Any) -> None:
    text = describe_request(request)
    _thread.sending = text
    if _owned_by_current_check():
        state["last_sent"] = text


def sent_with(exc: BaseException) -> str | None:
    """The request during which `exc` (or an exception it was raised from) was raised by the
    app, or None when it was not raised while handling a request."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 30:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        sent = getattr(current, SENT_ATTRIBUTE, None)
        if isinstance(sent, str):
            return sent
        todo.extend(getattr(current, "exceptions", ()) or ())
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def _tag(exc: BaseException, sent: str | None) -> None:
    if sent and getattr(exc, SENT_ATTRIBUTE, None) is None:
        with contextlib.suppress(AttributeError, TypeError):  # an exception type with __slots__
            setattr(exc, SENT_ATTRIBUTE, sent)


def note_server_error(exc: BaseException) -> None:
    """Record an exception the app raised while answering with a 500, for a grader that
    calls the app through a transport of its own (not `client`), so the failure names it."""
    if _owned_by_current_check():
        state["server_errors"].append((state["check_serial"], exc))


def server_errors() -> list[BaseException]:
    """What the app raised in this check while answering a request with a 500 (test clients
    with raise_server_exceptions=False), oldest first."""
    return [exc for serial, exc in state["server_errors"] if serial == state["check_serial"]]


@functools.cache
def _remembering_client_class() -> type:

    from fastapi.testclient import TestClient
    from starlette.testclient import WebSocketTestSession

    class RememberingSession(WebSocketTestSession):
        """A WebSocket session whose errors carry the connection they were raised for."""

        workbook_sent: str | None = None

        def __enter__(self) -> Any:
            return self._tagged(super().__enter__)

        def __exit__(self, *args: Any) -> Any:
            return self._tagged(lambda: super(RememberingSession, self).__exit__(*args))

        def send(self, message: Any) -> None:
            self._tagged(lambda: super(RememberingSession, self).send(message))

        def receive(self) -> Any:
            return self._tagged(super().receive)

        def _tagged(self, action: Callable[[], T]) -> T:
            try:
                return action()
            except BaseException as exc:
                _tag(exc, self.workbook_sent)
                raise

    class RememberingClient(TestClient):
        def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(app, *args, **kwargs)
            self.workbook_errors: list[BaseException] = []
            transport: Any = self._transport  # starlette's _TestClientTransport: it calls `app`
            served = transport.app

            async def remembering_app(scope: Any, receive: Any, send: Any) -> None:
                try:
                    await served(scope, receive, send)
                except Exception as exc:
                    self.workbook_errors.append(exc)
                    raise

            transport.app = remembering_app

        def request(self, *args: Any, **kwargs: Any) -> Any:
            _thread.sending = None
            before = len(self.workbook_errors)
            try:
                response = super().request(*args, **kwargs)
            except BaseException as exc:
                _tag(exc, _thread.sending)
                raise
            for served_error in self.workbook_errors[before:]:
                _tag(served_error, _thread.sending)
                note_server_error(served_error)
            return response

        def websocket_connect(self, *args: Any, **kwargs: Any) -> Any:
            _thread.sending = None
            session: Any = super().websocket_connect(*args, **kwargs)
            session.__class__ = RememberingSession
            session.workbook_sent = _thread.sending
            return session

    return RememberingClient


def describe_request(request: Any) -> str:
    url = request.url
    target = url.path + (f"?{url.query.decode()}" if url.query else "")
    websocket = url.scheme in ("ws", "wss") or request.headers.get("upgrade", "").lower() == "websocket"
    text = f"WebSocket {target}" if websocket else f"{request.method} {target}"
    shown = [f"{name}: {_abbreviate(value)}" for name, value in request.headers.items() if _worth_showing(name)]
    if shown:
        text += " with header " + ", ".join(shown)
    body = _request_body(request)
    if body:
        text += f" and body {body}" if shown else f" with body {body}"
    return text


def _worth_showing(header: str) -> bool:
    header = header.lower()
    return header == "authorization" or (header.startswith("x-") and not header.startswith("x-workbook"))


def _abbreviate(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _request_body(request: Any) -> str:
    try:
        content = request.content
    except Exception:  # noqa: BLE001 - a streamed body cannot be shown; say nothing about it
        return ""
    if not content:
        return ""
    return clip(content.decode("utf-8", "replace"))


def last_sent() -> str | None:
    return state["last_sent"]


def clip(text: str, limit: int = MAX_BODY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(value: Any) -> str:
    """A value as the learner would see it on the wire: compact JSON."""
    try:
        return clip(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError):
        return clip(repr(value))


def response_text(response: Any) -> str:
    body = response.text
    return (
        f"status {response.status_code} with body {clip(body)}"
        if body
        else f"status {response.status_code} with an empty body"
    )


# --- failing with a sentence ----------------------------------------------------------


def fail(
    what: str,
    *,
    expected: str | None = None,
    got: str | None = None,
    sent: str | None = None,
    because: BaseException | None = None,
) -> NoReturn:
    """Fail the check: what went wrong, what was sent, what was expected, what came back.
    Internal temporary paths are shown as `<tmp>/...` (learner_visible). `what` leads with
    what differed, then says what to change, in the learner's words. `because`: the
    exception the learner's code raised that the failure reports (so checks failing on
    the same exception at the same line are grouped as one cause).

    Example::

        fail("The statistics file is not valid JSON.", expected="a JSON object", got=show(text))
    """
    lines = [what]
    if sent:
        lines.append(f"  sent:     {sent}")
    if expected is not None:
        lines.append(f"  expected: {expected}")
    if got is not None:
        lines.append(f"  got:      {got}")
    if state.get("waited_site") is not None:
        # A bounded wait of this check expired: where the learner's code was is the lead to follow.
        lines.append(f"  where:    {state['waited_site'].describe()}")
    raise CheckFailed(clip(learner_visible("\n".join(lines)), MAX_MESSAGE_CHARS)) from because


# pytest's per-check folders and the engine's scratch folders: where they are is noise to a learner.
_TEMP_PATH = re.compile(
    r"(?:/private)?"
    + re.escape(tempfile.gettempdir().rstrip(os.sep))
    # pytest-xdist puts one more folder (popen-gw0) between the run's and the test's.
    + r"/(?:pytest-of-[^/\s]+/pytest-\d+/(?:popen-gw\d+/)?[^/\s\"']+|workbook-[^/\s\"']+)"
)


# An app host's own working folder (workbook/apphost.py: work-<name> in its scratch folder).
_HOST_WORK = re.compile(r"<tmp>/work-[^/\s\"']+")


def learner_visible(text: str) -> str:
    """`text` with internal temporary folders replaced by `<tmp>` (issue 14, item 3), and an
    app host's working folder by `<working directory>`, where the learner's code ran."""
    return _HOST_WORK.sub("<working directory>", _TEMP_PATH.sub("<tmp>", text))


def expect(
    condition: bool, what: str, *, expected: str | None = None, got: str | None = None, sent: str | None = None
) -> None:
    """Fail the check with `fail(what, ...)` unless `condition` holds: for any expectation the
    `expect_*` helpers do not cover. Check a response's shape with it before indexing into it.

    Example::

        expect(
            len(stored) == 1,
            "POST /users answered 201, but the user is not in the database file.",
            expected="1 row with the email sent",
            got=f"{len(stored)} rows",
        )
    """
    if not condition:
        fail(what, expected=expected, got=got, sent=sent)


REFUSALS = frozenset({401, 403})


def status_mismatch(actual: int, allowed: set[int]) -> str:
    """What differed, worded by its direction: a refusal that should not have happened is
    called a refusal, and so is one that should have."""
    wanted = " or ".join(str(code) for code in sorted(allowed))
    if actual in REFUSALS and not allowed & REFUSALS:
        return f"refused with status {actual}, expected {wanted}"
    if allowed <= REFUSALS and 200 <= actual < 300:
        return f"admitted with status {actual}, expected a refusal with {wanted}"
    return f"status {actual}, expected {wanted}"


def expect_status(response: Any, status: int | Iterable[int], what: str | None = None) -> None:
    """Fail unless the response's status is `status` (or one of them). The message leads with
    what differed ("status 200, expected 201", "refused with status 403, expected 200"),
    then `what`, then what was sent and what came back.

    Example: ``expect_status(response, 201, "A successful POST /users should answer 201 Created.")``
    """
    allowed = {status} if isinstance(status, int) else set(status)
    if response.status_code in allowed:
        return
    wanted = " or ".join(str(code) for code in sorted(allowed))
    mismatch = status_mismatch(response.status_code, allowed)
    lead = f"{mismatch}. {what}" if what else f"{mismatch}."
    unsent = unsent_parameters(response)
    fail(
        f"{lead}\n  {unsent}" if unsent else lead,
        sent=describe_request(response.request),
        expected=f"status {wanted}",
        got=response_text(response),
    )


# Where FastAPI reads a parameter that is not a dependency, as its 422 errors name it (`loc`).
REQUEST_PARTS = {"body": "the request body", "query": "the query string", "header": "the headers", "path": "the path"}
PART_ADVICE = {
    "body": "a model parameter without Depends is read from the body, and with two of them FastAPI "
    "looks for each under its own name",
    "header": "a header that may be missing needs a default, Header(default=None)",
}


def unsent_parameters(response: Any) -> str | None:
    """Why FastAPI answered 422 to a request whose own data was not at fault: its errors
    name parameters the request never sent (a `loc` of ["body", name], ["query", name],
    ["header", name] or ["path", name] that is missing, and not a field of the JSON body,
    a query parameter or a header that was sent). That is most often a dependency declared
    without `Depends(...)`, which FastAPI then reads from the request (chapter §1).
    Returns None for any other answer, such as a 422 for a field the request did send."""
    if response.status_code != 422:
        return None
    missing: dict[str, list[str]] = {}
    for part, name in _missing_locations(response):
        if not _was_sent(response.request, part, name):
            missing.setdefault(part, []).append(name)
    return " ".join(_unsent_sentence(part, names, response.request) for part, names in missing.items()) or None


def _missing_locations(response: Any) -> list[tuple[str, str]]:
    """(part, name) of each "missing" error in a FastAPI 422 body; name "" for a whole body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return []
    found = []
    for error in detail if isinstance(detail, list) else []:
        loc = error.get("loc") if isinstance(error, dict) else None
        if isinstance(loc, list) and loc and loc[0] in REQUEST_PARTS and "missing" in str(error.get("type")):
            found.append((loc[0], str(loc[1]) if len(loc) > 1 else ""))
    return found


def _was_sent(request: Any, part: str, name: str) -> bool:
    if part == "query":
        return name in request.url.params
    if part == "header":
        return name.lower() in request.headers
    if part != "body":
        return False
    try:
        body = json.loads(request.content or b"null")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return True  # a body that is not JSON was the grader's choice; say nothing about it
    return name in body if isinstance(body, dict) and name else body is not None


def _unsent_sentence(part: str, names: list[str], request: Any) -> str:
    place = REQUEST_PARTS[part]
    if names == [""]:
        read = f"FastAPI tried to read {place} (422), and {request.method} {request.url.path} sent none"
    else:
        listed = ", ".join(f"`{name}`" for name in names)
        read = f"FastAPI tried to read {listed} from {place} (422), which the request did not send"
    pronoun = "a parameter is" if names == [""] else "it is" if len(names) == 1 else "one of them is"
    extra = f" ({PART_ADVICE[part]})" if part in PART_ADVICE else ""
    return f"{read}: if {pronoun} a dependency, declare it with `Depends(...)`{extra}."


def json_body(response: Any, what: str | None = None) -> Any:
    """The response's body parsed as JSON; fails the check when it is not JSON. The value may
    be of any JSON type: check its shape with `expect` before indexing into it.

    Example: ``body = json_body(response)``
    """
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "") or "no content type"
        fail(
            f"the body is not JSON ({clip(kind, 60)}), expected a JSON body." + (f" {what}" if what else ""),
            sent=describe_request(response.request),
            expected="a JSON body",
            got=response_text(response),
        )


def expect_json(response: Any, expected: Any, what: str | None = None) -> Any:
    """Fail unless the whole JSON body equals `expected`; the message names the first key or
    item that differs (`first_difference`). Returns the body.

    Example: ``expect_json(response, [], "GET /users on a new database should answer an empty list.")``
    """
    body = json_body(response, what)
    if body != expected:
        difference = first_difference(expected, body)
        fail(
            f"{difference}." + (f" {what}" if what else ""),
            sent=describe_request(response.request),
            expected=show(expected),
            got=show(body),
        )
    return body


def expect_created(response: Any, what: str, *, no_id: str, expected: str | None = None) -> dict[str, Any]:
    """Expect 201 Created and a JSON object with an integer "id"; returns that object, so
    the check can go on with the id the app gave. `what` ends the message when the status
    differs; `no_id` is the message when the body is not an object with an integer id, and
    `expected` shows the learner the shape to answer.

    Example::

        item = expect_created(
            api.post("/items", json=sent),
            "Creating an item should answer 201 Created.",
            no_id="The created item has no integer id; it must carry one.",
            expected='{"id": <int>, "name": ..., "price": ...}',
        )
    """
    expect_status(response, 201, what)
    body = json_body(response)
    expect(
        isinstance(body, dict) and isinstance(body.get("id"), int),
        no_id,
        sent=describe_request(response.request),
        expected=expected,
        got=show(body),
    )
    return body


def bearer(token: str) -> dict[str, str]:
    """The headers that send `token` as an OAuth2 bearer token.

    Example: ``api.get("/items", headers=bearer(token))``
    """
    return {"Authorization": f"Bearer {token}"}


def first_difference(expected: Any, got: Any, where: str = "body") -> str:
    """The first place two JSON values differ, in words: "body["title"] is "a", expected "b"."."""
    if isinstance(expected, dict) and isinstance(got, dict):
        missing = [key for key in expected if key not in got]
        if missing:
            return f"{where} lacks the key {show(missing[0])}"
        extra = [key for key in got if key not in expected]
        if extra:
            return f"{where} has the unexpected key {show(extra[0])}"
        for key in expected:
            if expected[key] != got[key]:
                return first_difference(expected[key], got[key], f"{where}[{show(key)}]")
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return f"{where} has {counted(len(got), 'item')}, expected {len(expected)}"
        for index, (wanted, found) in enumerate(zip(expected, got, strict=True)):
            if wanted != found:
                return first_difference(wanted, found, f"{where}[{index}]")
    return f"{where} is {clip(show(got), 80)}, expected {clip(show(expected), 80)}"


def within(seconds: float, action: Callable[[], T], what: str) -> T:
    """Run `action` but give up after `seconds`: a learner's server may never answer. Returns
    what `action` returned, raises what it raised; on time-out the check ends with `what` and
    where the learner's code was waiting. Bound every wait with it.

    Example: ``message = within(2.0, websocket.receive_json, "the join event after connecting")``

    Once a wait in this run has expired (the app has shown that it does not answer), later
    waits get a deadline derived from how fast the app answered so far (`WaitHistory`), so
    an event many checks wait for costs the full wait once, not once per check."""
    waits: WaitHistory = state["waits"]
    limit = waits.deadline(seconds)
    outcome: dict[str, Any] = {}
    owner = getattr(_thread, "owner", state["check_serial"])

    def run() -> None:
        try:
            outcome["value"] = work_for_current_check(action, owner)
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="workbook-within")
    started = time.monotonic()
    worker.start()
    sampler = learner_sampler()
    blocked = _join_unless_blocked(worker, started + limit, sampler)
    if worker.is_alive():
        waits.expired()
        site = blocked[0] if blocked else sampler.any_site({threading.get_ident()})
        # Only a thread left running the learner's code needs a fresh process for the next
        # check; an app host's stuck code ends with the host, at the end of the check.
        hosted_code = not isinstance(sampler, hangs.Sampler)
        if site is not None and not hosted_code and not hangs.stop_stuck_threads(sampler, {threading.get_ident()}):
            state["tainted"] = True
        where = f"; {site.describe()}" if site is not None else ""
        state["waited_site"] = site
        if site is not None:
            note_stuck(site, state["check_id"])
        state["wait_expired"] = True
        if blocked:
            seconds = time.monotonic() - started
            raise CheckTimeout(
                f"no answer after {seconds:.2f} s: {what}; stuck at the same place as check {blocked[1]}{where}.",
                site=site,
                blocked_by=blocked[1],
            )
        raise CheckTimeout(f"no answer within {limit:.2g} s: {what}{where}.", site=site)
    waits.answered(time.monotonic() - started)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def learner_sampler() -> Any:
    """Where to look for the learner's code (workbook/hangs.py): this check's app hosts for
    a hosted problem (hostkit.RemoteSampler), else this process (hangs.Sampler)."""
    if this_run.problem is not None and this_run.problem.hosted:
        from workbook import hostkit

        return hostkit.RemoteSampler(hostkit.current_hosts)
    return hangs.Sampler(state.get("problem_dir"))


def _join_unless_blocked(worker: threading.Thread, deadline: float, sampler: Any) -> tuple[Any, str] | None:
    """Wait for `worker` until `deadline`. Once this run found the learner's code stuck
    (`note_stuck`), sample where it is meanwhile: held at that same place for
    hangs.BLOCKED_S, the wait is over, and this returns (the site, the check that first
    found it). None when the worker finished or the deadline passed."""
    known = state.get("first_stuck")
    if known is None:
        worker.join(max(0.0, deadline - time.monotonic()))
        return None
    # Threads in the learner's code before this check began are not this wait's (one blocked
    # for good in an earlier check, say in time.sleep(3600), stays where it hung).
    ignore = {threading.get_ident(), worker.ident or 0, *state.get("threads_before", ())}
    since: float | None = None
    while worker.is_alive():
        now = time.monotonic()
        if now >= deadline:
            return None
        worker.join(min(hangs.KNOWN_POLL_S, deadline - now))
        site = sampler.any_site(ignore)
        if site is None or site.key != known[0].key:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= hangs.BLOCKED_S:
            return site, known[1]
    return None


def _threads_in_learner_code() -> set[int]:
    return set(learner_sampler().threads(set()))


def note_stuck(site: Any, check_id: str) -> None:
    """Remember the first place this run found the learner's code stuck (a hang, or a bounded
    wait that expired while their code waited there): `expect_not_stuck` reports later
    real-server checks as blocked by it."""
    if state.get("first_stuck") is None and site is not None:
        state["first_stuck"] = (site, check_id)


def expect_not_stuck(what: str) -> None:
    """Call at the start of a check that needs answers from the whole app, say over a real
    uvicorn server (which the grading process cannot sample for hangs): when an earlier check
    of this run found the learner's code stuck, this check would only wait at the same place,
    so it is reported as blocked by that check at once (issue 14, item 1). `what` says what
    the check would have done ("serve your app with uvicorn and chat over real sockets")."""
    known = state.get("first_stuck")
    if known is None:
        return
    site, check_id = known
    raise CheckTimeout(
        f"Not tried: check {check_id} already found your code stuck ({site.describe()}). This check "
        f"would {what}, and wait at the same place. Fix that first.",
        site=site,
        blocked_by=check_id,
    )


def real_wait(seconds: float, floor: float = 1.0) -> float:
    """How long a wait over real sockets may take: the grader's `seconds` while every bounded
    wait of this run was answered, else a deadline derived from how fast the app answered in
    process (at least `floor`: a real server adds its own latency)."""
    waits: WaitHistory = state["waits"]
    return seconds if not waits.any_expired else min(seconds, max(floor, waits.deadline(seconds)))


class WaitHistory:
    """How fast the app answered bounded waits in this grading process.

    Before any wait expired, every wait gets the grader's full time, so a correct solution
    never meets a shortened deadline. After one expired, a wait gets FACTOR times the
    slowest answer seen (at least FLOOR_S, at most the grader's time)."""

    FACTOR = 10.0
    FLOOR_S = 0.15  # ~50x an in-process answer (1-3 ms); FACTOR covers a slower machine

    def __init__(self) -> None:
        self.slowest = 0.0
        self.any_expired = False

    def deadline(self, seconds: float) -> float:
        if not self.any_expired:
            return seconds
        return min(seconds, max(self.FLOOR_S, self.FACTOR * self.slowest))

    def answered(self, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)

    def expired(self) -> None:
        self.any_expired = True


state["waits"] = WaitHistory()


# --- watching SQLite ------------------------------------------------------------------


@pytest.fixture
def sqlite_connections(monkeypatch: pytest.MonkeyPatch) -> list[TrackedConnection]:
    """Every connection the learner's code opens with sqlite3.connect, in order
    (workbook.spies.counting_connect). Request it from `before_import`, for a grader that
    imports the learner's code; a hosted grader installs the spy from its probe menu."""
    connections: list[TrackedConnection] = []
    monkeypatch.setattr(sqlite3, "connect", counting_connect(connections))
    return connections


# --- the pytest side ------------------------------------------------------------------


@pytest.fixture(scope="module")
def problem(request: pytest.FixtureRequest) -> Problem:
    """The problem being graded: the one the runner was given, else (bare pytest) the
    manifest entry named like the grader folder that holds the requesting test."""
    slug = Path(str(request.path)).parent.name
    if this_run.problem is None or this_run.problem.slug != slug:
        this_run.problem = _bare_pytest_manifest().by_slug(slug)
    return this_run.problem


@functools.cache
def _bare_pytest_manifest() -> Manifest:
    """The manifest, read once: bare `pytest graders/` grades several problems in one process."""
    return load_manifest()


@pytest.fixture
def before_import() -> None:
    """Override in a grader to prepare the world (patch, set the environment) before the
    learner's module is imported."""


@pytest.fixture
def learner(problem: Problem, before_import: None) -> ModuleType:
    """The learner's module for this problem, imported afresh for this check (graders of
    problems not yet moved to app hosts only: a hosted grader uses `host`)."""
    if problem.hosted:
        raise RuntimeError("a hosted grader must not import the learner's code: use the `host` fixture")
    return import_learner(problem)


# --- app hosts (issue 11, item 1): the learner's code in a process of its own ---------------


def host_folder(problem: Problem) -> str:
    """The problem's folder as the app host sees it (in the sandbox: the submission's path)."""
    root = os.environ.get(HOST_TARGET_ENV) or str(target_root())
    return str(Path(root) / problem.slug)


@pytest.fixture
def host_env() -> dict[str, str]:
    """Override in a grader: environment variables the host sets before the import."""
    return {}


@pytest.fixture
def host_unset() -> list[str]:
    """Override in a grader: environment variables the host removes before the import."""
    return []


@pytest.fixture
def host_setup() -> list[tuple[str, dict[str, Any]]]:
    """Override in a grader: probes (name, arguments) the host runs before the import,
    e.g. a spy on sqlite3.connect."""
    return []


@pytest.fixture
def new_host(problem: Problem) -> Iterator[Callable[..., Any]]:
    """A factory of app hosts for this check: `new_host(env=..., setup=..., workdir=...)`
    starts one more host (a process of its own, the module imported afresh); all end with
    the check, or are recycled for a later one (hostkit.give_back). A shared `workdir` name
    lets a second host see the files of the first (a restart)."""
    from workbook import hostkit

    def start(
        env: dict[str, str] | None = None,
        unset: list[str] | None = None,
        setup: list[tuple[str, dict[str, Any]]] | None = None,
        workdir: str | None = None,
    ) -> hostkit.AppHost:
        return open_host(problem, env=env, unset=unset, setup=setup, workdir=workdir)

    try:
        yield start
    finally:
        for host in hostkit.current_hosts:
            _show_output(host)
        hostkit.give_back_all()


def _show_output(host: Any) -> None:
    """Print what the learner's code printed in `host`, so it appears with the check's result
    as it did when the code ran in this process (pytest captures this output)."""
    text = host.log(MAX_HOST_OUTPUT_CHARS)
    if text:
        sys.stdout.write(text)


def open_host(
    problem: Problem,
    *,
    env: dict[str, str] | None = None,
    unset: list[str] | None = None,
    setup: list[tuple[str, dict[str, Any]]] | None = None,
    workdir: str | None = None,
    register: bool = True,
) -> Any:
    """A new app host for the current check (workbook/hostkit.py), its learner module imported
    within the check's time limit; `register`: one of the check's hosts (ended with it, and
    watched for hangs). Raises LearnerImportError when the import failed or did not finish
    (naming where the learner's code was), HostError when no host could be had."""
    from workbook import hostkit

    hostkit.ensure_hosts()
    host = hostkit.take_host()
    if register:
        hostkit.current_hosts.append(host)
    state["problem_dir"] = target_root() / problem.slug
    limit = IMPORT_WAIT_AFTER_HANG_S if state.get("import_hung") else problem.check_timeout_s
    try:
        host.start(
            problem.module,
            host_folder(problem),
            env=env,
            unset=unset,
            setup=setup,
            probes=problem.probes,
            workdir=workdir,
            timeout=limit,
        )
    except hostkit.HostTimeout:
        site = next(iter(hangs_of(host)), None)
        if not register:
            host.close()
        if site is None and not host.threads_answered:
            raise
        state["import_hung"] = True
        where = f": {site.describe()}" if site is not None else ""
        raise LearnerImportError(
            f"Importing your code did not finish within {limit:g} s{where}. "
            "Is there an endless loop, or a blocking call, at module level?"
        ) from None
    except BaseException:
        if not register:
            host.close()
        raise
    return host


# Once an import of the learner's module hung, later checks wait this long for theirs: the
# same code hangs at the same place, and 22 checks of 3 s each would make a minute.
IMPORT_WAIT_AFTER_HANG_S = 1.0


def hangs_of(host: Any) -> list[hangs.Site]:
    """Where the host's threads run the learner's code now (asked on its monitor connection)."""
    found = [hangs.Site.from_dict(data) for data in (host.threads() or {}).values()]
    return [site for site in found if site is not None]


@pytest.fixture(scope="module")
def _shared_host() -> Iterator[dict[str, Any]]:
    held: dict[str, Any] = {"host": None, "error": None}
    yield held
    if held["host"] is not None:
        held["host"].close()


@pytest.fixture
def observing_host(problem: Problem, _shared_host: dict[str, Any]) -> Iterator[Any]:
    """An app host shared by the checks of one grader file that only *observe* the app (its
    structure, its OpenAPI schema, a constant) and change nothing in it: one import for all
    of them instead of one each (~50 ms a check). A check that changes the app's state (a
    request that writes, an override), or needs an environment of its own, uses `host`. A
    host that hung is ended, and the next check gets a new one."""
    from workbook import hostkit

    if _shared_host["error"] is not None:
        raise _shared_host["error"]
    shared = _shared_host["host"]
    if shared is None or shared.closed:
        try:
            shared = _shared_host["host"] = open_host(problem, register=False)
        except LearnerImportError as exc:
            _shared_host["error"] = exc
            raise
    hostkit.current_hosts.append(shared)
    try:
        yield shared
    finally:
        with contextlib.suppress(ValueError):
            hostkit.current_hosts.remove(shared)


@pytest.fixture
def host(
    new_host: Callable[..., Any],
    host_env: dict[str, str],
    host_unset: list[str],
    host_setup: list[tuple[str, dict[str, Any]]],
) -> Any:
    """This check's app host: the learner's module imported afresh in a sandboxed process
    (new, or recycled from an earlier check with its state put back), not yet served
    (`host.client()` serves it, lifespan on; `host.serve(...)` to choose). Raises
    LearnerImportError when the import fails, as `learner` did."""
    return new_host(env=host_env, unset=host_unset, setup=host_setup)


@pytest.fixture(autouse=True)
def fresh_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each check runs in an empty working directory: relative paths the learner's code
    writes to never leak from one check into the next."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def pytest_configure(config: pytest.Config) -> None:
    cheap_password_hashing()
    if os.environ.get(TARGET_ENV):
        # Bare `WORKBOOK_TARGET=solutions pytest ...`: a relative folder means the one seen
        # from here, not from the empty working directory each check moves to.
        os.environ[TARGET_ENV] = str(target_root())


def pytest_runtest_setup(item: pytest.Item) -> None:
    state["last_sent"] = None
    state["check_serial"] += 1
    state["server_errors"] = []
    state["waited_site"] = None
    state["wait_expired"] = False
    state["check_id"] = item.name.removeprefix("test_")
    state["threads_before"] = _threads_in_learner_code() if state.get("first_stuck") else set()
    # Each check draws its own stream from the run's seed, so `-k ID --seed S` replays the
    # same data as the full run did.
    rng.seed(f"{seed()}:{item.name}")


# --- a real server --------------------------------------------------------------------


class Server:
    """A learner's app served by a real uvicorn process on a loopback port."""

    def __init__(self, process: Any, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self, limit: int = 1500) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """One SIGTERM (a second would skip the lifespan shutdown), then wait; returns the
        exit code, or None when it had to be killed."""
        if self.process.poll() is None:
            if sys.platform == "win32":
                self.process.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode

    def kill(self) -> None:
        """End it at once: for a check that already has its verdict, or one that does not
        look at how the server stops (a stuck app would make a graceful stop wait)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


# Booting uvicorn (interpreter, imports, the learner's module) is slow only on a loaded
# machine, so it gets a generous bound; the learner's own lifespan startup gets a short one.
SERVER_BOOT_TIMEOUT_S = 12.0
STARTUP_MARK = "Waiting for application startup."
STARTUP_FLOOR_S = 1.0


def serve(problem: Problem, *, env: dict[str, str] | None = None, ready_timeout: float = 3.0) -> Server:
    """Start `uvicorn <module>:app` for the learner's problem on a free loopback port and wait
    until it accepts connections: at most SERVER_BOOT_TIMEOUT_S seconds for uvicorn to reach
    the app's lifespan startup, then for that startup (the learner's code) to finish as long
    as the boot took, at least STARTUP_FLOOR_S and at most `ready_timeout` seconds. Fails
    the check, naming which of the two never ended.
    Stop it with `Server.stop()`.

    Example::

        server = serve(problem, env={"STATS_PATH": str(stats_path)})
        try:
            response = httpx.get(f"{server.http_url}/items", timeout=2)
        finally:
            server.stop()
    """
    folder = target_root() / problem.slug
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = Path.cwd() / f"uvicorn-{port}.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"{problem.module}:app",
        "--app-dir",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # info, not warning: the startup line tells a slow machine from a stuck lifespan.
        "--log-level",
        "info",
        "--lifespan",
        "on",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    server = Server(process, port, log_path)
    _wait_until_serving(server, ready_timeout)
    return server


def _wait_until_serving(server: Server, ready_timeout: float) -> None:
    started = time.monotonic()
    boot_deadline = started + SERVER_BOOT_TIMEOUT_S
    startup_deadline: float | None = None
    startup_timeout = ready_timeout
    while True:
        if server.process.poll() is not None:
            fail(
                "uvicorn exited before it served anything.",
                expected="a running server",
                got=f"exit code {server.process.returncode}; its output ends with:\n{server.log()}",
            )
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.2):
                return
        except OSError:
            pass
        now = time.monotonic()
        if startup_deadline is None and STARTUP_MARK in server.log(limit=100_000):
            # The learner's startup gets as long as booting took (this machine's speed; a
            # correct startup is a small part of that), within [STARTUP_FLOOR_S, ready_timeout].
            startup_timeout = min(ready_timeout, max(STARTUP_FLOOR_S, now - started))
            startup_deadline = now + startup_timeout
        if startup_deadline is not None and now > startup_deadline:
            server.kill()  # the check has failed: a stuck startup would only make SIGTERM wait
            fail(
                f"your app's startup did not finish within {startup_timeout:.1f} s under uvicorn: "
                f"uvicorn printed {STARTUP_MARK!r} and then waited for the code before `yield` in your lifespan.",
                got=server.log(),
            )
        if startup_deadline is None and now > boot_deadline:
            server.kill()
            fail(
                f"uvicorn did not reach your app's startup within {SERVER_BOOT_TIMEOUT_S:g} s "
                "(importing your module may be stuck, or the machine is very busy).",
                got=server.log() or "(uvicorn printed nothing)",
            )
        time.sleep(0.05)

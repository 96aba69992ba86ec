"""Library errors a learner of the chapter can meet, translated into what to do (issue 14,
item 3). Each rule recognises one error by its type name and text (never by importing the
library, which the graded code may not even use) and names the fix in the chapter's terms.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable

Rule = Callable[[BaseException], str | None]


def _jose_algorithm(exc: BaseException) -> str | None:
    # python-jose's decode without `algorithms=` lets the token's header pick one; for
    # `alg: none` or an unknown key type it then raises JWKError/JWSError, which are not
    # JWTError, so a plain `except JWTError` lets them through as a 500. (Chapter §2.)
    if type(exc).__name__ not in ("JWKError", "JWSError") or not type(exc).__module__.startswith("jose"):
        return None
    return (
        f"python-jose raised {type(exc).__name__} while decoding a token: call "
        "jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM]) so the token cannot choose its own "
        "algorithm, and catch jose's JOSEError (the parent of JWTError, JWKError and JWSError) so a "
        "bad token is refused with 401 instead of crashing with 500."
    )


def _send_after_close(exc: BaseException) -> str | None:
    text = str(exc)
    if not isinstance(exc, RuntimeError) or "once a close message has been sent" not in text:
        return None
    return (
        "Your code sent to a WebSocket that was already closed (a client that had left). Forget a "
        "connection when its client disconnects, and in a broadcast skip and drop any connection "
        "whose send fails, so one departed client never stops the others."
    )


def _disconnect_on_send(exc: BaseException) -> str | None:
    if type(exc).__name__ != "WebSocketDisconnect":
        return None
    names = {frame.name for frame in traceback.extract_tb(exc.__traceback__)}
    if not names & {"send", "send_json", "send_text", "send_bytes"}:
        return None
    return (
        "Sending to a client that has left raised WebSocketDisconnect. Catch it (with RuntimeError) "
        "around each send in a broadcast, drop that connection, and carry on with the others."
    )


def _sqlite_thread(exc: BaseException) -> str | None:
    if type(exc).__name__ != "ProgrammingError" or "same thread" not in str(exc):
        return None
    # Opening the connection per request does not help: a `def` dependency with `yield` runs its
    # set-up, the endpoint and its clean-up as three calls into the thread pool (issue p1thread).
    return (
        "A SQLite connection was used on another thread than the one that opened it: FastAPI runs "
        "`def` endpoints and `def` dependencies in worker threads, and a `yield` dependency's set-up, "
        "the endpoint and the clean-up after `yield` may each run on a different one. Open the "
        "connection with sqlite3.connect(..., check_same_thread=False)."
    )


def _validation_in_handler(exc: BaseException) -> str | None:
    name = type(exc).__name__
    if name == "ResponseValidationError":
        return (
            "What your endpoint returned does not fit its response model (or return type), so FastAPI "
            "answered 500: return exactly the fields the statement lists, with the right types."
        )
    if name != "ValidationError" or not type(exc).__module__.startswith("pydantic"):
        return None
    return (
        "Your code built a pydantic model from data that does not fit it, inside a request: that is a "
        "500, not a 422. Let FastAPI validate the request by declaring the model as a parameter, and "
        "build models only from data you have checked."
    )


def _no_yield(exc: BaseException) -> str | None:
    if not isinstance(exc, RuntimeError) or "didn't yield" not in str(exc):
        return None
    return (
        "A context manager (your lifespan, or a dependency with `yield`) ended without reaching "
        "`yield`: an error was caught and the function returned before it. Let the error propagate "
        "(re-raise it), or reach `yield` (chapter §8)."
    )


def _state_never_set(exc: BaseException) -> str | None:
    # Starlette's State raises AttributeError for a name never assigned: the lifespan's
    # startup did not set it (or set it on another object), so requests and shutdown fail.
    name = getattr(exc, "name", None)
    if not isinstance(exc, AttributeError) or "'State' object has no attribute" not in str(exc) or not name:
        return None
    return (
        f"app.state.{name} was never set: set it in your lifespan's startup code, before `yield` "
        f"(app.state.{name} = ...), so every request and the shutdown code find it (chapter §8)."
    )


def _dependency_without_depends(exc: BaseException) -> str | None:
    # `repo=get_user_repo` (no Depends) makes the default the function itself: FastAPI never
    # calls it, and the handler then uses a function as if it were what it returns.
    function = getattr(exc, "obj", None)
    if not isinstance(exc, AttributeError) or type(function).__name__ != "function":
        return None
    name = getattr(function, "__name__", "the dependency")
    qualified = getattr(function, "__qualname__", "")
    if ".<locals>." in qualified:  # made by a factory such as require_role("admin")
        name = qualified.rsplit(".<locals>.", 1)[0].rsplit(".", 1)[-1] + "(...)"
    return (
        f"Your code used the function {name} itself where it meant what {name} returns: a parameter "
        f"whose default is `{name}` receives the function. Declare a dependency with "
        f"`Depends({name})`, so FastAPI calls it for each request (chapter §1)."
    )


def _lifespan_without_yield(exc: BaseException) -> str | None:
    # @asynccontextmanager around an `async def` without `yield` wraps a plain coroutine,
    # which contextlib then fails to iterate: the learner never wrote (or removed) `yield`.
    if not isinstance(exc, TypeError) or "'coroutine' object is not an async iterator" not in str(exc):
        return None
    return (
        "Your lifespan (or an async dependency) has no `yield`: with @asynccontextmanager the function "
        "must yield exactly once, after the startup code and before the shutdown code (chapter §8)."
    )


def _stopped_by_us(exc: BaseException) -> str | None:
    if type(exc).__name__ != "HangStopped":
        return None
    return (
        "Your code was stopped here by the workbook: it stayed in this place while the check "
        "waited for an answer (an endless loop, or a wait for something that never comes)."
    )


RULES: tuple[Rule, ...] = (
    _stopped_by_us,
    _jose_algorithm,
    _send_after_close,
    _disconnect_on_send,
    _sqlite_thread,
    _validation_in_handler,
    _no_yield,
    _lifespan_without_yield,
    _state_never_set,
    _dependency_without_depends,
)


def advice(chain: Iterable[BaseException]) -> str | None:
    """What to do about the first exception in `chain` a rule recognises, or None."""
    for exc in chain:
        for rule in RULES:
            found = rule(exc)
            if found:
                return found
    return None

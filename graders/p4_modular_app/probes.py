"""Problem 4's probe menu: what the grader observes inside the app host (workbook/apphost.py).

Each probe runs beside the learner's code and answers plain data: the package's structure
(routers, routes, dependencies, each object named by its id so the grader can tell the same
object from a look-alike), the OpenAPI schema, the strings the app holds. It never judges;
the checks do, in the grading process. Three probes change the host for a check: one sets
dependency overrides, one moves python-jose's clock, one keeps the app's socket open across a
restart of the server.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import inspect
import os
import socket
import sys
import types
from datetime import datetime, timedelta
from typing import Any

# What probes of this menu replace in libraries, put back before the host's next
# check (workbook/apphost.py, `Host.recycle`).
PATCHED = ("jose.jwt.datetime", "jose.jwt._workbook_real_datetime")

ROUTER_NAMES = ("auth", "items", "admin")
DEPENDENCY_NAMES = ("get_db", "get_current_user", "get_current_admin", "pagination")
TEAPOT = 418
MAX_STRINGS = 20000
# Objects described in the current answer: kept alive so that no id is reused within it.
_kept: list[Any] = []
# What the spy override saw get_current_user return (test_routes_use_shared_get_db).
_caught_users: list[Any] = []


# --- structure -----------------------------------------------------------------------


def structure(host: Any) -> dict[str, Any]:
    """The package as data: {"main": module name, "builtin_paths": [...], "app_routes": [route],
    "routers": {name: {"error"|"type", "is_router", "prefix", "tags", "dependencies", "routes"}},
    "dependencies": {"error"|"callables": {name: callable or None}}}. A route is {"method",
    "path", "endpoint", "tags", "dependencies"}; a callable {"id", "name", "module"}; a
    dependency {"id", "call"}. Ids are stable within one answer only."""
    from fastapi import APIRouter

    _kept.clear()
    app = host.module.app
    routers: dict[str, Any] = {}
    for name in ROUTER_NAMES:
        found, error = _imported(f"app.routers.{name}")
        router = getattr(found, "router", None)
        if error is not None:
            routers[name] = {"error": error}
            continue
        is_router = isinstance(router, APIRouter)
        routers[name] = {
            "error": None,
            "type": type(router).__name__,
            "is_router": is_router,
            "prefix": (getattr(router, "prefix", "") or "") if is_router else "",
            "tags": [_tag_text(tag) for tag in getattr(router, "tags", None) or []] if is_router else [],
            "dependencies": [_dependency(dep) for dep in getattr(router, "dependencies", None) or []]
            if is_router
            else [],
            "routes": _served_by(router.routes) if is_router else [],
        }
    dependencies, error = _imported("app.dependencies")
    return {
        "main": host.module.__name__,
        "builtin_paths": [app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url],
        "app_routes": _served_by(app.routes),
        "routers": routers,
        "dependencies": {
            "error": error,
            "callables": {
                name: _callable(getattr(dependencies, name, None))
                if callable(getattr(dependencies, name, None))
                else None
                for name in DEPENDENCY_NAMES
            }
            if error is None
            else {},
        },
    }


def _imported(name: str) -> tuple[Any, str | None]:
    try:
        return importlib.import_module(name), None
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _served_by(routes: list[Any]) -> list[dict[str, Any]]:
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:  # older FastAPI: included routers were copied into app.routes
        contexts: Any = routes
    else:
        contexts = list(iter_route_contexts(routes))
    _kept.append(contexts)
    found = []
    for context in contexts:
        methods = getattr(context, "methods", None)
        path = getattr(context, "path", None)
        if not methods or not isinstance(path, str):
            continue
        for method in sorted(set(methods) - {"HEAD"}):
            found.append(
                {
                    "method": method,
                    "path": path,
                    "endpoint": _callable(getattr(context, "endpoint", None)),
                    "tags": [_tag_text(tag) for tag in getattr(context, "tags", None) or []],
                    "dependencies": [_dependency(dep) for dep in getattr(context, "dependencies", None) or []],
                }
            )
    return found


def _callable(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    _kept.append(value)
    return {
        "id": id(value),
        "name": str(getattr(value, "__name__", repr(value)))[:200],
        "module": str(getattr(value, "__module__", "?")),
    }


def _dependency(dep: Any) -> dict[str, Any]:
    _kept.append(dep)
    return {"id": id(dep), "call": _callable(getattr(dep, "dependency", None))}


def _tag_text(tag: Any) -> str:
    """A tag as it appears in /docs: an Enum tag by its value."""
    return str(getattr(tag, "value", tag))


def openapi(host: Any) -> Any:
    """The schema `app.openapi()` builds."""
    return host.module.app.openapi()


# --- dependency overrides ------------------------------------------------------------


def override(host: Any, replace: dict[str, str]) -> str | None:
    """Set app.dependency_overrides[app.dependencies.<name>] for each name in `replace`, with:
    "teapot" (answers 418), "spy" (returns what get_current_user gives, and keeps it) or
    "caught" (returns what the spy kept, None if nothing); "clear" as a name clears them all.
    Answers why app.dependencies cannot be imported, or None."""
    from fastapi import Depends, HTTPException

    dependencies, error = _imported("app.dependencies")
    if error is not None:
        return error
    overrides = host.module.app.dependency_overrides

    def teapot() -> None:
        raise HTTPException(status_code=TEAPOT, detail="the grader's override answered")

    def spy(user: Any = Depends(dependencies.get_current_user)) -> Any:
        _caught_users.append(user)
        return user

    def caught() -> Any:
        return _caught_users[0] if _caught_users else None

    kinds = {"teapot": teapot, "spy": spy, "caught": caught}
    for name, kind in replace.items():
        if name == "clear":
            overrides.clear()
            continue
        overrides[getattr(dependencies, name)] = kinds[kind]
    return None


# --- what the app holds --------------------------------------------------------------


def store_strings(host: Any, max_chars: int) -> list[str]:
    """Every string (bytes decoded) of at most `max_chars` characters reachable from get_db()
    and from the learner's module-level data, each once."""
    found: set[str] = set()
    for text in _store_strings(host.module):
        if len(text) <= max_chars:
            found.add(text)
            if len(found) >= MAX_STRINGS:
                break
    return sorted(found)


def _store_strings(learner: Any) -> Any:
    roots: list[Any] = []
    dependencies = sys.modules.get("app.dependencies")
    get_db = getattr(dependencies, "get_db", None)
    if callable(get_db):
        with contextlib.suppress(Exception):
            value = get_db()
            if inspect.isgenerator(value):
                gen, value = value, next(value)
                gen.close()
            roots.append(value)
    for name, module in list(sys.modules.items()):
        if (name == "app" or name.startswith("app.")) and module is not None:
            roots.extend(value for key, value in vars(module).items() if not key.startswith("__"))
    roots.append(getattr(getattr(learner.app, "state", None), "_state", {}))
    seen: set[int] = set()
    stack = [(root, 0) for root in roots]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (str, bytes)):
            yield value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            continue
        if depth > 6 or id(value) in seen or inspect.ismodule(value) or inspect.isclass(value) or callable(value):
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple, set, frozenset, collections.deque)):
            stack.extend((item, depth + 1) for item in value)
        elif type(value).__module__.split(".")[0] == "app" or isinstance(value, types.SimpleNamespace):
            stack.extend((item, depth + 1) for item in _attribute_values(value))


def _attribute_values(value: Any) -> list[Any]:
    """An object's attributes, whether kept in __dict__ or in __slots__ (dataclass(slots=True))."""
    own = getattr(value, "__dict__", None)
    found = list(own.values()) if isinstance(own, dict) else []
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names = [slots] if isinstance(slots, str) else list(slots) if isinstance(slots, (list, tuple)) else []
        for name in names:
            if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
                with contextlib.suppress(Exception):  # an unset slot raises AttributeError
                    found.append(getattr(value, name))
    return found


def module_strings(host: Any, max_chars: int) -> list[str]:
    """Strings of 1 to `max_chars` characters held by the app package: module globals and one
    level of their attributes, each once (where an app keeps its signing key)."""
    found: set[str] = set()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "app" or name.startswith("app.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, str):
                found.add(value)
            elif not callable(value) and hasattr(value, "__dict__"):
                with contextlib.suppress(Exception):
                    found.update(v for v in vars(value).values() if isinstance(v, str))
    return sorted(text for text in found if 0 < len(text) <= max_chars)[:MAX_STRINGS]


# --- time and restarts ---------------------------------------------------------------


def move_jose_clock(host: Any, seconds: float) -> None:
    """Make python-jose believe `seconds` have passed (0 puts its clock back), so tokens
    expire without waiting."""
    import jose.jwt

    real = getattr(jose.jwt, "_workbook_real_datetime", None) or jose.jwt.datetime
    jose.jwt._workbook_real_datetime = real  # type: ignore[attr-defined]
    if not seconds:
        jose.jwt.datetime = real
        return

    class Later(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return real.now(tz) + timedelta(seconds=seconds)

        @classmethod
        def utcnow(cls) -> datetime:
            return real.now().replace(tzinfo=None) + timedelta(seconds=seconds)

    jose.jwt.datetime = Later


def keep_listener(host: Any) -> None:
    """Give the host a copy of the app's listening socket: stopping uvicorn closes the one it
    served on, and the app is then served a second time on the copy."""
    host.listener = socket.socket(fileno=os.dup(host.listener.fileno()))

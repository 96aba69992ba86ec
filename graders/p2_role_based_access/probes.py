"""Probes of problem 2's app host: what the grader observes of the learner's module.

Each runs in the app host beside the learner's code, so it only reports what it saw, as
plain data: the grader (test_role_based_access.py) chooses the test data and judges.
A learner value that JSON cannot carry is described by its type and its `shown` text.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from typing import Any

from fastapi import Depends

MAX_STRINGS = 2000
MAX_SHOWN_CHARS = 300


def set_time_zone(host: Any, zone: str) -> None:
    """A setup probe (before the import): the process's local time zone becomes `zone`.

    Why tzset here: setting TZ alone does not reach the C library's cached zone, and naive
    local time (`datetime.now()`) must be read in this zone."""
    os.environ["TZ"] = zone
    if hasattr(time, "tzset"):  # POSIX only; elsewhere the machine's own zone stays
        time.tzset()


def secret_key(host: Any) -> dict[str, Any]:
    """SECRET_KEY as observed: {"type", "value" (a str key, else None), "shown"}."""
    return observed(getattr(host.module, "SECRET_KEY", None))


def users_db(host: Any, names: list[str]) -> dict[str, Any]:
    """users_db as observed: {"type", "records": {name: the record observed, with "fields":
    {key: observed value} when it is a dict (else None); None when absent}, "strings": every
    string among its values, nested in dicts, lists, tuples and sets}."""
    db = getattr(host.module, "users_db", None)
    if not isinstance(db, dict):
        return {"type": type(db).__name__, "records": {}, "strings": []}
    records = {name: observed_record(db[name]) if name in db else None for name in names}
    return {"type": "dict", "records": records, "strings": strings_in(db)[:MAX_STRINGS]}


def observed_record(record: Any) -> dict[str, Any]:
    fields = {str(key): observed(value) for key, value in record.items()} if isinstance(record, dict) else None
    return {**observed(record), "fields": fields}


def pwd_context(host: Any) -> dict[str, Any]:
    """Whether pwd_context has a CryptContext's verify and identify, and its repr."""
    context = getattr(host.module, "pwd_context", None)
    return {"usable": hasattr(context, "verify") and hasattr(context, "identify"), "repr": repr(context)[:300]}


def verify_password(host: Any, password: str, hashed: str) -> dict[str, Any]:
    """What pwd_context.verify(password, hashed) returned, observed."""
    return observed(host.module.pwd_context.verify(password, hashed))


def create_access_token(host: Any, claims: dict[str, Any], minutes: int | None) -> dict[str, Any]:
    """create_access_token(claims) (or with timedelta(minutes=minutes)): {"token": observed
    result, "given": observed dict afterwards, to see whether the call changed it}."""
    given = dict(claims)
    create = host.module.create_access_token
    token = create(given) if minutes is None else create(given, timedelta(minutes=minutes))
    return {"token": observed(token), "given": observed(given)}


def require_role(host: Any, role: str) -> dict[str, Any]:
    """What require_role(role) returned: {"callable", "repr"}; what it raised comes back raised."""
    dependency = host.module.require_role(role)
    return {"callable": callable(dependency), "repr": repr(dependency)[:MAX_SHOWN_CHARS]}


def protect_new_routes(host: Any, paths: dict[str, str]) -> dict[str, Any]:
    """For each role, a GET route at paths[role] answering {"ok": true}, declared with
    Depends(require_role(role)); stops at the first role whose require_role returned no
    function. Returns {role: {"callable", "repr"}} for the roles tried."""
    seen: dict[str, Any] = {}
    for role, path in paths.items():
        dependency = host.module.require_role(role)
        seen[role] = {"callable": callable(dependency), "repr": repr(dependency)[:MAX_SHOWN_CHARS]}
        if not callable(dependency):
            break
        host.module.app.add_api_route(path, _ok, methods=["GET"], dependencies=[Depends(dependency)])
    return seen


def _ok() -> dict[str, bool]:
    return {"ok": True}


def observed(value: Any) -> dict[str, Any]:
    """A learner value as data: {"type": its type's name, "json": whether JSON carries it
    unchanged (str, number, bool, None, dict, list), "value": the value if so, else None,
    "shown": the value as grading.show would write it}."""
    try:
        text = json.dumps(value, ensure_ascii=False)
        carried = (
            json.loads(text) == value if isinstance(value, (str, int, float, bool, dict, list, type(None))) else False
        )
    except (TypeError, ValueError, RecursionError):
        text, carried = repr(value), False
    shown = text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."
    return {"type": type(value).__name__, "json": carried, "value": value if carried else None, "shown": shown}


def strings_in(value: Any, depth: int = 0) -> list[str]:
    if isinstance(value, str):
        return [value]
    if depth > 20:
        return []
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings_in(item, depth + 1)]
    if isinstance(value, (list, tuple, set)):
        return [text for item in value for text in strings_in(item, depth + 1)]
    return []

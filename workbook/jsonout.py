"""The one JSON writer every JSON the workbook produces goes through: the `check --format`
reports (json, exercism, gradescope), a class run's reports and run.json, and the progress
file. Dataclasses become objects in field order, enums their string value, paths text;
keys keep the order they were built in unless `sort_keys` (the progress file sorts them).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import PurePath
from typing import Any

INDENT = 2


def to_data(value: Any) -> Any:
    """`value` as plain JSON values: dict, list, str, int, float, bool, None. Dataclasses
    give their fields in declaration order (a `to_json()` method, when they have one, says
    how instead); enums their value; paths their text; tuples and sets lists."""
    if hasattr(value, "to_json") and not isinstance(value, type):
        return to_data(value.to_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {str(key): to_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_data(item) for item in value]
    return value


def to_json(value: Any, *, sort_keys: bool = False, ascii_only: bool = False, indent: int | None = INDENT) -> str:
    """`value` as JSON text, indented by INDENT (None: one line). Text stays readable UTF-8
    unless `ascii_only` (then every non-ASCII character is a \\u escape). Raises TypeError
    for a value JSON has no form for, ValueError for a string no UTF-8 writer accepts later."""
    return json.dumps(to_data(value), indent=indent, sort_keys=sort_keys, ensure_ascii=ascii_only)

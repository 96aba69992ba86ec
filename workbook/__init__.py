"""The FastAPI Advanced workbook: manifest, grading engine and the helpers graders use.

The commands' work is a library (workbook/api.py): `workbook.check(...)`, `grade`, `merge`,
`watch`, `reset` and `hint` are re-exported here, loaded on first use so that the grading
child, which imports `workbook.manifest`, does not pay for them. `doctor` is
`workbook.api.doctor`: `workbook.doctor` is the module of its checks.
"""

from typing import Any

__version__ = "0.1.0"

_API = ("check", "plan_check", "run_check", "plan_grade", "grade", "merge", "watch", "reset", "hint")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from workbook import api

        return getattr(api, name)
    raise AttributeError(f"module 'workbook' has no attribute {name!r}")

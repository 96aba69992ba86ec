"""The ASGI app `workbook run` serves: the learner's app, plus the problem folder's HTML
pages (problem 3's chat page) at `/<name>.html` on the same port.

Serving the page over HTTP from the app's own origin (issue 14, item 7) lets it reach the
WebSocket at whatever port `run` picked (`location.host`) instead of a `file://` page
guessing port 8000. Everything else, lifespan included, goes to the learner's app
untouched, so what the learner tries by hand is what the graders test.

uvicorn imports this module as `workbook.serve:app` in its worker process (after every
reload), so the problem is named by environment variables that the reloader hands down.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

MODULE_ENV = "WORKBOOK_RUN_MODULE"
FOLDER_ENV = "WORKBOOK_RUN_FOLDER"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def page_paths(folder: Path) -> dict[str, Path]:
    """URL path -> file for each HTML page directly in `folder` (e.g. "/chat.html")."""
    return {f"/{page.name}": page for page in sorted(folder.glob("*.html"))}


class WithPages:
    """An ASGI app: GET/HEAD of a page path answers the page, read afresh on each request
    so an edited page shows on reload; every other request goes to `inner`."""

    def __init__(self, inner: ASGIApp, pages: dict[str, Path]) -> None:
        self.inner = inner
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = self.pages.get(scope.get("path", "")) if scope["type"] == "http" else None
        if page is None or scope.get("method") not in ("GET", "HEAD"):
            await self.inner(scope, receive, send)
            return
        try:
            body = page.read_bytes()
        except OSError:  # deleted or renamed since the server started: the app answers
            await self.inner(scope, receive, send)
            return
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def build() -> WithPages:
    """The learner's app (module $WORKBOOK_RUN_MODULE, importable because uvicorn's
    --app-dir put its folder on sys.path) with the pages of the folder $WORKBOOK_RUN_FOLDER."""
    folder = Path(os.environ[FOLDER_ENV])
    module = importlib.import_module(os.environ[MODULE_ENV])
    inner = getattr(module, "app", None)
    if inner is None:
        # Not an AttributeError: uvicorn would blame "workbook.serve" for it.
        raise RuntimeError(f"{module.__file__} defines no `app`; keep the line `app = FastAPI(...)`.")
    return WithPages(inner, page_paths(folder))


def __getattr__(name: str) -> Any:
    # Built on first access, not at import: importing this module (a test, a linter) must
    # not import a learner's app.
    if name == "app":
        try:
            return build()
        except AttributeError as exc:
            # uvicorn reads any AttributeError here as "workbook.serve has no app".
            raise RuntimeError(f"importing your app raised AttributeError: {exc}") from exc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Problem 6's probe menu: what the trusted grader may observe or arrange inside an app host
(workbook/apphost.py). Each probe answers plain data; the grader chose the test data and judges.

Setup probes (`spy_upload_reads`, `keep_uploads_log`) run before the learner's module is
imported; the others after. Module-level state lives as long as the host.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import Request

# What probes of this menu replace in libraries, put back before the host's next
# check (workbook/apphost.py, `Host.recycle`).
PATCHED = ("starlette.formparsers.SpooledTemporaryFile",)

MAX_ENTRIES = 300
MAX_HASHED_BYTES = 4 << 20
MAX_TEXT_BYTES = 1 << 20
SETTLE_S = 3.0

upload_reads: list[int | None] = []  # the size each read() of a spooled upload asked for
uploads_records: list[dict[str, Any]] = []  # what was logged on logging.getLogger("uploads")
audit_events: list[str] = []  # "audit started"/"audit finished"/"response sent", in order
answer_received = threading.Event()
replaced: dict[str, Any] = {}  # the learner's own functions the grader replaced
request_ids: list[str] = []  # the ids the grader's new_request_id() handed out


# --- spies set up before the import -----------------------------------------------------


def spy_upload_reads(host: Any) -> None:
    """Starlette's multipart parser keeps each uploaded file in a SpooledTemporaryFile: a
    subclass remembers the size every read() asks for, however the learner's code reads."""
    import starlette.formparsers

    class SpiedSpooledFile(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
        def read(self, *args: Any) -> Any:
            size = args[0] if args else None
            upload_reads.append(size if isinstance(size, int) else None)
            return super().read(*args)

    starlette.formparsers.SpooledTemporaryFile = SpiedSpooledFile  # type: ignore[attr-defined,misc]


def keep_uploads_log(host: Any) -> None:
    """Keep every record logged on logging.getLogger("uploads")."""

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a learner's format arguments may not fit
                message = str(record.msg)
            uploads_records.append({"level": record.levelno, "name": record.levelname, "message": message[:300]})

    logging.getLogger("uploads").addHandler(Keep(level=logging.DEBUG))


# --- observations -----------------------------------------------------------------------


def settle(host: Any, wait: float = SETTLE_S) -> int:
    """Wait until no request is in the app (a request's background tasks run inside it, after
    the answer was sent), at most `wait` seconds; how many are still in it."""
    server = getattr(host, "server", None)
    tasks = getattr(getattr(server, "server_state", None), "tasks", None)
    if tasks is None:
        return 0
    deadline = time.monotonic() + wait
    while tasks and time.monotonic() < deadline:
        time.sleep(0.002)
    return len(tasks)


def tree(host: Any, root: str) -> dict[str, Any]:
    """Once the app is idle: every entry under `root` (relative to the host's working folder)
    as {"path" (relative to root, posix), "dir", "size", "sha256"}, at most MAX_ENTRIES."""
    settle(host)
    base = Path(root)
    found = []
    if base.is_dir():
        for path in sorted(base.rglob("*"))[:MAX_ENTRIES]:
            entry: dict[str, Any] = {"path": path.relative_to(base).as_posix(), "dir": path.is_dir()}
            if path.is_file() and not path.is_symlink():
                entry["size"] = path.stat().st_size
                if entry["size"] <= MAX_HASHED_BYTES:
                    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            found.append(entry)
    return {"entries": found}


def text(host: Any, path: str) -> str | None:
    """Once the app is idle: the text of the file at `path` (None when there is none)."""
    settle(host)
    file = Path(path)
    if not file.is_file():
        return None
    with open(file, "rb") as opened:
        return opened.read(MAX_TEXT_BYTES).decode("utf-8", "replace")


def read_sizes(host: Any) -> list[int | None]:
    return list(upload_reads)


def uploads_log(host: Any) -> list[dict[str, Any]]:
    settle(host)
    return list(uploads_records)


def events(host: Any) -> list[str]:
    """Once the app is idle: the order of the slow audit's start, end and the answer's arrival."""
    settle(host)
    return list(audit_events)


# --- arrangements ---------------------------------------------------------------------


def replace_audit(host: Any, mode: str, hold: float = 1.0, text: str = "") -> None:
    """Replace the module's append_audit_line: "slow" waits until the app has sent an answer
    (at most `hold` s, see watch_answers) before writing; "fail" raises OSError(28, `text`); "real"
    puts the learner's own back."""
    module = host.module
    real = replaced.setdefault("append_audit_line", module.append_audit_line)

    def slow(*args: Any, **kwargs: Any) -> Any:
        audit_events.append("audit started")
        answer_received.wait(hold)
        result = real(*args, **kwargs)
        audit_events.append("audit finished")
        return result

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, text)

    module.append_audit_line = {"slow": slow, "fail": failing, "real": real}[mode]


def watch_answers(host: Any) -> str:
    """Before serving: a wrapper of the module's app that notes "response sent" in the events
    the moment the app sends the end of an answer (then the slow audit may go on); the
    attribute path to serve it by."""
    app = host.module.app

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        async def spy(message: Any) -> None:
            await send(message)
            if message.get("type") == "http.response.body" and not message.get("more_body"):
                audit_events.append("response sent")
                answer_received.set()

        await app(scope, receive, spy)

    host.module.workbook_watched_app = watched
    return "workbook_watched_app"


def slow_request_ids(host: Any, seconds: float, ids: list[str]) -> None:
    """Replace the module's new_request_id with one that takes `seconds` and hands out `ids`
    (chosen by the grader) in order, then fresh uuid4s."""
    pending = list(ids)

    def slow_new_request_id() -> str:
        time.sleep(seconds)
        made = pending.pop(0) if pending else str(uuid.uuid4())
        request_ids.append(made)
        return made

    host.module.new_request_id = slow_new_request_id


def request_ids_made(host: Any) -> list[str]:
    return list(request_ids)


def change_settings(host: Any, env: dict[str, str], folders: list[str]) -> None:
    """After the import, before startup: set `env` and create `folders`."""
    os.environ.update(env)
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)


def add_grader_routes(host: Any, prefix: str) -> None:
    """Two routes on the learner's app: `prefix`/boom raises, `prefix`/state answers
    request.state.request_id."""

    def explode() -> None:
        raise RuntimeError("the grader's endpoint fails on purpose")

    def state_id(request: Request) -> dict[str, Any]:
        return {"request_id": getattr(request.state, "request_id", None)}

    app = host.module.app
    app.add_api_route(f"{prefix}/boom", explode, methods=["GET"])
    app.add_api_route(f"{prefix}/state", state_id, methods=["GET"])

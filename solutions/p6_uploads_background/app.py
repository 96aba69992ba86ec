"""Problem 6 — File uploads, background tasks and middleware order (reference solution).

Uploads are checked by declared type and by their first bytes, read in chunks under a size
limit, and stored under an id-prefixed clean name; an audit line is written after the
response; two middlewares give every response a request id and a processing time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks, FastAPI, File, HTTPException, Request, Response, UploadFile, status
from fastapi.responses import FileResponse, JSONResponse

MAX_UPLOAD_BYTES = 1024 * 1024  # Don't change this line
CHUNK_BYTES = 64 * 1024  # Don't change this line
# The first bytes of each allowed type (its "magic number").
MAGIC_BYTES: dict[str, bytes] = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
    "application/pdf": b"%PDF-",
}  # Don't change this line

logger = logging.getLogger("uploads")  # Don't change this line


def append_audit_line(path: Path, record: dict[str, Any]) -> None:  # Don't change this line
    """Append `record` as one JSON line to the audit log at `path`. The grader replaces this
    function to make it slow or make it fail: call it by this name."""
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


def new_request_id() -> str:  # Don't change this line
    """A fresh request id (a uuid4). The grader replaces this function to make it slow:
    call it by this name whenever a request needs a new id."""
    return str(uuid.uuid4())


class UploadRefused(Exception):
    """One uploaded file breaks a rule; `status_code` is the answer it gets."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Why at startup: the environment in force when the server starts decides, not the one at import.
    app.state.upload_dir = Path(os.environ.get("UPLOAD_DIR", "uploads"))
    app.state.audit_log = Path(os.environ.get("AUDIT_LOG", "audit.log"))
    app.state.upload_dir.mkdir(parents=True, exist_ok=True)
    yield


app = FastAPI(title="Problem 6 — Uploads, background tasks and middleware", lifespan=lifespan)  # Don't change this line


@app.middleware("http")
async def request_id_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    # Why validate: a client-chosen id ends up in logs, so only a real UUID is echoed.
    request.state.request_id = valid_request_id(request.headers.get("x-request-id"))
    try:
        response = await call_next(request)
    except Exception:
        # Why catch here: an unhandled error would become a 500 outside every middleware, without headers.
        logger.exception("request %s failed", request.state.request_id)
        response = JSONResponse({"detail": "Internal Server Error"}, status_code=500)
    response.headers["X-Request-Id"] = request.state.request_id
    return response


@app.middleware("http")
async def timing_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    # Why declared last: the last declared middleware is the outermost, so its time includes the request id's work.
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Process-Time"] = f"{time.perf_counter() - started:.6f}"
    return response


def valid_request_id(sent: str | None) -> str:
    # Why uuid.UUID: it accepts exactly the spellings of a UUID and nothing else.
    if sent:
        with suppress(ValueError):
            uuid.UUID(sent)
            return sent
    return new_request_id()


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def clean_filename(name: str | None) -> str:
    # Why backslashes too: a Windows client's path is still a path on a Linux server.
    without_controls = CONTROL_CHARACTERS.sub("", name or "")
    last_part = without_controls.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if last_part in ("", ".", ".."):
        raise UploadRefused(status.HTTP_400_BAD_REQUEST, "the file name is empty once its directory parts are removed")
    return last_part


def check_type(declared: str | None, first_bytes: bytes) -> None:
    # Why both: the declared type is the client's claim, the magic bytes are the evidence.
    magic = MAGIC_BYTES.get(declared or "")
    if magic is None:
        raise UploadRefused(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"the type {declared!r} is not allowed")
    if not first_bytes.startswith(magic):
        raise UploadRefused(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"the content is not {declared}")


async def receive_upload(upload: UploadFile, folder: Path) -> dict[str, Any]:
    """Check `upload` and write it to a temporary file in `folder`; the record plus its
    temporary path. Raises UploadRefused (nothing left behind) when a rule is broken."""
    filename = clean_filename(upload.filename)
    digest = hashlib.sha256()
    size = 0
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as out:
            # Why chunks: memory stays at one chunk whatever the client sends.
            while chunk := await upload.read(CHUNK_BYTES):
                if size == 0:
                    check_type(upload.content_type, chunk)
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise UploadRefused(status.HTTP_413_CONTENT_TOO_LARGE, "the file is larger than 1 MiB")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            check_type(upload.content_type, b"")
    except BaseException:
        # Why unlink here: a refused or broken upload must leave no partial file.
        Path(temporary).unlink(missing_ok=True)
        raise
    record = {
        "id": uuid.uuid4().hex,
        "filename": filename,
        "size_bytes": size,
        "content_type": upload.content_type,
        "sha256": digest.hexdigest(),
    }
    return {"record": record, "temporary": Path(temporary)}


def keep(received: dict[str, Any], folder: Path) -> dict[str, Any]:
    # Why the id prefix: two uploads with the same name never overwrite each other.
    record = received["record"]
    os.replace(received["temporary"], folder / f"{record['id']}_{record['filename']}")
    return record


def audit_upload(path: Path, record: dict[str, Any], request_id: str) -> None:
    # Why catch everything: a failing audit must not break the server, and the next upload must still be audited.
    try:
        event = {
            "event": "uploaded",
            "id": record["id"],
            "sha256": record["sha256"],
            "at": datetime.now(timezone.utc).isoformat(),
            "request_id": request_id,
        }
        append_audit_line(path, event)
    except Exception:
        logger.exception("could not write the audit line for upload %s", record["id"])


def refused(error: UploadRefused, filename: str | None) -> HTTPException:
    return HTTPException(error.status_code, detail={"filename": filename, "error": error.reason})


@app.post("/files", status_code=status.HTTP_201_CREATED)
async def upload_file(
    request: Request, background_tasks: BackgroundTasks, file: UploadFile = File(...)
) -> dict[str, Any]:
    folder = request.app.state.upload_dir
    try:
        received = await receive_upload(file, folder)
    except UploadRefused as error:
        raise refused(error, file.filename) from None
    record = keep(received, folder)
    # Why a background task: the client gets its answer without waiting for the audit log.
    background_tasks.add_task(audit_upload, request.app.state.audit_log, record, request.state.request_id)
    return record


@app.post("/files/batch", status_code=status.HTTP_201_CREATED)
async def upload_batch(
    request: Request, background_tasks: BackgroundTasks, files: list[UploadFile] = File(...)
) -> dict[str, Any]:
    folder = request.app.state.upload_dir
    received: list[dict[str, Any]] = []
    try:
        for upload in files:
            try:
                received.append(await receive_upload(upload, folder))
            except UploadRefused as error:
                raise refused(error, upload.filename) from None
    except BaseException:
        # Why receive all before keeping any: one refused file means nothing is stored.
        for item in received:
            item["temporary"].unlink(missing_ok=True)
        raise
    records = [keep(item, folder) for item in received]
    for record in records:
        background_tasks.add_task(audit_upload, request.app.state.audit_log, record, request.state.request_id)
    return {"files": records}


ID_PATTERN = re.compile(r"[0-9a-f]{32}")


@app.get("/files/{file_id}")
def download_file(file_id: str, request: Request) -> FileResponse:
    # Why the pattern first: an id like "*" or ".." must never reach the file system.
    if not ID_PATTERN.fullmatch(file_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
    matches = sorted(request.app.state.upload_dir.glob(f"{file_id}_*"))
    if not matches:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
    path = matches[0]
    with open(path, "rb") as stored:
        first_bytes = stored.read(16)
    content_type = next((kind for kind, magic in MAGIC_BYTES.items() if first_bytes.startswith(magic)), None)
    # Why FileResponse: it streams the file from disk instead of loading it whole.
    return FileResponse(path, media_type=content_type or "application/octet-stream")

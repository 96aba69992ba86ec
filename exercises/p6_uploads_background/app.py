"""Problem 6 — File uploads, background tasks and middleware order (a bonus problem).

An upload service: files are checked by declared type and by their first bytes, read in
chunks under a size limit and stored under an id-prefixed clean name; an audit line is
written after the response; two middlewares give every response a request id and a
processing time. Read README.md in this folder for the exact contract, then run
`workbook check 6` after each change.
"""

from __future__ import annotations

import hashlib  # noqa: F401 - sha256 of the upload
import json
import logging
import os  # noqa: F401 - os.environ, os.replace
import re  # noqa: F401
import tempfile  # noqa: F401 - a temporary file in UPLOAD_DIR
import time  # noqa: F401 - time.perf_counter
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone  # noqa: F401
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks, FastAPI, File, HTTPException, Request, Response, UploadFile, status  # noqa: F401
from fastapi.responses import FileResponse, JSONResponse  # noqa: F401

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


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # TODO: read UPLOAD_DIR (default "uploads") and AUDIT_LOG (default "audit.log") from the
    #       environment here, at startup; keep them on app.state and create the upload folder
    #       (with any missing parents).
    yield


app = FastAPI(title="Problem 6 — Uploads, background tasks and middleware", lifespan=lifespan)  # Don't change this line


@app.middleware("http")
async def request_id_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    # TODO: take the request's X-Request-Id if it is a valid UUID (uuid.UUID accepts it), else
    #       new_request_id(); put it on request.state.request_id and on the response's
    #       X-Request-Id header -- also when the endpoint raises (then answer the 500 yourself).
    return await call_next(request)


@app.middleware("http")
async def timing_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    # TODO: add X-Process-Time (seconds, time.perf_counter). This middleware must wrap the
    #       request-id one: which of the two must be declared last for that?
    return await call_next(request)


def clean_filename(name: str | None) -> str:
    # TODO: remove control characters (U+0000-U+001F, U+007F), treat "\\" like "/", keep what
    #       follows the last "/"; an empty result, "." or ".." is refused with 400.
    raise NotImplementedError("clean_filename() is not written yet")


@app.post("/files")
async def upload_file(request: Request, background_tasks: BackgroundTasks, file: UploadFile = File(...)) -> dict:
    # TODO: check the declared type and the magic bytes (415), read CHUNK_BYTES at a time and stop
    #       past MAX_UPLOAD_BYTES (413, no partial file left), store as UPLOAD_DIR/<id>_<clean name>,
    #       answer 201 with {"id", "filename", "size_bytes", "content_type", "sha256"}, and append
    #       the audit line in a background task that calls append_audit_line and logs its failures.
    raise NotImplementedError("POST /files is not written yet")


@app.post("/files/batch")
async def upload_batch(
    request: Request, background_tasks: BackgroundTasks, files: list[UploadFile] = File(...)
) -> dict:
    # TODO: all or nothing -- if any file is refused, store none of them and answer that file's
    #       status with {"detail": {"filename": <name as sent>, "error": <why>}}; else 201 with
    #       {"files": [records, in the order sent]} and one audit line per file.
    raise NotImplementedError("POST /files/batch is not written yet")


@app.get("/files/{file_id}")
def download_file(file_id: str, request: Request) -> Response:
    # TODO: stream the stored file back with its content type (FileResponse); an id the app
    #       never gave out gets 404.
    raise NotImplementedError("GET /files/{file_id} is not written yet")

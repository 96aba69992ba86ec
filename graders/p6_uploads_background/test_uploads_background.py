"""Grader for problem 6 — file uploads, background tasks and middleware order.

Each check imports the app afresh, in an empty working directory, with UPLOAD_DIR and
AUDIT_LOG pointing into a folder of their own, and starts it with `with TestClient(app)`.
Uploads are real multipart bodies built by httpx, or by hand when a file name must carry
bytes httpx would escape (NUL, control characters). Oversized uploads are streamed from a
generator through httpx's ASGI transport, so the grader never holds them whole. Starlette's
spooled upload file is wrapped before the import, so the checks see how much each read asks
for. The statement names two module-level functions the grader replaces: append_audit_line
(made slow, or made to fail) and new_request_id (made slow, to see which middleware is outside).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from workbook.grading import (
    client,
    clip,
    expect,
    fail,
    json_body,
    learner_frames,
    note_server_error,
    response_text,
    rng,
    show,
    within,
)
from workbook.words import counted

MAX_BYTES = 1024 * 1024
MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff\xe0", "application/pdf": b"%PDF-1.7\n"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "application/pdf": "pdf"}
RECORD_KEYS = ["id", "filename", "size_bytes", "content_type", "sha256"]
AUDIT_KEYS = ["event", "id", "sha256", "at", "request_id"]
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
WORDS = ["holiday", "scan", "invoice", "avatar", "receipt", "diagram", "poster", "report", "photo", "draft"]
SLOW_S = 0.15  # how slow the grader makes new_request_id()
HOLD_S = 1.0  # the longest the grader's append_audit_line waits for the answer to be sent
WAIT_S = 4.0  # the longest the grader waits for one streamed request


# --- the world the app runs in ----------------------------------------------------------


class Reads:
    """Every read() asked of an uploaded file's spooled copy: the size each one asked for."""

    def __init__(self) -> None:
        self.sizes: list[int | None] = []

    def unbounded(self) -> list[int | None]:
        return [size for size in self.sizes if size is None or size < 0 or size > MAX_BYTES + 1]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Starlette's multipart parser stores each uploaded file in a SpooledTemporaryFile;
    a subclass remembers the size of every read, whichever way the learner's code reads."""
    import starlette.formparsers

    log = Reads()

    class SpiedSpooledFile(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
        def read(self, *args: Any) -> Any:
            size = args[0] if args else None
            log.sizes.append(size if isinstance(size, int) else None)
            return super().read(*args)

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", SpiedSpooledFile)
    return log


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Path]:
    """UPLOAD_DIR two levels down a folder of its own (so `../` would land in a watched
    folder), AUDIT_LOG beside it; both with random names."""
    area = tmp_path / f"area-{rng.randrange(10**6)}"
    values = {
        "area": area,
        "uploads": area / f"store-{rng.randrange(10**4)}" / "files",
        "audit": area / f"audit-{rng.randrange(10**4)}.log",
    }
    area.mkdir()
    monkeypatch.setenv("UPLOAD_DIR", str(values["uploads"]))
    monkeypatch.setenv("AUDIT_LOG", str(values["audit"]))
    return values


@pytest.fixture
def before_import(reads: Reads, paths: dict[str, Path]) -> None:
    """Wrap the spooled upload file and set UPLOAD_DIR and AUDIT_LOG before the app is imported."""


@contextlib.contextmanager
def running(app: Any, **kwargs: Any) -> Iterator[TestClient]:
    """A TestClient whose startup has run; shutdown on exit."""
    api = client(app, **kwargs)
    try:
        api.__enter__()
    except Exception as exc:  # noqa: BLE001 - the learner's startup may raise anything
        fail(
            f"startup raised {type(exc).__name__}. Starting the app should work.",
            expected="startup to finish",
            got=f"{type(exc).__name__}: {exc}\n{learner_frames(exc)}".rstrip(),
        )
    try:
        yield api
    finally:
        with contextlib.suppress(Exception):
            api.__exit__(None, None, None)


@pytest.fixture
def api(learner: ModuleType) -> Iterator[TestClient]:
    with running(learner.app) as started:
        yield started


@pytest.fixture
def uploads_log() -> Iterator[list[logging.LogRecord]]:
    """Every record logged on logging.getLogger("uploads") during the check."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger("uploads")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# --- test data --------------------------------------------------------------------------


def random_file(kind: str | None = None, size: int | None = None) -> tuple[str, str, bytes]:
    """(name, content type, bytes): a random file of an allowed type, starting with its magic bytes."""
    kind = kind or rng.choice(sorted(MAGIC))
    size = size if size is not None else rng.randrange(200, 4000)
    data = MAGIC[kind] + rng.randbytes(size - len(MAGIC[kind]))
    return f"{rng.choice(WORDS)}-{rng.randrange(10**5)}.{EXTENSIONS[kind]}", kind, data


def describe_upload(name: str | bytes, kind: str, data: bytes, path: str = "/files") -> str:
    shown = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    return f"POST {path} with file {show(shown)} ({kind}, {len(data)} bytes starting {data[:8]!r})"


def upload(api: Any, name: str, kind: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
    return api.post("/files", files={"file": (name, data, kind)}, headers=headers)


BOUNDARY = "workbook-grader-boundary-7f3a9c"


def multipart_head(name: bytes, kind: str, field: str = "file") -> bytes:
    """The start of one multipart part, the file name exactly as given (httpx would escape
    NUL and control characters)."""
    return (
        f"--{BOUNDARY}\r\n".encode()
        + f'Content-Disposition: form-data; name="{field}"; filename="'.encode()
        + name
        + f'"\r\nContent-Type: {kind}\r\n\r\n'.encode()
    )


def raw_upload(api: Any, name: bytes, kind: str, data: bytes) -> Any:
    body = multipart_head(name, kind) + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return api.post("/files", content=body, headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})


def record_of(response: Any, sent: str) -> dict[str, Any]:
    """The JSON record of a 201 answer, its shape checked."""
    expect_answer(response, 201, "A valid upload should be stored and answered with 201 Created.", sent)
    return expect_record_shape(json_body(response), sent)


def expect_record_shape(body: Any, sent: str) -> dict[str, Any]:
    """`body` is a record: exactly the five keys, and an id of 32 lowercase hex digits."""
    keys = sorted(body) if isinstance(body, dict) else None
    expect(
        keys == sorted(RECORD_KEYS),
        f"keys {show(keys)}, expected {show(RECORD_KEYS)}. An upload's record has exactly these keys.",
        sent=sent,
        expected=show(RECORD_KEYS),
        got=show(body),
    )
    file_id = body["id"]
    expect(
        isinstance(file_id, str) and bool(ID_PATTERN.fullmatch(file_id)),
        f"id {show(file_id)} is not 32 lowercase hex digits (uuid.uuid4().hex).",
        sent=sent,
        expected="an id like 3f2b8c0e9d6a4b1c8e7f6a5b4c3d2e1f",
        got=show(file_id),
    )
    return body


def expect_answer(response: Any, status: int, what: str, sent: str) -> None:
    if response.status_code != status:
        fail(
            f"status {response.status_code}, expected {status}. {what}",
            sent=sent,
            expected=f"status {status}",
            got=visible(response_text(response)),
        )


def visible(text: str) -> str:
    """`text` from the learner's app with control characters (terminal escapes too) spelled out."""
    return CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def expect_record(body: dict[str, Any], name: str, kind: str, data: bytes, sent: str) -> None:
    expected = {
        "id": body["id"],
        "filename": name,
        "size_bytes": len(data),
        "content_type": kind,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if body != expected:
        wrong = [key for key in RECORD_KEYS if body.get(key) != expected[key]]
        fail(
            f"{', '.join(wrong)} differ. The record should describe the file as it was stored.",
            sent=sent,
            expected=show(expected),
            got=show(body),
        )


def entries(folder: Path) -> list[str]:
    """Every name in `folder`, hidden ones too ([] when it does not exist)."""
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def files_under(area: Path, skip: Path, audit: Path) -> list[str]:
    """Files under `area` other than the audit log and those in `skip` (UPLOAD_DIR)."""
    found = (p for p in area.rglob("*") if p.is_file() and p != audit and skip not in p.parents)
    return sorted(str(p.relative_to(area)) for p in found)


def expect_nothing_stored(paths: dict[str, Path], sent: str, why: str) -> None:
    left = entries(paths["uploads"])
    expect(
        not left,
        f"{counted(len(left), 'file')} left in UPLOAD_DIR. {why}",
        sent=sent,
        expected="UPLOAD_DIR empty",
        got=show(left[:5]),
    )


def expect_stored(paths: dict[str, Path], record: dict[str, Any], data: bytes, sent: str) -> None:
    path = paths["uploads"] / f"{record['id']}_{record['filename']}"
    expect(
        path.is_file() and path.read_bytes() == data,
        f"UPLOAD_DIR has no file {show(path.name)} with the bytes sent. The upload is stored as "
        "UPLOAD_DIR/<id>_<clean name>, exactly as sent.",
        sent=sent,
        expected=f"a file {show(path.name)} of {len(data)} bytes",
        got=f"UPLOAD_DIR holds {show(entries(paths['uploads'])[:5])}"
        + (f"; that file has {path.stat().st_size} bytes" if path.is_file() else ""),
    )


def audit_lines(path: Path) -> list[Any]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            fail("The audit log should hold one JSON object per line.", expected="JSON lines", got=show(line))
    return parsed


def random_request_id() -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# --- streaming through httpx's ASGI transport -------------------------------------------


def stream_post(
    api: Any,
    path: str,
    head: bytes,
    body_size: int,
    tail: bytes,
    events: list[str] | None = None,
    answered: threading.Event | None = None,
) -> Any:
    """POST a multipart body generated chunk by chunk (head, `body_size` random bytes, tail)
    to the started app, on its own event loop. `events` gets "response sent" the moment the
    app sends the end of its answer."""
    import httpx

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        left = body_size
        while left > 0:
            piece = min(left, 64 * 1024)
            left -= piece
            yield rng.randbytes(piece)
        yield tail

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        async def spy(message: Any) -> None:
            await send(message)
            if events is not None and message.get("type") == "http.response.body" and not message.get("more_body"):
                events.append("response sent")
                if answered is not None:
                    answered.set()

        try:
            await api.app(scope, receive, spy)
        except Exception as exc:
            note_server_error(exc)  # so a 500 names what the learner's code raised
            raise

    async def post() -> Any:
        transport = httpx.ASGITransport(app=watched, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as streaming:
            headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
            return await streaming.post(path, content=chunks(), headers=headers)

    return within(WAIT_S, lambda: api.portal.call(post), f"POST {path} with a streamed body")


# --- POST /files: the record and where it is stored -------------------------------------


def test_upload_answers_201_with_record(api: Any) -> None:
    """POST /files answers 201 with id, filename, size_bytes, content_type and sha256"""
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data)
    expect_record(record_of(upload(api, name, kind, data), sent), name, kind, data, sent)


def test_upload_stored_with_id_prefix(api: Any, paths: dict[str, Path]) -> None:
    """The file is stored as UPLOAD_DIR/<id>_<name> with exactly the bytes sent, and nothing else is left there"""
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data)
    record = record_of(upload(api, name, kind, data), sent)
    expect_stored(paths, record, data, sent)
    left = entries(paths["uploads"])
    expect(
        left == [f"{record['id']}_{name}"],
        f"{counted(len(left), 'file')} in UPLOAD_DIR, expected 1. Only the stored file stays (no temporary files).",
        sent=sent,
        expected=show([f"{record['id']}_{name}"]),
        got=show(left[:5]),
    )


def test_default_folders(learner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without UPLOAD_DIR and AUDIT_LOG, files go to uploads/ and the audit to audit.log in the working directory"""
    monkeypatch.delenv("UPLOAD_DIR")
    monkeypatch.delenv("AUDIT_LOG")
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + " (UPLOAD_DIR and AUDIT_LOG not set)"
    with running(learner.app) as api:
        record = record_of(upload(api, name, kind, data), sent)
    stored = Path("uploads") / f"{record['id']}_{name}"
    expect(
        stored.is_file(),
        f"no uploads/{record['id']}_{name}. Without UPLOAD_DIR, files belong in uploads/ in the working directory.",
        sent=sent,
        expected=f"uploads/{record['id']}_{name}",
        got=f"the working directory holds {show(entries(Path()))}",
    )
    ids = [line.get("id") for line in audit_lines(Path("audit.log")) if isinstance(line, dict)]
    expect(
        ids == [record["id"]],
        f"audit.log holds ids {show(ids)}, expected [{record['id']}]. Without AUDIT_LOG, the audit line belongs in "
        "audit.log in the working directory.",
        sent=sent,
        expected=f"one line for id {record['id']}",
        got=f"ids {show(ids)} in audit.log",
    )


def test_settings_read_at_startup(learner: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """UPLOAD_DIR and AUDIT_LOG are read when the app starts, not when it is imported"""
    later = tmp_path / f"later-{rng.randrange(10**6)}"
    monkeypatch.setenv("UPLOAD_DIR", str(later / "files"))
    monkeypatch.setenv("AUDIT_LOG", str(later / "audit.log"))
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + " after UPLOAD_DIR and AUDIT_LOG changed between import and startup"
    later.mkdir()
    with running(learner.app) as api:
        record = record_of(upload(api, name, kind, data), sent)
    stored = later / "files" / f"{record['id']}_{name}"
    logged = [line.get("id") for line in audit_lines(later / "audit.log") if isinstance(line, dict)]
    expect(
        stored.is_file() and logged == [record["id"]],
        "The file or the audit line is not under the folder set after the import. Read UPLOAD_DIR and "
        "AUDIT_LOG at startup (in the lifespan), so the values in force when the server starts are used.",
        sent=sent,
        expected="the file and the audit line under the new folder",
        got=f"file there: {stored.is_file()}; audit ids there: {show(logged)}",
    )


# --- types and sizes --------------------------------------------------------------------


def test_allowed_types_accepted(api: Any) -> None:
    """PNG, JPEG and PDF files are all accepted"""
    for kind in rng.sample(sorted(MAGIC), 3):
        name, kind, data = random_file(kind)
        sent = describe_upload(name, kind, data)
        expect_record(record_of(upload(api, name, kind, data), sent), name, kind, data, sent)


def test_unlisted_type_refused_415(api: Any, paths: dict[str, Path]) -> None:
    """A declared type other than PNG, JPEG or PDF gets 415 and nothing is stored"""
    # Always WebP (allowed in §3, not here) and real PNG bytes under another type; one more at random.
    others = [
        ("image/webp", b"RIFF\x24\x00\x00\x00WEBPVP8 "),
        ("application/octet-stream", b"\x89PNG\r\n\x1a\n"),
        rng.choice([("image/gif", b"GIF89a"), ("text/plain", b"hello "), ("text/html", b"<html>")]),
    ]
    for kind, magic in rng.sample(others, len(others)):
        reason = f"Only image/png, image/jpeg and application/pdf are allowed; {kind} is not."
        expect_refused_415(api, paths, f"{rng.choice(WORDS)}-{rng.randrange(10**4)}.bin", kind, magic, reason)


def expect_refused_415(api: Any, paths: dict[str, Path], name: str, kind: str, magic: bytes, reason: str) -> None:
    """Upload `magic` plus random bytes as `name` declared `kind`: expect 415 and nothing stored."""
    data = magic + rng.randbytes(rng.randrange(100, 2000))
    sent = describe_upload(name, kind, data)
    expect_answer(upload(api, name, kind, data), 415, reason, sent)
    expect_nothing_stored(paths, sent, "A refused upload must not be stored.")


def test_magic_bytes_must_match(api: Any, paths: dict[str, Path]) -> None:
    """A file whose first bytes do not match its declared type gets 415 (the declared type alone is not trusted)"""
    impostors = [
        ("image/png", MAGIC["image/jpeg"]),
        ("application/pdf", b"<html><script>"),
        rng.choice([("image/jpeg", MAGIC["image/png"]), ("image/png", b"#!/bin/sh\n"), ("image/jpeg", b"%PDF-1.4\n")]),
    ]
    for kind, magic in rng.sample(impostors, len(impostors)):
        reason = f"The file claims to be {kind} but does not start with its magic bytes {MAGIC[kind][:5]!r}."
        name = f"{rng.choice(WORDS)}-{rng.randrange(10**4)}.{EXTENSIONS[kind]}"
        expect_refused_415(api, paths, name, kind, magic, reason)


def test_oversized_stream_refused_413(api: Any, paths: dict[str, Path]) -> None:
    """A file over 1 MiB, streamed, gets 413 and leaves no partial file behind"""
    size = MAX_BYTES + rng.randrange(1, 200_000)
    name = f"{rng.choice(WORDS)}-{rng.randrange(10**4)}.png"
    head = multipart_head(name.encode(), "image/png") + MAGIC["image/png"]
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    sent = f"POST /files with file {show(name)} (image/png, {size} bytes, streamed in 64 KiB chunks)"
    response = stream_post(api, "/files", head, size - len(MAGIC["image/png"]), tail)
    expect_answer(response, 413, "A file larger than 1 MiB (1048576 bytes) should be refused with 413.", sent)
    expect_nothing_stored(paths, sent, "A refused upload must leave no partial file behind.")
    stray = files_under(paths["area"], paths["uploads"], paths["audit"])
    expect(
        not stray, "A refused upload must leave no file anywhere.", sent=sent, expected="no files", got=show(stray[:5])
    )


def test_upload_read_in_chunks(api: Any, reads: Reads) -> None:
    """An upload is read in bounded chunks, never all at once (file.read() with no size)"""
    size = MAX_BYTES + rng.randrange(1, 100_000)
    name, kind, data = random_file(size=size)
    sent = describe_upload(name, kind, data)
    response = upload(api, name, kind, data)
    expect_answer(response, 413, "A file larger than 1 MiB should be refused with 413.", sent)
    too_big = reads.unbounded()
    shown = ["everything" if size is None or size < 0 else f"{size} bytes" for size in too_big]
    expect(
        not too_big,
        f"A read asked for {shown[0] if shown else ''} at once. "
        "Read the upload in chunks (for example `await file.read(64 * 1024)` in a loop) and stop "
        "once it passes 1 MiB: reading it whole first holds a client-chosen amount of data in memory.",
        sent=sent,
        expected=f"no single read of more than {MAX_BYTES + 1} bytes",
        got=f"reads asking for {show(shown[:4])}",
    )


def test_exactly_one_mib_accepted(api: Any) -> None:
    """A file of exactly 1 MiB (1048576 bytes) is accepted"""
    name, kind, data = random_file(size=MAX_BYTES)
    sent = describe_upload(name, kind, data)
    expect_record(record_of(upload(api, name, kind, data), sent), name, kind, data, sent)


# --- file names -------------------------------------------------------------------------


def expect_clean_name(api: Any, paths: dict[str, Path], sent_name: str | bytes, clean: str, why: str) -> None:
    _, kind, data = random_file()
    sent = describe_upload(sent_name, kind, data)
    if isinstance(sent_name, bytes):
        response = raw_upload(api, sent_name, kind, data)
    else:
        response = upload(api, sent_name, kind, data)
    record = record_of(response, sent)
    expect(
        record["filename"] == clean,
        f"filename {show(record['filename'])}, expected {show(clean)}. {why}",
        sent=sent,
        expected=show(clean),
        got=show(record["filename"]),
    )
    expect_stored(paths, record, data, sent)
    stray = files_under(paths["area"], paths["uploads"], paths["audit"])
    expect(
        not stray,
        f"{counted(len(stray), 'file')} outside UPLOAD_DIR. Uploads must be stored under UPLOAD_DIR and nowhere else.",
        sent=sent,
        expected="no file outside UPLOAD_DIR",
        got=show(stray[:5]),
    )


def test_directory_parts_removed(api: Any, paths: dict[str, Path]) -> None:
    """`../`, absolute paths and sub-folders are removed from the name: the file stays in UPLOAD_DIR"""
    clean = random_file()[0]
    for sent_name in [f"../{clean}", f"/etc/{clean}", f"../../{rng.choice(WORDS)}/{clean}"]:
        expect_clean_name(api, paths, sent_name, clean, "Keep only the part after the last slash.")


def test_windows_paths_removed(api: Any, paths: dict[str, Path]) -> None:
    """Backslash paths (`..\\..\\x.png`, `C:\\x\\y.png`) are cleaned too, even on Linux"""
    clean = random_file()[0]
    for sent_name in [f"..\\..\\{clean}", f"{rng.choice(WORDS)}\\..\\{clean}", f"C:\\Users\\{clean}"]:
        expect_clean_name(
            api,
            paths,
            sent_name,
            clean,
            "A backslash separates folders for a Windows client: "
            "Path(name).name on Linux keeps it, so treat `\\` like `/`.",
        )


def test_control_characters_removed(api: Any, paths: dict[str, Path]) -> None:
    """NUL and other control characters are removed from the name"""
    clean = random_file()[0]
    cut = rng.randrange(1, len(clean) - 1)
    controls = [b"\x00", b"\x01", b"\x1f", b"\x7f", b"\x08"]
    sent_name = clean[:cut].encode() + b"".join(rng.sample(controls, 2)) + clean[cut:].encode() + b"\x00"
    expect_clean_name(api, paths, sent_name, clean, "Remove every character below U+0020 and U+007F.")


def test_empty_name_refused_400(api: Any, paths: dict[str, Path]) -> None:
    """A name that is empty once cleaned (`../`, `..`, only control characters) gets 400"""
    names = [b"../", b"..", b"\x00\x01", rng.choice([b"/", b"..\\", b"uploads/..", b"./", b" \x00 "])]
    for sent_name in rng.sample(names, len(names)):
        _, kind, data = random_file()
        sent = describe_upload(sent_name, kind, data)
        expect_answer(
            raw_upload(api, sent_name, kind, data),
            400,
            "Nothing useful is left of this name once cleaned (empty, `.` or `..`), so the upload is refused.",
            sent,
        )
        expect_nothing_stored(paths, sent, "A refused upload must not be stored.")


def test_same_name_never_overwrites(api: Any, paths: dict[str, Path]) -> None:
    """Two uploads with the same name get different ids and both files are kept"""
    name, kind, first = random_file()
    second = MAGIC[kind] + rng.randbytes(len(first))
    sent = describe_upload(name, kind, first) + ", then the same name again with other bytes"
    one = record_of(upload(api, name, kind, first), sent)
    two = record_of(upload(api, name, kind, second), sent)
    expect(
        one["id"] != two["id"],
        "the same id twice. Each upload needs a new id.",
        sent=sent,
        expected="two different ids",
        got=show([one["id"], two["id"]]),
    )
    expect_stored(paths, one, first, sent)
    expect_stored(paths, two, second, sent)


# --- GET /files/{id} --------------------------------------------------------------------


def test_download_streams_file(api: Any) -> None:
    """GET /files/{id} answers the stored bytes with the content type they were uploaded with"""
    _, kind, data = random_file()
    # No extension: the type must come from the upload, not be guessed from the name.
    name = f"{rng.choice(WORDS)}-{rng.randrange(10**5)}"
    record = record_of(upload(api, name, kind, data), describe_upload(name, kind, data))
    response = api.get(f"/files/{record['id']}")
    sent = f"GET /files/{record['id']} after uploading {show(name)} ({kind}, {len(data)} bytes)"
    expect_answer(response, 200, "A stored file should be served back.", sent)
    served_type = response.headers.get("content-type", "").split(";")[0].strip()
    expect(
        served_type == kind,
        f"content-type {show(served_type)}, expected {kind}.",
        sent=sent,
        expected=kind,
        got=show(served_type),
    )
    expect(
        response.content == data,
        f"{len(response.content)} bytes served back, expected the {len(data)} bytes uploaded (or other bytes).",
        sent=sent,
        expected=f"{len(data)} bytes starting {data[:8]!r}",
        got=f"{len(response.content)} bytes starting {response.content[:8]!r}",
    )


def test_download_unknown_id_404(api: Any) -> None:
    """GET /files/{id} with an id never given out (`*`, a random id) gets 404"""
    name, kind, data = random_file()
    record = record_of(upload(api, name, kind, data), describe_upload(name, kind, data))
    for file_id in [
        uuid.UUID(int=rng.getrandbits(128)).hex,
        "*",
        rng.choice([record["id"][:6] + "*", "..", record["id"] + "_*"]),
    ]:
        response = api.get(f"/files/{file_id}")
        expect_answer(
            response,
            404,
            "Only an id the app gave out names a file; anything else is unknown (a "
            "pattern like `*` must not match stored files).",
            f"GET /files/{file_id}",
        )


# --- POST /files/batch ------------------------------------------------------------------


def batch(api: Any, files: list[tuple[str | bytes, str, bytes]]) -> Any:
    return api.post("/files/batch", files=[("files", (name, data, kind)) for name, kind, data in files])


def describe_batch(files: list[tuple[str, str, bytes]]) -> str:
    return "POST /files/batch with files " + ", ".join(f"{show(n)} ({k}, {len(d)} bytes)" for n, k, d in files)


def test_batch_stores_every_file(api: Any, paths: dict[str, Path]) -> None:
    """POST /files/batch stores every file and answers 201 with {"files": [records in order]}"""
    files = [random_file() for _ in range(rng.randrange(2, 5))]
    sent = describe_batch(files)
    response = batch(api, files)
    expect_answer(response, 201, "A batch of valid files should be stored and answered with 201.", sent)
    body = json_body(response)
    records = body.get("files") if isinstance(body, dict) else None
    expect(
        isinstance(records, list) and len(records) == len(files) and all(isinstance(r, dict) for r in records),
        'The answer should be {"files": [one record per file, in the order sent]}.',
        sent=sent,
        expected=f"{len(files)} records",
        got=show(body),
    )
    for record, (name, kind, data) in zip(records, files, strict=True):
        expect_record(expect_record_shape(record, sent), name, kind, data, sent)
        expect_stored(paths, record, data, sent)


def refused_file() -> tuple[tuple[str, str, bytes], int]:
    """A file the batch must refuse, and the status it earns."""
    name, kind, data = random_file()
    choice = rng.randrange(3)
    if choice == 0:
        return (name, kind, b"<html>" + data), 415
    if choice == 1:
        return ("../", kind, data), 400
    return (name, kind, MAGIC[kind] + rng.randbytes(MAX_BYTES)), 413


def test_batch_all_or_nothing(api: Any, paths: dict[str, Path]) -> None:
    """A batch with one refused file stores nothing and names the refused file and why"""
    good = [random_file() for _ in range(rng.randrange(2, 4))]
    bad, status = refused_file()
    files = [*good[:1], bad, *good[1:]]
    sent = describe_batch(files)
    response = batch(api, files)
    expect_answer(response, status, "A batch answers with the status of its first refused file.", sent)
    expect_nothing_stored(
        paths, sent, "One refused file means no file of the batch is stored, not even those before it."
    )
    body = json_body(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    expect(
        isinstance(detail, dict)
        and detail.get("filename") == bad[0]
        and isinstance(detail.get("error"), str)
        and bool(detail.get("error")),
        f"detail {show(detail)} does not name the refused file as sent and say why.",
        sent=sent,
        expected=show({"detail": {"filename": bad[0], "error": "<why>"}}),
        got=show(body),
    )
    expect(
        audit_lines(paths["audit"]) == [],
        f"{counted(len(audit_lines(paths['audit'])), 'audit line')}, expected none. "
        "A refused batch writes no audit line.",
        sent=sent,
        expected="no audit line",
        got=show(audit_lines(paths["audit"])[:3]),
    )


# --- background work --------------------------------------------------------------------


def expect_audit_line(line: Any, record: dict[str, Any], request_id: str, sent: str) -> None:
    expect(
        isinstance(line, dict) and sorted(line) == sorted(AUDIT_KEYS),
        f"audit line keys {show(sorted(line) if isinstance(line, dict) else line)}, expected {show(AUDIT_KEYS)}.",
        sent=sent,
        expected=show(AUDIT_KEYS),
        got=show(line),
    )
    expected = {
        "event": "uploaded",
        "id": record.get("id"),
        "sha256": record.get("sha256"),
        "at": line["at"],
        "request_id": request_id,
    }
    expect(
        line == expected,
        f"{', '.join(key for key in AUDIT_KEYS if line.get(key) != expected[key])} differ. The audit line carries "
        "the upload's id and sha256 and the request's id.",
        sent=sent,
        expected=show(expected),
        got=show(line),
    )
    try:
        at = datetime.fromisoformat(str(line["at"]))
    except ValueError:
        at = None
    now = datetime.now(timezone.utc)
    expect(
        at is not None and at.tzinfo is not None and abs(at - now) < timedelta(minutes=2),
        f"at {show(line['at'])} is not the time of the upload in ISO 8601 with its UTC offset "
        "(datetime.now(timezone.utc).isoformat()).",
        sent=sent,
        expected=f"a time like {now.isoformat()}",
        got=show(line["at"]),
    )


def test_audit_line_after_upload(api: Any, paths: dict[str, Path]) -> None:
    """After an upload, one JSON line {event, id, sha256, at, request_id} is appended to AUDIT_LOG"""
    request_id = random_request_id()
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + f" with X-Request-Id {request_id}"
    record = record_of(upload(api, name, kind, data, headers={"X-Request-Id": request_id}), sent)
    lines = audit_lines(paths["audit"])
    expect(
        len(lines) == 1,
        f"{len(lines)} audit lines, expected 1. One upload appends exactly one line to AUDIT_LOG.",
        sent=sent,
        expected="1 line",
        got=f"{len(lines)} lines: {show(lines[:3])}",
    )
    expect_audit_line(lines[0], record, request_id, sent)


def test_batch_audits_each_file(api: Any, paths: dict[str, Path]) -> None:
    """A stored batch appends one audit line per file"""
    files = [random_file() for _ in range(rng.randrange(2, 4))]
    request_id = random_request_id()
    sent = describe_batch(files) + f" with X-Request-Id {request_id}"
    response = api.post(
        "/files/batch", files=[("files", (n, d, k)) for n, k, d in files], headers={"X-Request-Id": request_id}
    )
    expect_answer(response, 201, "A batch of valid files should be stored.", sent)
    body = json_body(response)
    records = body.get("files") if isinstance(body, dict) else None
    expect(
        isinstance(records, list),
        f'body {show(body)} has no list of records under "files".',
        sent=sent,
        expected='{"files": [records]}',
        got=show(body),
    )
    records = [expect_record_shape(record, sent) for record in records]
    lines = audit_lines(paths["audit"])
    by_id = {str(line.get("id")): line for line in lines if isinstance(line, dict)}
    wanted = sorted(record["id"] for record in records)
    expect(
        len(lines) == len(records) and sorted(by_id) == wanted,
        f"audit lines for ids {show(sorted(by_id))}, expected one per stored file. Each file of a batch is audited.",
        sent=sent,
        expected=f"ids {show(wanted)}",
        got=f"{len(lines)} lines, ids {show(sorted(by_id))}",
    )
    for record in records:
        expect_audit_line(by_id[record["id"]], record, request_id, sent)


def test_response_does_not_wait_for_audit(
    api: Any, learner: Any, paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is sent before the audit line is written (the grader makes append_audit_line slow)"""
    events: list[str] = []
    answered = threading.Event()
    real = learner.append_audit_line

    def slow_append(path: Any, record: Any) -> None:
        events.append("audit started")
        # Slow until the answer is out (at most HOLD_S): a correct app answers meanwhile, so the
        # verdict depends on the order of events, never on how busy the machine is.
        answered.wait(HOLD_S)
        real(path, record)
        events.append("audit finished")

    monkeypatch.setattr(learner, "append_audit_line", slow_append)
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + f" while append_audit_line waits up to {HOLD_S:g} s for the answer"
    head = multipart_head(name.encode(), kind) + data[:8]
    tail = data[8:] + f"\r\n--{BOUNDARY}--\r\n".encode()
    response = stream_post(api, "/files", head, 0, tail, events, answered)
    expect_answer(response, 201, "A valid upload should be stored.", sent)
    expect(
        "audit finished" in events,
        "append_audit_line was never called. The audit line is written through append_audit_line(path, record) "
        "after the upload (the grader replaces that function, so call it by its name).",
        sent=sent,
        expected="append_audit_line to be called",
        got=f"these events: {show(events)}",
    )
    expect(
        events.index("response sent") < events.index("audit finished"),
        f"the answer was sent after the audit finished ({' -> '.join(events)}). "
        "Write it in a background task (BackgroundTasks.add_task), which runs after the answer is sent.",
        sent=sent,
        expected="the answer before the audit finished",
        got=f"in this order: {show(events)}",
    )


def test_failing_audit_is_logged(
    api: Any, learner: Any, paths: dict[str, Path], uploads_log: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing audit task keeps the 201, is logged at ERROR on logger "uploads", and the next upload is audited"""
    real = learner.append_audit_line

    def broken_append(path: Any, record: Any) -> None:
        raise OSError(28, "No space left on device (the grader made append_audit_line fail on purpose)")

    monkeypatch.setattr(learner, "append_audit_line", broken_append)
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + " while append_audit_line raises OSError"
    try:
        response = upload(api, name, kind, data)
    except OSError as exc:
        fail(
            "OSError escaped the background task. Catch it in the task and log "
            'it with logging.getLogger("uploads").exception(...) (or .error).',
            sent=sent,
            expected="the task to catch the error",
            got=f"{type(exc).__name__}: {clip(str(exc))}",
        )
    record_of(response, sent)
    errors = [r for r in uploads_log if r.levelno >= logging.ERROR]
    expect(
        bool(errors),
        'The failure should be logged on logging.getLogger("uploads") at ERROR level.',
        sent=sent,
        expected="an ERROR record on logger uploads",
        got=show([f"{r.levelname}: {clip(r.getMessage(), 80)}" for r in uploads_log][:3]) or "no record",
    )
    monkeypatch.setattr(learner, "append_audit_line", real)
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + " after the failing one"
    record = record_of(upload(api, name, kind, data), sent)
    logged = [line.get("id") for line in audit_lines(paths["audit"]) if isinstance(line, dict)]
    expect(
        logged == [record["id"]],
        f"audit lines for ids {show(logged)}, expected [{record['id']}]. After a failed audit, the next upload "
        "is still audited.",
        sent=sent,
        expected=f"one line for {record['id']}",
        got=f"ids {show(logged)}",
    )


# --- middleware -------------------------------------------------------------------------


def header_value(name: str, value: str | None) -> str:
    """A response header in words: its value, or that the response has none (never null)."""
    return f"no {name} header" if value is None else f"{name} {show(value)}"


def header_line(name: str, value: str | None) -> str:
    """A response header as a `got:` line: `Name: value`, or that the response has none."""
    return f"no {name} header" if value is None else f"{name}: {show(value)}"


def test_request_id_echoed_when_valid(api: Any) -> None:
    """A valid UUID sent as X-Request-Id comes back unchanged in X-Request-Id"""
    for path in ["/files", f"/files/{uuid.UUID(int=rng.getrandbits(128)).hex}"]:
        request_id = random_request_id()
        if path == "/files":
            name, kind, data = random_file()
            response = upload(api, name, kind, data, headers={"X-Request-Id": request_id})
        else:
            response = api.get(path, headers={"X-Request-Id": request_id})
        got = response.headers.get("x-request-id")
        expect(
            got == request_id,
            f"{header_value('X-Request-Id', got)}, expected {request_id}. A valid UUID sent by the client comes back "
            "as it is.",
            sent=f"{'POST' if path == '/files' else 'GET'} {path} with X-Request-Id {request_id}",
            expected=f"X-Request-Id: {request_id}",
            got=header_line("X-Request-Id", got),
        )


def test_request_id_new_when_invalid(api: Any) -> None:
    """A missing or invalid X-Request-Id is replaced by a new uuid4, different on every request"""
    almost = random_request_id()
    sent_ids = [None, f"req-{rng.randrange(10**6)}", almost[:-1] + "g", almost + "0", "' OR 1=1 --"]
    seen = []
    for sent_id in sent_ids:
        headers = {} if sent_id is None else {"X-Request-Id": sent_id}
        response = api.get(f"/nothing-{rng.randrange(10**6)}", headers=headers)
        got = response.headers.get("x-request-id")
        sent = f"GET {response.request.url.path} " + (
            "without X-Request-Id" if sent_id is None else f"with X-Request-Id {show(sent_id)}"
        )
        try:
            version = uuid.UUID(got).version if got else None
        except ValueError:
            version = None
        expect(
            version == 4 and got != sent_id,
            (
                "no X-Request-Id header, expected a new uuid4."
                if got is None
                else f"X-Request-Id {show(got)} is not a new uuid4."
            )
            + " Without a valid UUID from the client, make a new one.",
            sent=sent,
            expected="a new uuid4",
            got=header_line("X-Request-Id", got),
        )
        seen.append(got)
    expect(
        len(set(seen)) == len(seen),
        "the same id on two requests. Every request needs its own new id.",
        sent="5 requests",
        expected="5 different ids",
        got=show(seen),
    )


def process_time(response: Any, sent: str) -> float:
    value = response.headers.get("x-process-time")
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        seconds = math.nan
    expect(
        math.isfinite(seconds) and seconds >= 0,
        (
            "no X-Process-Time header, expected the seconds the request took (for example 0.0042)."
            if value is None
            else f"X-Process-Time {show(value)} is not a number of seconds (for example 0.0042)."
        ),
        sent=sent,
        expected="X-Process-Time: <seconds>",
        got=header_line("X-Process-Time", value),
    )
    return seconds


def test_process_time_header(api: Any) -> None:
    """Every response carries X-Process-Time, the seconds it took"""
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data)
    started = time.perf_counter()
    response = upload(api, name, kind, data)
    wall = time.perf_counter() - started
    seconds = process_time(response, sent)
    expect(
        seconds <= wall,
        f"X-Process-Time {seconds} is longer than the whole round trip ({wall:.4f} s). Give seconds "
        "(perf_counter differences), not milliseconds.",
        sent=sent,
        expected=f"at most {wall:.4f} (the whole round trip)",
        got=f"{seconds}",
    )


def test_timing_wraps_request_id(api: Any, learner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timing middleware wraps the request-id one: X-Process-Time includes a slow new_request_id()"""
    made: list[str] = []

    def slow_new_request_id() -> str:
        time.sleep(SLOW_S)
        made.append(str(uuid.uuid4()))
        return made[-1]

    monkeypatch.setattr(learner, "new_request_id", slow_new_request_id)
    path = f"/nothing-{rng.randrange(10**6)}"
    sent = f"GET {path} without X-Request-Id, while new_request_id() takes {SLOW_S:g} s"
    response = api.get(path)
    got = response.headers.get("x-request-id")
    expect(
        bool(made) and got == made[-1],
        (
            "no X-Request-Id header, expected the id new_request_id() returned."
            if got is None
            else f"X-Request-Id {show(got)} is not the id new_request_id() returned."
        )
        + " Make new ids with new_request_id() (the grader replaces it, so call it by its name).",
        sent=sent,
        expected="the id new_request_id() returned",
        got=header_line("X-Request-Id", got),
    )
    seconds = process_time(response, sent)
    expect(
        seconds >= SLOW_S,
        f"X-Process-Time is {seconds}, but making the request id alone took {SLOW_S:g} s: "
        "the timing middleware runs inside the request-id middleware. The middleware declared last is the "
        "outermost (§6 says the opposite in one sentence; the code comment there is right).",
        sent=sent,
        expected=f"X-Process-Time of at least {SLOW_S:g}",
        got=f"X-Process-Time: {seconds}",
    )


def add_grader_routes(app: Any) -> tuple[str, str]:
    """Two routes the grader adds to the learner's app: one that raises, one that reads
    request.state.request_id."""
    prefix = f"/grader-{rng.randrange(16**6):06x}"

    def explode() -> None:
        raise RuntimeError("the grader's endpoint fails on purpose")

    def state_id(request: Request) -> dict[str, Any]:
        return {"request_id": getattr(request.state, "request_id", None)}

    app.add_api_route(f"{prefix}/boom", explode, methods=["GET"])
    app.add_api_route(f"{prefix}/state", state_id, methods=["GET"])
    return f"{prefix}/boom", f"{prefix}/state"


def test_headers_on_404_and_500(learner: Any) -> None:
    """X-Request-Id and X-Process-Time are on a 404 and on a 500 from an endpoint that raises"""
    boom, _ = add_grader_routes(learner.app)
    with running(learner.app, raise_server_exceptions=False) as api:
        for path, status in [(f"/nothing-{rng.randrange(10**6)}", 404), (boom, 500)]:
            request_id = random_request_id()
            sent = f"GET {path} with X-Request-Id {request_id}" + (
                " (an endpoint that raises)" if status == 500 else ""
            )
            response = api.get(path, headers={"X-Request-Id": request_id})
            expect_answer(response, status, "", sent)
            headers = {key: response.headers.get(key) for key in ("X-Request-Id", "X-Process-Time")}
            expect(
                headers["X-Request-Id"] == request_id and headers["X-Process-Time"] is not None,
                f"{headers_in_words(headers, request_id)} on a {status}, expected both."
                + (
                    " An exception raised by the endpoint passes through "
                    "`await call_next(request)`: catch it in your middleware and answer the 500 yourself, or the "
                    "server answers it outside every middleware."
                    if status == 500
                    else ""
                ),
                sent=sent,
                expected=f"X-Request-Id: {request_id} and an X-Process-Time",
                got=", ".join(header_line(name, value) for name, value in headers.items()),
            )


def headers_in_words(headers: dict[str, str | None], request_id: str) -> str:
    """What is wrong with a response's X-Request-Id and X-Process-Time, in words."""
    faults = []
    if headers["X-Request-Id"] is None:
        faults.append("no X-Request-Id header")
    elif headers["X-Request-Id"] != request_id:
        faults.append(f"X-Request-Id {show(headers['X-Request-Id'])} instead of the one sent")
    if headers["X-Process-Time"] is None:
        faults.append("no X-Process-Time header")
    return " and ".join(faults)


def test_request_state_has_request_id(learner: Any) -> None:
    """Endpoints read the id as request.state.request_id, the same one the response carries"""
    _, state_path = add_grader_routes(learner.app)
    with running(learner.app) as api:
        for sent_id in [random_request_id(), None]:
            headers = {"X-Request-Id": sent_id} if sent_id else {}
            response = api.get(state_path, headers=headers)
            sent = f"GET {state_path} (a grader endpoint returning request.state.request_id)" + (
                f" with X-Request-Id {sent_id}" if sent_id else " without X-Request-Id"
            )
            expect_answer(response, 200, "", sent)
            body = json_body(response)
            state_id = body.get("request_id") if isinstance(body, dict) else body
            # With a valid id sent, the state holds it; without one, the new id the response carries.
            wanted = sent_id or response.headers.get("x-request-id")
            expect(
                wanted is not None,
                "no X-Request-Id on the response, so there is no id to compare request.state.request_id with.",
                sent=sent,
                expected="an X-Request-Id header",
                got="no X-Request-Id header",
            )
            expect(
                isinstance(state_id, str) and state_id == wanted,
                (
                    f"request.state.request_id is not set, expected {show(wanted)}."
                    if state_id is None
                    else f"request.state.request_id was {show(state_id)}, expected {show(wanted)}."
                )
                + " Set it in the middleware before call_next, to the id the response carries.",
                sent=sent,
                expected=show({"request_id": wanted}),
                got=show(body),
            )

"""Grader for problem 6 — file uploads, background tasks and middleware order.

Each check gets a fresh app host (workbook/hostkit.py): the learner's module imported in a
process of its own, in an empty working folder, with UPLOAD_DIR and AUDIT_LOG pointing into
a folder of their own, served by uvicorn; the grader talks to it over a real connection and
reads the files the app wrote through the probes in probes.py. Uploads are real multipart
bodies built by httpx, or by hand when a file name must carry bytes httpx would escape (NUL,
control characters). Oversized uploads are streamed from a generator, so the grader never
holds them whole. Starlette's spooled upload file is wrapped before the import, so the checks
see how much each read asks for. The statement names two module-level functions the grader
replaces: append_audit_line (made slow, or made to fail) and new_request_id (made slow, to
see which middleware is outside).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from workbook import hostkit
from workbook.grading import (
    clip,
    expect,
    fail,
    json_body,
    learner_frames,
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
SPIES = [("spy_upload_reads", {}), ("keep_uploads_log", {})]


# --- the world the app runs in ----------------------------------------------------------


@dataclass
class Layout:
    """Where the app is told to write, relative to its host's working folder: UPLOAD_DIR two
    levels down a folder of its own (so `../` would land in a watched folder), AUDIT_LOG
    beside it; all with random names."""

    area: str
    uploads: str  # relative to area
    audit: str  # relative to area


@pytest.fixture
def layout() -> Layout:
    return Layout(
        area=f"area-{rng.randrange(10**6)}",
        uploads=f"store-{rng.randrange(10**4)}/files",
        audit=f"audit-{rng.randrange(10**4)}.log",
    )


@pytest.fixture
def host_env(layout: Layout) -> dict[str, str]:
    """UPLOAD_DIR and AUDIT_LOG, set before the app is imported (the area itself exists)."""
    return {"UPLOAD_DIR": f"{layout.area}/{layout.uploads}", "AUDIT_LOG": f"{layout.area}/{layout.audit}"}


@pytest.fixture
def host_setup(layout: Layout) -> list[tuple[str, dict[str, Any]]]:
    """Before the import: the area made, the spooled upload file wrapped and the uploads
    logger watched."""
    return [("change_settings", {"env": {}, "folders": [layout.area]}), *SPIES]


class Folders:
    """What the app wrote under its area, read from its host once the app is idle (a
    request's background tasks have run)."""

    def __init__(self, host: Any, layout: Layout) -> None:
        self.host = host
        self.layout = layout

    def files(self) -> dict[str, dict[str, Any]]:
        """Every entry under the area by its path relative to the area."""
        found = self.host.probe("tree", root=self.layout.area)
        return {entry["path"]: entry for entry in found["entries"]}

    def uploads(self) -> list[str]:
        """Every name in UPLOAD_DIR, hidden ones too ([] when it does not exist)."""
        prefix = self.layout.uploads + "/"
        return sorted(p[len(prefix) :] for p in self.files() if p.startswith(prefix) and "/" not in p[len(prefix) :])

    def stray(self) -> list[str]:
        """Files under the area other than the audit log and those in UPLOAD_DIR."""
        prefix = self.layout.uploads + "/"
        return sorted(
            path
            for path, entry in self.files().items()
            if not entry["dir"] and path != self.layout.audit and not path.startswith(prefix)
        )

    def stored(self, name: str) -> dict[str, Any] | None:
        """The entry of UPLOAD_DIR/`name` ({"size", "sha256"}), None when there is no such file."""
        entry = self.files().get(f"{self.layout.uploads}/{name}")
        return entry if entry is not None and not entry["dir"] else None

    def audit_lines(self) -> list[Any]:
        return audit_lines(self.host.probe("text", path=f"{self.layout.area}/{self.layout.audit}"))


@pytest.fixture
def paths(host: Any, layout: Layout) -> Folders:
    return Folders(host, layout)


def started(host: Any, app: str = "app", **kwargs: Any) -> Any:
    """A client of the app (the module's attribute `app`) once its startup has run."""
    try:
        host.serve(app=app)
    except hostkit.HostGone:
        raise
    except hostkit.StartupFailed as exc:
        fail(f"the startup {exc}. Starting the app should work.", expected="startup to finish", got=str(exc))
    except Exception as exc:  # noqa: BLE001 - the learner's startup may raise anything
        fail(
            f"startup raised {type(exc).__name__}. Starting the app should work.",
            expected="startup to finish",
            got=f"{type(exc).__name__}: {exc}\n{learner_frames(exc)}".rstrip(),
        )
    return host.client(**kwargs)


@pytest.fixture
def api(host: Any) -> Iterator[Any]:
    with started(host) as client:
        yield client


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


def expect_nothing_stored(paths: Folders, sent: str, why: str) -> None:
    left = paths.uploads()
    expect(
        not left,
        f"{counted(len(left), 'file')} left in UPLOAD_DIR. {why}",
        sent=sent,
        expected="UPLOAD_DIR empty",
        got=show(left[:5]),
    )


def expect_stored(paths: Folders, record: dict[str, Any], data: bytes, sent: str) -> None:
    name = f"{record['id']}_{record['filename']}"
    stored = paths.stored(name)
    expect(
        stored is not None and stored.get("sha256") == hashlib.sha256(data).hexdigest(),
        f"UPLOAD_DIR has no file {show(name)} with the bytes sent. The upload is stored as "
        "UPLOAD_DIR/<id>_<clean name>, exactly as sent.",
        sent=sent,
        expected=f"a file {show(name)} of {len(data)} bytes",
        got=f"UPLOAD_DIR holds {show(paths.uploads()[:5])}"
        + (f"; that file has {stored['size']} bytes" if stored is not None else ""),
    )


def audit_lines(text: str | None) -> list[Any]:
    """The JSON lines of an audit log's `text` ([] when there is no log)."""
    if text is None:
        return []
    parsed = []
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            fail("The audit log should hold one JSON object per line.", expected="JSON lines", got=show(line))
    return parsed


def random_request_id() -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# --- streaming ----------------------------------------------------------------------------


def stream_post(api: Any, path: str, head: bytes, body_size: int, tail: bytes) -> Any:
    """POST a multipart body generated chunk by chunk (head, `body_size` random bytes, tail)."""

    def chunks() -> Iterator[bytes]:
        yield head
        left = body_size
        while left > 0:
            piece = min(left, 64 * 1024)
            left -= piece
            yield rng.randbytes(piece)
        yield tail

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return within(
        WAIT_S,
        lambda: api.post(path, content=chunks(), headers=headers),
        f"POST {path} with a streamed body",
    )


# --- POST /files: the record and where it is stored -------------------------------------


def test_upload_answers_201_with_record(api: Any) -> None:
    """POST /files answers 201 with id, filename, size_bytes, content_type and sha256"""
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data)
    expect_record(record_of(upload(api, name, kind, data), sent), name, kind, data, sent)


def test_upload_stored_with_id_prefix(api: Any, paths: Folders) -> None:
    """The file is stored as UPLOAD_DIR/<id>_<name> with exactly the bytes sent, and nothing else is left there"""
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data)
    record = record_of(upload(api, name, kind, data), sent)
    expect_stored(paths, record, data, sent)
    left = paths.uploads()
    expect(
        left == [f"{record['id']}_{name}"],
        f"{counted(len(left), 'file')} in UPLOAD_DIR, expected 1. Only the stored file stays (no temporary files).",
        sent=sent,
        expected=show([f"{record['id']}_{name}"]),
        got=show(left[:5]),
    )


def test_default_folders(new_host: Any) -> None:
    """Without UPLOAD_DIR and AUDIT_LOG, files go to uploads/ and the audit to audit.log in the working directory"""
    host = new_host(unset=["UPLOAD_DIR", "AUDIT_LOG"], setup=SPIES)
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + " (UPLOAD_DIR and AUDIT_LOG not set)"
    with started(host) as api:
        record = record_of(upload(api, name, kind, data), sent)
    found = host.probe("tree", root=".")["entries"]
    stored = f"uploads/{record['id']}_{name}"
    expect(
        any(entry["path"] == stored and not entry["dir"] for entry in found),
        f"no uploads/{record['id']}_{name}. Without UPLOAD_DIR, files belong in uploads/ in the working directory.",
        sent=sent,
        expected=f"uploads/{record['id']}_{name}",
        got=f"the working directory holds {show(sorted(e['path'] for e in found if '/' not in e['path']))}",
    )
    ids = [line.get("id") for line in audit_lines(host.probe("text", path="audit.log")) if isinstance(line, dict)]
    expect(
        ids == [record["id"]],
        f"audit.log holds ids {show(ids)}, expected [{record['id']}]. Without AUDIT_LOG, the audit line belongs in "
        "audit.log in the working directory.",
        sent=sent,
        expected=f"one line for id {record['id']}",
        got=f"ids {show(ids)} in audit.log",
    )


def test_settings_read_at_startup(host: Any) -> None:
    """UPLOAD_DIR and AUDIT_LOG are read when the app starts, not when it is imported"""
    later = f"later-{rng.randrange(10**6)}"
    env = {"UPLOAD_DIR": f"{later}/files", "AUDIT_LOG": f"{later}/audit.log"}
    host.probe("change_settings", env=env, folders=[later])
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + " after UPLOAD_DIR and AUDIT_LOG changed between import and startup"
    with started(host) as api:
        record = record_of(upload(api, name, kind, data), sent)
    found = {entry["path"] for entry in host.probe("tree", root=later)["entries"]}
    stored = f"files/{record['id']}_{name}" in found
    logged = [
        line.get("id") for line in audit_lines(host.probe("text", path=f"{later}/audit.log")) if isinstance(line, dict)
    ]
    expect(
        stored and logged == [record["id"]],
        "The file or the audit line is not under the folder set after the import. Read UPLOAD_DIR and "
        "AUDIT_LOG at startup (in the lifespan), so the values in force when the server starts are used.",
        sent=sent,
        expected="the file and the audit line under the new folder",
        got=f"file there: {stored}; audit ids there: {show(logged)}",
    )


# --- types and sizes --------------------------------------------------------------------


def test_allowed_types_accepted(api: Any) -> None:
    """PNG, JPEG and PDF files are all accepted"""
    for kind in rng.sample(sorted(MAGIC), 3):
        name, kind, data = random_file(kind)
        sent = describe_upload(name, kind, data)
        expect_record(record_of(upload(api, name, kind, data), sent), name, kind, data, sent)


def test_unlisted_type_refused_415(api: Any, paths: Folders) -> None:
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


def expect_refused_415(api: Any, paths: Folders, name: str, kind: str, magic: bytes, reason: str) -> None:
    """Upload `magic` plus random bytes as `name` declared `kind`: expect 415 and nothing stored."""
    data = magic + rng.randbytes(rng.randrange(100, 2000))
    sent = describe_upload(name, kind, data)
    expect_answer(upload(api, name, kind, data), 415, reason, sent)
    expect_nothing_stored(paths, sent, "A refused upload must not be stored.")


def test_magic_bytes_must_match(api: Any, paths: Folders) -> None:
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


def test_oversized_stream_refused_413(api: Any, paths: Folders) -> None:
    """A file over 1 MiB, streamed, gets 413 and leaves no partial file behind"""
    size = MAX_BYTES + rng.randrange(1, 200_000)
    name = f"{rng.choice(WORDS)}-{rng.randrange(10**4)}.png"
    head = multipart_head(name.encode(), "image/png") + MAGIC["image/png"]
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    sent = f"POST /files with file {show(name)} (image/png, {size} bytes, streamed in 64 KiB chunks)"
    response = stream_post(api, "/files", head, size - len(MAGIC["image/png"]), tail)
    expect_answer(response, 413, "A file larger than 1 MiB (1048576 bytes) should be refused with 413.", sent)
    expect_nothing_stored(paths, sent, "A refused upload must leave no partial file behind.")
    stray = paths.stray()
    expect(
        not stray, "A refused upload must leave no file anywhere.", sent=sent, expected="no files", got=show(stray[:5])
    )


def test_upload_read_in_chunks(api: Any, host: Any) -> None:
    """An upload is read in bounded chunks, never all at once (file.read() with no size)"""
    size = MAX_BYTES + rng.randrange(1, 100_000)
    name, kind, data = random_file(size=size)
    sent = describe_upload(name, kind, data)
    response = upload(api, name, kind, data)
    expect_answer(response, 413, "A file larger than 1 MiB should be refused with 413.", sent)
    sizes = host.probe("read_sizes")
    too_big = [size for size in sizes if size is None or size < 0 or size > MAX_BYTES + 1]
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


def expect_clean_name(api: Any, paths: Folders, sent_name: str | bytes, clean: str, why: str) -> None:
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
    stray = paths.stray()
    expect(
        not stray,
        f"{counted(len(stray), 'file')} outside UPLOAD_DIR. Uploads must be stored under UPLOAD_DIR and nowhere else.",
        sent=sent,
        expected="no file outside UPLOAD_DIR",
        got=show(stray[:5]),
    )


def test_directory_parts_removed(api: Any, paths: Folders) -> None:
    """`../`, absolute paths and sub-folders are removed from the name: the file stays in UPLOAD_DIR"""
    clean = random_file()[0]
    for sent_name in [f"../{clean}", f"/etc/{clean}", f"../../{rng.choice(WORDS)}/{clean}"]:
        expect_clean_name(api, paths, sent_name, clean, "Keep only the part after the last slash.")


def test_windows_paths_removed(api: Any, paths: Folders) -> None:
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


def test_control_characters_removed(api: Any, paths: Folders) -> None:
    """NUL and other control characters are removed from the name"""
    clean = random_file()[0]
    cut = rng.randrange(1, len(clean) - 1)
    controls = [b"\x00", b"\x01", b"\x1f", b"\x7f", b"\x08"]
    sent_name = clean[:cut].encode() + b"".join(rng.sample(controls, 2)) + clean[cut:].encode() + b"\x00"
    expect_clean_name(api, paths, sent_name, clean, "Remove every character below U+0020 and U+007F.")


def test_empty_name_refused_400(api: Any, paths: Folders) -> None:
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


def test_same_name_never_overwrites(api: Any, paths: Folders) -> None:
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


def test_batch_stores_every_file(api: Any, paths: Folders) -> None:
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


def test_batch_all_or_nothing(api: Any, paths: Folders) -> None:
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
    audited = paths.audit_lines()
    expect(
        audited == [],
        f"{counted(len(audited), 'audit line')}, expected none. A refused batch writes no audit line.",
        sent=sent,
        expected="no audit line",
        got=show(audited[:3]),
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


def test_audit_line_after_upload(api: Any, paths: Folders) -> None:
    """After an upload, one JSON line {event, id, sha256, at, request_id} is appended to AUDIT_LOG"""
    request_id = random_request_id()
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + f" with X-Request-Id {request_id}"
    record = record_of(upload(api, name, kind, data, headers={"X-Request-Id": request_id}), sent)
    lines = paths.audit_lines()
    expect(
        len(lines) == 1,
        f"{len(lines)} audit lines, expected 1. One upload appends exactly one line to AUDIT_LOG.",
        sent=sent,
        expected="1 line",
        got=f"{len(lines)} lines: {show(lines[:3])}",
    )
    expect_audit_line(lines[0], record, request_id, sent)


def test_batch_audits_each_file(api: Any, paths: Folders) -> None:
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
    lines = paths.audit_lines()
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


def test_response_does_not_wait_for_audit(host: Any) -> None:
    """The answer is sent before the audit line is written (the grader makes append_audit_line slow)"""
    # Slow until the answer is out (at most HOLD_S): a correct app answers meanwhile, so the
    # verdict depends on the order of events, never on how busy the machine is.
    host.probe("replace_audit", mode="slow", hold=HOLD_S)
    watched = host.probe("watch_answers")
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + f" while append_audit_line waits up to {HOLD_S:g} s for the answer"
    with started(host, app=watched) as api:
        response = upload(api, name, kind, data)
    events = host.probe("events")
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


def test_failing_audit_is_logged(api: Any, host: Any, paths: Folders) -> None:
    """A failing audit task keeps the 201, is logged at ERROR on logger "uploads", and the next upload is audited"""
    failure = "No space left on device (the grader made append_audit_line fail on purpose)"
    host.probe("replace_audit", mode="fail", text=failure)
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + " while append_audit_line raises OSError"
    response = upload(api, name, kind, data)
    uploads_log = host.probe("uploads_log")  # once the background task has run
    for item in host.raised():
        exc = hostkit.rebuild(item.get("error"))
        fail(
            f"{type(exc).__name__} escaped the background task. Catch it in the task and log "
            'it with logging.getLogger("uploads").exception(...) (or .error).',
            sent=sent,
            expected="the task to catch the error",
            got=f"{type(exc).__name__}: {clip(str(exc))}",
        )
    record_of(response, sent)
    errors = [r for r in uploads_log if r["level"] >= logging.ERROR]
    expect(
        bool(errors),
        'The failure should be logged on logging.getLogger("uploads") at ERROR level.',
        sent=sent,
        expected="an ERROR record on logger uploads",
        got=show([f"{r['name']}: {clip(r['message'], 80)}" for r in uploads_log][:3]) or "no record",
    )
    host.probe("replace_audit", mode="real")
    name, kind, data = random_file()
    sent = describe_upload(name, kind, data) + " after the failing one"
    record = record_of(upload(api, name, kind, data), sent)
    logged = [line.get("id") for line in paths.audit_lines() if isinstance(line, dict)]
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


def test_timing_wraps_request_id(api: Any, host: Any) -> None:
    """The timing middleware wraps the request-id one: X-Process-Time includes a slow new_request_id()"""
    given = [random_request_id() for _ in range(3)]
    host.probe("slow_request_ids", seconds=SLOW_S, ids=given)
    path = f"/nothing-{rng.randrange(10**6)}"
    sent = f"GET {path} without X-Request-Id, while new_request_id() takes {SLOW_S:g} s"
    response = api.get(path)
    made = [made_id for made_id in host.probe("request_ids_made") if made_id in given]
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


def add_grader_routes(host: Any) -> tuple[str, str]:
    """Two routes the grader adds to the learner's app before it is served: one that raises,
    one that reads request.state.request_id."""
    prefix = f"/grader-{rng.randrange(16**6):06x}"
    host.probe("add_grader_routes", prefix=prefix)
    return f"{prefix}/boom", f"{prefix}/state"


def test_headers_on_404_and_500(host: Any) -> None:
    """X-Request-Id and X-Process-Time are on a 404 and on a 500 from an endpoint that raises"""
    boom, _ = add_grader_routes(host)
    with started(host, raise_server_exceptions=False) as api:
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


def test_request_state_has_request_id(host: Any) -> None:
    """Endpoints read the id as request.state.request_id, the same one the response carries"""
    _, state_path = add_grader_routes(host)
    with started(host) as api:
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

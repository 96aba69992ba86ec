"""The trusted side of app hosts (workbook/hostkit.py): what comes back from a host is data,
rebuilt into exceptions that read like the learner's own, and read within bounds."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import needs_sandbox

from workbook import apphost, grading, hostkit


def raised_in(folder: Path, source: str) -> BaseException:
    """What running `source` as folder/app.py raises (the learner's side of a host)."""
    path = folder / "app.py"
    path.write_text(source, encoding="utf-8")
    try:
        exec(compile(source, str(path), "exec"), {})
    except BaseException as exc:  # noqa: BLE001 - the exception under test
        return exc
    raise AssertionError("the source raised nothing")


@pytest.fixture
def learner_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "p9_example"
    folder.mkdir()
    grading.state["problem_dir"] = folder
    return folder


def test_rebuilt_exception_keeps_type_text_and_learner_lines(learner_folder: Path) -> None:
    source = "def find(users):\n    return users['ada']\n\nfind({})\n"
    original = raised_in(learner_folder, source)

    rebuilt = hostkit.rebuild(json.loads(json.dumps(apphost.describe_exception(original, learner_folder))))

    assert (type(rebuilt).__name__, str(rebuilt), isinstance(rebuilt, KeyError)) == ("KeyError", "'ada'", True)
    assert grading.learner_frames(rebuilt) == (
        "  p9_example/app.py, line 4, in <module>\n"
        "    find({})\n"
        "  p9_example/app.py, line 2, in find\n"
        "    return users['ada']"
    )


def test_rebuilt_exception_of_a_learner_class_keeps_its_name_and_builtin_base(learner_folder: Path) -> None:
    source = "class Refused(PermissionError):\n    pass\n\nraise Refused('no entry')\n"
    original = raised_in(learner_folder, source)

    rebuilt = hostkit.rebuild(apphost.describe_exception(original, learner_folder))

    assert (type(rebuilt).__name__, str(rebuilt)) == ("Refused", "no entry")
    assert isinstance(rebuilt, PermissionError)
    assert not isinstance(rebuilt, type(original)), "the learner's class itself never reaches the grader"


def test_rebuilt_exception_keeps_its_cause(learner_folder: Path) -> None:
    source = "try:\n    int('x')\nexcept ValueError as exc:\n    raise RuntimeError('bad id') from exc\n"
    original = raised_in(learner_folder, source)

    rebuilt = hostkit.rebuild(apphost.describe_exception(original, learner_folder))

    assert (type(rebuilt).__name__, str(rebuilt)) == ("RuntimeError", "bad id")
    cause = rebuilt.__cause__
    assert cause is not None
    assert (type(cause).__name__, str(cause)) == ("ValueError", "invalid literal for int() with base 10: 'x'")


def test_malformed_descriptions_become_plain_exceptions(learner_folder: Path) -> None:
    described = {"type": "not an identifier!", "text": "bad \udcff text \x00", "bases": ["os"], "frames": [["x"]]}

    rebuilt = hostkit.rebuild(described)

    assert (type(rebuilt).__name__, isinstance(rebuilt, Exception)) == ("Exception", True)
    assert str(rebuilt).encode("utf-8")  # valid text: no lone surrogate left
    assert isinstance(hostkit.rebuild("not a dict"), hostkit.HostError)


def test_the_traceback_module_reads_a_rebuilt_exception(learner_folder: Path) -> None:
    original = raised_in(learner_folder, "x = 1\ny = 2\nraise ValueError('line three')\n")

    rebuilt = hostkit.rebuild(apphost.describe_exception(original, learner_folder))

    last = traceback.extract_tb(rebuilt.__traceback__)[-1]
    assert (Path(last.filename), last.lineno, last.line) == (
        learner_folder / "app.py",
        3,
        "raise ValueError('line three')",
    )


def answering(data: bytes) -> hostkit._Line:
    """A connection whose other end sends `data` (from a thread: it may not fit the buffer)."""
    ours, theirs = socket.socketpair()

    def send() -> None:
        with contextlib.suppress(OSError):
            theirs.sendall(data)

    threading.Thread(target=send, daemon=True).start()
    line = hostkit._Line(ours)
    line.peer = theirs  # type: ignore[attr-defined] - kept open (and alive) for the test
    return line


def test_an_answer_over_the_size_limit_ends_the_host() -> None:
    line = answering(b"x" * (hostkit.MAX_ANSWER_BYTES + 10))
    with pytest.raises(hostkit.HostGone, match="over the size limit"):
        line.ask({"op": "raised"}, timeout=5)


def test_an_answer_that_is_not_json_ends_the_host() -> None:
    line = answering(b"\xff\xfe not json\n")
    with pytest.raises(hostkit.HostGone, match="not an answer"):
        line.ask({"op": "raised"}, timeout=5)


def test_a_silent_host_ends_within_the_wait() -> None:
    ours, theirs = socket.socketpair()
    with pytest.raises(hostkit.HostGone, match="did not answer within 0.2 s"):
        hostkit._Line(ours).ask({"op": "raised"}, timeout=0.2)
    theirs.close()


def test_no_host_without_a_fork_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hostkit.HOST_SOCKETS_ENV, raising=False)
    with pytest.raises(hostkit.HostError, match="no app hosts"):
        hostkit.AppHost()


BIG_APP = """
from fastapi import FastAPI, Response

app = FastAPI()


@app.get("/small")
def small() -> dict:
    return {"size": "small"}


@app.get("/big")
def big() -> Response:
    return Response(b"x" * (40 << 20), media_type="text/plain")
"""


def test_an_answer_over_the_size_limit_is_not_read_whole(tmp_path: Path) -> None:
    folder = tmp_path / "p9_big"
    folder.mkdir()
    (folder / "app.py").write_text(BIG_APP, encoding="utf-8")
    grading.state["problem_dir"] = folder
    hostkit.ensure_hosts()
    host = hostkit.take_host()
    try:
        host.start("app", str(folder))
        client = host.client()
        small = client.get("/small")
        assert small.status_code == 200, small.text
        assert small.json() == {"size": "small"}
        with pytest.raises(hostkit.ResponseTooLarge, match="more than 32 MiB"):
            client.get("/big")
    finally:
        host.close()


def count_rebuilt(exc: BaseException) -> int:
    linked = [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return 1 + sum(count_rebuilt(e) for e in [*getattr(exc, "exceptions", ()), *linked])


def test_a_crafted_description_is_rebuilt_only_in_part(learner_folder: Path) -> None:
    """A host may describe an exception as a tree of thousands of exceptions with many frames
    each (rebuilding one such tree of 130 KB took 37 s): the trusted side rebuilds a bounded
    part of it, each exception with at most MAX_FRAMES frames."""

    def node(depth: int) -> dict:
        frames = [["@/app.py", 999_999, "f"]] * 60
        children = [node(depth + 1) for _ in range(10)] if depth < 3 else []
        return {"type": "ValueError", "bases": ["ValueError"], "text": "x", "frames": frames, "exceptions": children}

    rebuilt = hostkit.rebuild(node(0))

    assert type(rebuilt).__name__ == "ValueError"
    assert count_rebuilt(rebuilt) <= hostkit.MAX_REBUILT_EXCEPTIONS
    learner_lines = [f for f in traceback.extract_tb(rebuilt.__traceback__) if f.filename.endswith("app.py")]
    assert [(f.lineno, f.name) for f in learner_lines] == [(999_999, "f")] * hostkit.MAX_FRAMES


def test_an_answer_nested_without_end_ends_the_host() -> None:
    line = answering(b"[" * 100_000 + b"\n")
    with pytest.raises(hostkit.HostGone, match="not an answer"):
        line.ask({"op": "raised"}, timeout=5)


def test_a_sandbox_over_an_installed_package_hides_the_checks_but_not_the_probes(tmp_path: Path) -> None:
    from workbook import sandbox

    package = tmp_path / "site-packages" / "workbook"
    graders = package / "bundled" / "graders"
    for slug in ("p1_one", "p2_two"):
        (graders / slug).mkdir(parents=True)
        (graders / slug / "test_it.py").write_text("", encoding="utf-8")
        (graders / slug / "probes.py").write_text("", encoding="utf-8")

    hidden = sandbox._checks_hidden(graders, [tmp_path / "site-packages"])

    assert hidden == [
        "--tmpfs",
        str(graders),
        *("--ro-bind", str(graders / "p1_one" / "probes.py"), str(graders / "p1_one" / "probes.py")),
        *("--ro-bind", str(graders / "p2_two" / "probes.py"), str(graders / "p2_two" / "probes.py")),
    ]
    assert sandbox._checks_hidden(graders, [tmp_path / "elsewhere"]) == []


def test_a_fork_server_that_died_on_its_own_is_replaced_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a heavy load bubblewrap may fail to start a submission's fork server: no verdict on
    the code, so the checks left without an app host are graded again with a new server."""
    from support import MANIFEST, SOLUTIONS

    from workbook import engine

    problem = MANIFEST.by_number(1)
    real = engine._running_fork_server
    served: list[object] = []

    def first_one_dead(problem: object, target: object) -> object:
        server = real(problem, target)  # type: ignore[arg-type]
        if not served:
            server.end("")  # killed, not by the submission: no reason, no attack
            deadline = time.monotonic() + 10
            while server.alive and time.monotonic() < deadline:
                time.sleep(0.01)
        served.append(server)
        return server

    monkeypatch.setattr(engine, "_running_fork_server", first_one_dead)
    result = engine.grade(problem, SOLUTIONS, only=["list_starts_empty", "create_user_answers_201"])

    assert [(check.id, str(check.status)) for check in result.checks] == [
        ("list_starts_empty", "pass"),
        ("create_user_answers_201", "pass"),
    ], [check.message for check in result.checks]
    assert len(served) == 2 and served[0] is not served[1]


@needs_sandbox
def test_a_submissions_fork_server_outlives_the_thread_that_started_it() -> None:
    """bubblewrap's --die-with-parent ends the sandbox when the *thread* that started it ends:
    the thread grading one part of a problem must not take the submission's server with it."""
    from support import MANIFEST, SOLUTIONS

    from workbook import engine
    from workbook.target import GradedTarget

    problem = MANIFEST.by_number(1)
    started: list[object] = []
    part = threading.Thread(
        target=lambda: started.append(engine._running_fork_server(problem, GradedTarget(SOLUTIONS, SOLUTIONS)))
    )
    part.start()
    part.join()
    try:
        time.sleep(0.5)  # the kernel's signal to a process whose parent thread ended is at once
        assert started and started[0].process.poll() is None  # type: ignore[attr-defined]
    finally:
        engine.release(SOLUTIONS)


# --- recycling a host between checks -------------------------------------------------------

RECYCLED_APP = """
import _thread
import logging
import os
import subprocess
import threading
import time

from fastapi import FastAPI

# Where a module says it lives does not decide whether it is forgotten between checks.
__file__ = "/usr/lib/python3/dist-packages/elsewhere.py"

SETTING = os.environ.get("WB_TEST_SETTING", "unset")
HITS = []
logging.getLogger("learner").addHandler(logging.NullHandler())
app = FastAPI()


@app.post("/hit")
def hit() -> dict:
    HITS.append(1)
    os.environ["WB_TEST_LEAK"] = "leaked"
    files = sorted(os.listdir("."))
    with open("left-behind.txt", "w") as file:
        file.write("x")
    return {
        "hits": len(HITS),
        "setting": SETTING,
        "files": files,
        "handlers": len(logging.getLogger("learner").handlers),
        "pid": os.getpid(),
    }


@app.get("/leak")
def leak() -> dict:
    return {"leak": os.environ.get("WB_TEST_LEAK")}


@app.post("/linger")
def linger() -> dict:
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    return {"started": True}


@app.get("/say")
def say() -> dict:
    print("said it", flush=True)
    return {}


@app.post("/raw-thread")
def raw_thread() -> dict:
    _thread.start_new_thread(time.sleep, (30,))
    return {"started": True}


@app.post("/child")
def child() -> dict:
    subprocess.Popen(["sleep", "30"])
    return {"started": True}
"""

RECYCLED_PROBES = """
import sqlite3
import time

PATCHED = ("sqlite3.connect",)


def spy(host):
    sqlite3.connect = lambda *args, **kwargs: None


def connect_name(host):
    return sqlite3.connect.__name__


def sleepy(host):
    time.sleep(2)
"""


@pytest.fixture
def recycled_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "p9_recycled"
    folder.mkdir()
    (folder / "app.py").write_text(RECYCLED_APP, encoding="utf-8")
    (tmp_path / "probes.py").write_text(RECYCLED_PROBES, encoding="utf-8")
    grading.state["problem_dir"] = folder
    hostkit.ensure_hosts()
    return folder


@contextlib.contextmanager
def started(folder: Path, **options: Any) -> Iterator[hostkit.AppHost]:
    """A host that imported the app of `folder`, ended when the block ends."""
    host = hostkit.take_host()
    try:
        host.start("app", str(folder), **options)
        yield host
    finally:
        host.close()


def hit(host: hostkit.AppHost) -> dict:
    with host.client() as client:
        answer = client.post("/hit")
        assert answer.status_code == 200, answer.text
        return answer.json()


def test_a_recycled_host_imports_the_module_afresh_and_puts_the_process_back(recycled_folder: Path) -> None:
    probes = recycled_folder.parent / "probes.py"
    host = hostkit.take_host()
    try:
        host.start("app", str(recycled_folder), env={"WB_TEST_SETTING": "first"}, setup=[("spy", {})], probes=probes)
        first = hit(host)
        assert host.probe("connect_name") == "<lambda>"
        hostkit.give_back(host)
        again = hostkit.take_host()
        assert again is host
        host.start("app", str(recycled_folder), env={"WB_TEST_SETTING": "second"}, probes=probes)
        with host.client() as client:
            leak = client.get("/leak")  # the first check's request had set it
        assert leak.status_code == 200, leak.text
        assert leak.json() == {"leak": None}
        second = hit(host)
        assert host.probe("connect_name") == "connect"
    finally:
        host.close()
    assert first == {"hits": 1, "setting": "first", "files": [], "handlers": 1, "pid": first["pid"]}
    assert second == {"hits": 1, "setting": "second", "files": [], "handlers": 1, "pid": first["pid"]}


@pytest.mark.parametrize("leftover", ["linger", "raw-thread", "child"])
def test_a_host_whose_check_left_a_thread_or_process_running_is_ended_not_recycled(
    recycled_folder: Path, leftover: str
) -> None:
    with started(recycled_folder) as host:
        with host.client() as client:
            answer = client.post(f"/{leftover}")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"started": True}
        assert host.recycle() is False
        assert host.closed


def test_a_host_that_did_not_answer_in_time_is_ended_not_recycled(recycled_folder: Path) -> None:
    with started(recycled_folder, probes=recycled_folder.parent / "probes.py") as host:
        with pytest.raises(hostkit.HostTimeout):
            host.probe("sleepy", timeout=0.3)
        assert host.recycle() is False
        assert host.closed


def test_an_exception_keeps_the_request_it_was_raised_for_whichever_thread_collects_it() -> None:
    posted = 'POST /users with body {"name":"Ada"}'
    known = {"POST /users": posted, "GET /users": "GET /users"}
    assert hostkit._request_of({"sent": "POST /users"}, posted, known) == posted
    assert hostkit._request_of({"sent": "GET /users"}, "GET /users?limit=2", known) == "GET /users?limit=2"
    # Collected by a GET's thread, raised for another thread's POST: the POST, as it was sent.
    assert hostkit._request_of({"sent": "POST /users"}, "GET /users", known) == posted
    assert hostkit._request_of({}, "GET /users", known) == "GET /users"
    assert hostkit._request_of({"sent": "POST /users"}, None, known) == posted
    # A request this client never sent is not shown, whatever the host says.
    assert hostkit._request_of({"sent": "DELETE /admin/everything"}, "GET /users", known) == "GET /users"


def test_a_recycling_that_does_not_answer_ends_recycling_in_this_grading_process(
    recycled_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same code would hold every later check's recycling as long (here: forever)."""
    (recycled_folder / "app.py").write_text(
        RECYCLED_APP + "\nos.environ.clear = lambda: time.sleep(60)\n", encoding="utf-8"
    )
    monkeypatch.setattr(hostkit, "RECYCLE_WAIT_S", 0.5)
    monkeypatch.setattr(hostkit, "_recycling", True)
    with started(recycled_folder) as host:
        assert host.recycle() is False
        assert hostkit._recycling is False
    fresh = hostkit.take_host()
    try:
        assert fresh is not host
        assert fresh.recycle() is False  # not even asked: a new process for each check now
        assert fresh.closed
    finally:
        fresh.close()


def test_a_host_ended_for_a_hang_keeps_what_it_printed(recycled_folder: Path) -> None:
    with started(recycled_folder) as host:
        with host.client() as client:
            answer = client.get("/say")
        assert answer.status_code == 200, answer.text
        sampler = hostkit.RemoteSampler([host])
        sampler.threads(set())  # as the hang watch does before it stops a check
        sampler.stop()
        assert host.closed
        assert "said it" in host.log()

"""The trusted side of app hosts (workbook/hostkit.py): what comes back from a host is data,
rebuilt into exceptions that read like the learner's own, and read within bounds."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import traceback
from pathlib import Path

import pytest

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
    return hostkit._Line(ours)


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

"""The grading child process: runs one problem's graders and reports each check as a JSON
line in an events file. The parent (engine.py) trusts only that file, never our output.

Started as ``python -I -c BOOT ROOT --problem SLUG --events FILE --check-timeout S --seed N NODEID...``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import pytest

from workbook import causes, hangs, learnercode, translate
from workbook.manifest import BUNDLED_GRADERS, ROOT, check_id_of, graders_root, load_manifest
from workbook.results import STARTER_STOPPED, Kind, Status
from workbook.safetext import learner_text
from workbook.sandbox import limit_processes

# `from workbook import grading` stays inside the functions below: the fork server preloads
# this module before each run's environment is set, and grading reads the run's seed
# (WORKBOOK_SEED) when it is imported.
from workbook.words import counted

# A process that must be replaced after a check left a thread stuck in learner code.
EXIT_RESTART = 3
TOKEN_ENV = "WORKBOOK_EVENTS_TOKEN"
MAX_OUTPUT_CHARS = 2000
MAX_TRACEBACK_CHARS = 8000


class LearnerExit(Exception):
    """The learner's code tried to end the process (sys.exit, KeyboardInterrupt)."""


class Events:
    """The channel to the engine. The file is unlinked as soon as it is open, and every
    event carries a token the engine gave us, so code under grading finds no path to
    write forged results to, and lines without the token are ignored."""

    def __init__(self, path: str, token: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        os.unlink(path)
        self._token = token

    def emit(self, event: str, **fields: Any) -> None:
        # Capped here too: the engine drops any event line over 256 KiB whole, and a 5 MB
        # import error must still arrive as a (shortened) message.
        capped = {key: learner_text(value) if isinstance(value, str) else value for key, value in fields.items()}
        self._file.write(json.dumps({"event": event, "token": self._token, **capped}) + "\n")
        self._file.flush()


def main(argv: list[str]) -> None:
    limit_processes()
    args = _parse(argv)
    sys.argv = sys.argv[:1]  # learner code has no business with our arguments
    sys.dont_write_bytecode = True  # never leave __pycache__ in the learner's folder
    events = Events(args.events, os.environ.pop(TOKEN_ENV, ""))

    from workbook import grading

    # The one read of the manifest in this process: the graders get the problem from here.
    problem = load_manifest().by_slug(args.problem)
    if not problem.hosted:
        # Warm imports, so the import time limit is the learner's alone.
        from fastapi.testclient import TestClient  # noqa: F401

    grading.configure(problem, args.seed)
    grading.cheap_password_hashing()  # before the first import of the learner's code
    events.emit("ready")
    events.emit("importing")
    try:
        _import_once(problem)
    except grading.LearnerImportError as exc:
        events.emit("import", ok=False, message=str(exc))
        _leave(0)
    events.emit("import", ok=True)

    known_hang = _known_hang(args.known_hang)
    if known_hang is not None:
        grading.note_stuck(*known_hang)
    reporter = Reporter(events, args.check_timeout, known_hang)
    pytest.main(_pytest_args(problem.grader_dir, args.nodeids), plugins=[reporter])
    events.emit("done")
    _leave(0)


def _import_once(problem: Any) -> None:
    """Import the learner's module once before the checks, so an import that fails is one
    result for every check: in an app host for a hosted problem (this process never imports
    learner code then, issue 11), else here. Raises LearnerImportError."""
    from workbook import grading, hostkit

    if not problem.hosted:
        grading.import_learner(problem)
        return
    try:
        grading.open_host(problem)
    except hostkit.HostError:
        pass  # no verdict on the learner's code: each check meets it and says so
    finally:
        hostkit.give_back_all()  # the first check imports the module afresh in its host


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="workbook-runner")
    parser.add_argument("--problem", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--check-timeout", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True, help="seed of the random test data")
    parser.add_argument("--known-hang", default="", help="JSON {site, check}: an earlier check hung there")
    parser.add_argument("nodeids", nargs="+")
    return parser.parse_args(argv)


def _known_hang(text: str) -> tuple[hangs.Site, str] | None:
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    site = hangs.Site.from_dict(data.get("site"))
    return (site, str(data.get("check"))) if site is not None else None


def _pytest_args(grader_dir: Path, nodeids: list[str]) -> list[str]:
    # The grader folder in use (bundled, or an instructor's --graders copy); a copy without
    # settings of its own runs with the bundled ones.
    graders = grader_dir.parent
    ini = graders / "pytest.ini"
    if not ini.is_file():
        ini = BUNDLED_GRADERS / "pytest.ini"
    return [
        *nodeids,
        "-c",
        str(ini),
        "--rootdir",
        str(graders),
        "--confcutdir",
        str(graders),
        "-q",
        "-p",
        "no:cacheprovider",
        # We never show pytest's traceback, and building it costs ~0.4 s per failing check.
        "--tb=no",
        # The checks' tmp_path folders in this process's own working folder (the engine's
        # scratch), not the user's shared pytest-of-<user>: there each grading process made
        # a numbered folder and removed older ones, seconds after a big test run.
        "--basetemp",
        str(Path.cwd() / "pytest-tmp"),
    ]


def _leave(code: int) -> None:
    """Exit at once: a thread stuck in learner code must not keep the process alive."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Reporter:
    """A pytest plugin: runs each check's body under a time limit and reports it."""

    def __init__(self, events: Events, check_timeout: float, known_hang: tuple[hangs.Site, str] | None = None) -> None:
        self.events = events
        self.check_timeout = check_timeout
        self.known_hang = known_hang
        self.current = ""
        self.started: dict[str, float] = {}
        self.outcome: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.started[nodeid] = time.perf_counter()
        self.current = check_id_of(nodeid)
        self.events.emit("start", id=self.current)

    def pytest_pyfunc_call(self, pyfuncitem: Any) -> bool:
        from workbook import grading

        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in names}
        folder = grading.state.get("problem_dir")
        try:
            hangs.run_check(
                lambda: grading.work_for_current_check(lambda: _call_guarded(pyfuncitem.obj, kwargs)),
                self.check_timeout,
                folder,
                self.known_hang,
                grading.learner_sampler(),
            )
        except hangs.Hang as hang:
            if not hang.clean:
                grading.state["tainted"] = True
            if hang.site is not None and self.known_hang is None:
                self.known_hang = (hang.site, self.current)
            grading.note_stuck(hang.site, self.current)
            raise grading.CheckTimeout(
                _hang_text(hang, self.check_timeout), site=hang.site, blocked_by=hang.blocked_by
            ) from None
        return True

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: Any, call: Any) -> Any:
        outcome = yield
        report = outcome.get_result()
        if call.excinfo is not None and item.nodeid not in self.outcome:
            self.outcome[item.nodeid] = classify(call.excinfo.value)
        if call.when == "call" and _tainted():
            self._finish(item.nodeid, report)
            _leave(EXIT_RESTART)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self._finish(nodeid, None)

    def _finish(self, nodeid: str, report: Any) -> None:
        if nodeid not in self.started:
            return
        result = self.outcome.get(nodeid, {"status": Status.PASS, "message": None, "kind": Kind.PASS})
        duration = time.perf_counter() - self.started.pop(nodeid)
        self.events.emit("result", id=check_id_of(nodeid), duration_s=round(duration, 4), **result)

    def pytest_runtest_logreport(self, report: Any) -> None:
        captured = (report.capstdout or "") + (report.capstderr or "")
        if captured and report.nodeid in self.outcome:
            cut = len(captured) - MAX_OUTPUT_CHARS
            tail = captured[-MAX_OUTPUT_CHARS:]
            self.outcome[report.nodeid]["output"] = f"… ({cut} earlier characters cut)\n{tail}" if cut > 0 else tail


def _hang_text(hang: hangs.Hang, limit: float) -> str:
    """What a stopped check says, leading with what differed: no answer, and where the
    learner's code was at that moment."""
    if hang.blocked_by and hang.site is not None:
        return (
            f"Stopped after {hang.seconds:.1f} s: stuck at the same place as check {hang.blocked_by}, "
            f"{hang.site.describe()}."
        )
    if hang.site is not None and hang.seconds < limit:
        return (
            f"No answer after {hang.seconds:.1f} s: {hang.site.describe()}, and stayed there. "
            "Is there an endless loop, or a wait for something that never comes?"
        )
    if hang.site is not None:
        return f"This check did not finish within {limit:g} s: {hang.site.describe()}."
    return (
        f"This check did not finish within {limit:g} s: something in your code never returns "
        "(an endless loop, or waiting for something that never comes)."
    )


def _tainted() -> bool:
    from workbook import grading

    return bool(grading.state["tainted"])


def _call_guarded(function: Any, kwargs: dict[str, Any]) -> Any:
    try:
        return function(**kwargs)
    except (SystemExit, KeyboardInterrupt) as exc:
        raise LearnerExit(_exit_text(exc)).with_traceback(exc.__traceback__) from None


def _exit_text(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"Your code called sys.exit({exc.code!r}); a web app must never end the process."
    return "Your code raised KeyboardInterrupt."


def classify(exc: BaseException) -> dict[str, Any]:
    """Turn what a check raised into a status and a message for the learner."""
    from workbook import grading

    # What the failure was sent with: the request the app raised for, never an earlier
    # one (issue 14); a stopped check shows the last request it sent.
    sent = grading.sent_with(exc)
    if isinstance(exc, grading.LearnerImportError):
        return {"status": Status.ERROR, "message": str(exc), "kind": Kind.IMPORT}
    host_failure = _host_failure(exc, sent or grading.last_sent())
    if host_failure is not None:
        return host_failure
    if isinstance(exc, grading.CheckTimeout):
        site = exc.site.as_dict() if exc.site is not None else None
        return {
            "status": Status.ERROR,
            "message": _with_sent(str(exc), grading.last_sent(), "last request sent"),
            "kind": Kind.TIMEOUT,
            "site": site,
            "blocked_by": exc.blocked_by,
        }
    if isinstance(exc, AssertionError) and not _raised_in_learner_code(exc):
        return _classify_mismatch(exc)
    # The framework may wrap what the learner's code raised (task groups, cancellation).
    chain = list(_exception_chain(exc))
    exiting = next((e for e in chain if isinstance(e, (LearnerExit, SystemExit, KeyboardInterrupt))), None)
    if exiting is not None:
        text = str(exiting) if isinstance(exiting, LearnerExit) else _exit_text(exiting)
        return {"status": Status.FAIL, "message": _with_sent(text, sent, "while handling"), "kind": Kind.LEARNER}
    missing = next((e for e in chain if _missing_learner_name(e)), None)
    if missing is not None:
        return {"status": Status.FAIL, "message": _missing_name_text(missing), "kind": Kind.LEARNER}
    learner = next((e for e in chain if grading.learner_frames(e)), None)
    # A library error the learner can meet, said as what to do, leads the message.
    todo = translate.advice(chain)
    lead = f"{todo}\n" if todo else ""
    if learner is not None:
        text = _with_sent(f"{lead}Your code raised {_exception_text(learner)}", sent, "while handling")
        return {
            "status": Status.FAIL,
            "message": f"{text}\n{grading.learner_frames(learner)}",
            "site": _waited_site(),
            "kind": Kind.LEARNER,
            "traceback": _full_traceback(learner),
            **_raised_cause(learner),
        }
    if _raised_in_workbook(exc):
        where = traceback.extract_tb(exc.__traceback__)[-1]
        text = (
            "The grader itself failed; this is a bug in the workbook, not in your code: "
            f"{_exception_text(exc)} at {Path(where.filename).name}:{where.lineno}"
        )
        return {"status": Status.ERROR, "message": text, "kind": Kind.INTERNAL}
    head = f"While handling {sent}, the framework raised" if sent else "The framework raised"
    text = f"{lead}{head} {_exception_text(exc)}"
    if type(exc).__name__ == "CancelledError":
        # SystemExit in a worker thread reaches the test client only as a bare cancellation.
        text += ": your code ended the request abruptly. Does it call sys.exit() or raise SystemExit?"
    return {"status": Status.FAIL, "message": text, "kind": Kind.LEARNER}


# What a learner reads when the process running their app (workbook/apphost.py) failed as
# a process rather than raising: the trusted side only sees the connection end.
HOST_ENDED = (
    "Your app's process ended{during}: {reason}. Does your code call os._exit() or kill its own "
    "process, or use more than 1 GiB of memory?"
)


def _host_failure(exc: BaseException, sent: str | None) -> dict[str, Any] | None:
    """The result of a check whose app host ended or whose host starter stopped, or None."""
    from workbook import hostkit

    if isinstance(exc, hostkit.StarterGone):
        return {"status": Status.ERROR, "message": STARTER_STOPPED.format(reason=exc), "kind": Kind.EXIT}
    if isinstance(exc, hostkit.HostGone):
        during = f" while handling {sent}" if sent else ""
        return {"status": Status.ERROR, "message": HOST_ENDED.format(during=during, reason=exc), "kind": Kind.EXIT}
    if isinstance(exc, hostkit.StartupFailed):
        return _startup_failed(exc)
    if isinstance(exc, hostkit.ResponseTooLarge):
        text = f"{str(exc).capitalize()}{f' to {sent}' if sent else ''}; the grader stopped reading there."
        return {"status": Status.FAIL, "message": text, "kind": Kind.LEARNER}
    if isinstance(exc, hostkit.HostError):
        return {"status": Status.ERROR, "message": f"The process running your app failed: {exc}.", "kind": Kind.EXIT}
    return None


def _startup_failed(exc: Any) -> dict[str, Any]:
    from workbook import hangs

    sites = [hangs.Site.from_dict(data) for data in exc.threads.values()]
    site = next((s for s in sites if s is not None), None)
    where = f": {site.describe()}" if site is not None else ""
    if str(exc) == "startup did not finish":
        text = f"Your app's startup (the lifespan before `yield`) did not finish{where}."
    else:
        text = f"Your app's startup failed ({exc}){where}."
    if exc.log:
        text += "\n  The server printed:\n" + "\n".join("    " + line for line in exc.log.splitlines()[-12:])
    return {"status": Status.FAIL, "message": text, "kind": Kind.LEARNER, "site": site.as_dict() if site else None}


def _classify_mismatch(exc: AssertionError) -> dict[str, Any]:
    """A grader's failed expectation: what differed, and the learner exception behind it
    when there is one (issue 14, item 2)."""
    from workbook import grading

    message = str(exc) or "A check assertion failed."
    root = _learner_root(exc, message)
    if root is not None:
        # The mismatch came from an exception in the learner's code (a 500, a startup
        # that raised): that exception at its line is the cause (issue 14, item 2).
        return {
            "status": Status.FAIL,
            "message": _with_advice(_with_raised(message, root), translate.advice(_exception_chain(root))),
            "kind": Kind.ASSERTION,
            "site": _waited_site(),
            **_raised_cause(root),
        }
    logged = _raised_in_server_log(message)
    if logged:
        # A real server's log shows a traceback through the learner's code: that
        # exception at that line is the cause, as when it is raised in this process.
        return {"status": Status.FAIL, "message": message, "kind": Kind.ASSERTION, "site": _waited_site(), **logged}
    return {
        "status": Status.FAIL,
        "message": _with_advice(message, _reported_library_error(exc, message)),
        "kind": Kind.ASSERTION,
        "site": _waited_site(),
        # Checks that waited in vain for the same thing fail for one reason (issue 14, item 2).
        "cause": causes.missing_answer_key(message) if grading.state.get("wait_expired") else "",
    }


def _learner_root(failure: AssertionError, message: str) -> BaseException | None:
    """The exception in the learner's code a failed check reports: the one the grader gave
    as `because`, or one it failed while handling and names in its message (a lifespan
    startup that raised), or one the app raised for a request it answered with a 500."""
    from workbook import grading

    declared = failure.__cause__  # grading.fail(..., because=exc)
    if declared is not None and _learners(declared):
        return declared
    for exc in list(_exception_chain(failure))[1:]:
        if _learners(exc) and type(exc).__name__ in message:
            return exc
    # "status 500, expected 201", or a body that is not JSON because it was a 500 page.
    if "status 500" in message:
        raised = [exc for exc in grading.server_errors() if _learners(exc)]
        if raised:
            return raised[-1]
    return None


def _learners(exc: BaseException) -> bool:
    """Raised through the learner's code, and not by a grader (an endpoint a check adds to
    make a 500 on purpose passes through the learner's middleware too)."""
    from workbook import grading

    return bool(grading.learner_frames(exc)) and not _raised_in_workbook(exc)


# A traceback as uvicorn logs it: 'File "/.../p3_chat_rooms/app.py", line 33, in connect'.
LOGGED_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in \S+')
LOGGED_ERROR = re.compile(
    r"^\s*(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Iteration))(?::\s*(?P<text>.*))?$"
)


def _raised_in_server_log(message: str) -> dict[str, str]:
    """The cause key and headline of the last exception a server log in `message` shows
    raised in the learner's files, or {} when it shows none."""
    from workbook import grading

    folder = grading.state.get("problem_dir")
    if folder is None:
        return {}
    marker = f"/{folder.name}/"
    lines = message.splitlines()
    found: tuple[str, str, str, str] | None = None
    for index, line in enumerate(lines):
        frame = LOGGED_FRAME.match(line)
        if frame is None or marker not in frame.group("file"):
            continue
        error = next((m for m in map(LOGGED_ERROR.match, lines[index + 1 :]) if m is not None), None)
        if error is not None:
            where = frame.group("file").split(marker, 1)[1]
            found = (where, frame.group("line"), error.group("type").rsplit(".", 1)[-1], error.group("text") or "")
    if found is None:
        return {}
    where, line, kind, text = found
    return {
        "cause": f"raised:{where}:{line}:{kind}",
        "raised": f"{where} line {line} raised {kind}" + (f": {text.strip()}" if text.strip() else ""),
    }


def _reported_library_error(failure: AssertionError, message: str) -> str | None:
    """What to do about a library error the grader failed while handling and names in its
    message (a lifespan without `yield` fails inside contextlib, not in the learner's code)."""
    named = [exc for exc in list(_exception_chain(failure))[1:] if type(exc).__name__ in message]
    return translate.advice(named)


def _with_advice(message: str, advice: str | None) -> str:
    """`message` with what to do about a library error as its second line."""
    if not advice:
        return message
    first, *rest = message.splitlines() or [""]
    return "\n".join([first, f"  {advice}", *rest])


def _with_raised(message: str, root: BaseException) -> str:
    """`message`, plus which exception the learner's code raised and where, unless it says so."""
    from workbook import grading

    frames = grading.learner_frames(root)
    lines = message.splitlines()
    said = [line for line in lines if type(root).__name__ in line]
    extra = [] if said else [f"  because your code raised {_exception_text(root)}"]
    if frames and frames.splitlines()[0] not in lines:
        extra.append(frames)
    return "\n".join([message, *extra]) if extra else message


def _raised_cause(exc: BaseException) -> dict[str, str]:
    """The cause key and headline of an exception the learner's code raised: the same
    exception type at the same line is one cause, whatever its data."""
    from workbook import grading

    folder = grading.state.get("problem_dir")
    if folder is None:
        return {}
    frames = [
        frame for frame in traceback.extract_tb(exc.__traceback__) if learnercode.is_under(frame.filename, folder)
    ]
    if not frames:
        return {}
    where = Path(frames[-1].filename).resolve().relative_to(folder).as_posix()
    line = frames[-1].lineno
    return {
        "cause": f"raised:{where}:{line}:{type(exc).__name__}",
        "raised": f"{where} line {line} raised {_exception_text(exc).splitlines()[0]}",
    }


def _waited_site() -> dict[str, Any] | None:
    """Where the learner's code was when a bounded wait of this check expired, if one did."""
    from workbook import grading

    site = grading.state.get("waited_site")
    return site.as_dict() if site is not None else None


def _exception_chain(exc: BaseException, limit: int = 30) -> Any:
    """`exc`, the exceptions it was raised from or during, and the members of groups."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < limit:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(getattr(current, "exceptions", ()) or ())
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _missing_learner_name(exc: BaseException) -> bool:
    """An AttributeError for a name the grader expected on the learner's module or class:
    looked up by a grader (or by pytest's monkeypatch for it), never passing through the
    learner's code. One raised there (a typo such as `repo.list_user()`, or a dependency given
    without `Depends`) is the learner's exception, reported with its file and line, even when
    the object it names is the learner's."""
    from workbook import grading

    if not isinstance(exc, AttributeError) or not getattr(exc, "name", None):
        return False
    if grading.learner_frames(exc):
        return False
    if hasattr(exc, "workbook_learners_owner"):  # rebuilt from an app host (workbook/hostkit.py)
        return bool(exc.workbook_learners_owner)
    owner = getattr(exc, "obj", None)
    module = owner if isinstance(owner, ModuleType) else sys.modules.get(getattr(owner, "__module__", "") or "")
    folder = grading.state.get("problem_dir")
    return folder is not None and learnercode.is_under(getattr(module, "__file__", None) or "", folder)


def _missing_name_text(exc: AttributeError) -> str:
    owner = exc.obj
    where = f"`{owner.__name__}`" if isinstance(owner, (ModuleType, type)) else f"your {type(owner).__name__} object"
    return (
        f"The grader needs `{exc.name}` on {where}, and your code does not define it. "
        "The problem's README lists the names the grader uses; keep them as they are spelled there."
    )


def _full_traceback(exc: BaseException) -> str:
    """The traceback for `workbook check -v`: the learner's frames, plus the library frame
    that raised when that is not the learner's (issue 14, item 6); the framework frames in
    between (often 60 of them) are only counted."""
    from workbook import grading

    folder = grading.state.get("problem_dir")
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not _grading_machinery(frame.filename)]
    kept = [
        frame
        for index, frame in enumerate(frames)
        if index == len(frames) - 1 or (folder is not None and learnercode.is_under(frame.filename, folder))
    ]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.StackSummary.from_list(kept).format()
    if len(frames) > len(kept):
        lines.append(f"  ({counted(len(frames) - len(kept), 'frame')} of the framework left out)\n")
    text = "".join(lines + traceback.format_exception_only(type(exc), exc))
    return text if len(text) <= MAX_TRACEBACK_CHARS else "...\n" + text[-MAX_TRACEBACK_CHARS:]


def _grading_machinery(filename: str) -> bool:

    parts = Path(filename).parts
    if "_pytest" in parts or "pluggy" in parts:
        return True
    return learnercode.is_under(filename, ROOT / "workbook") or learnercode.is_under(filename, graders_root())


def _exception_text(exc: BaseException) -> str:
    text = str(exc).strip()
    if len(text) > 600:
        text = text[:597] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _with_sent(text: str, sent: str | None, label: str) -> str:
    return f"{text}\n  {label}: {sent}" if sent else text


def _innermost_file(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return frames[-1].filename if frames else ""


def _raised_in_learner_code(exc: BaseException) -> bool:
    from workbook import grading

    folder = grading.state.get("problem_dir")
    return folder is not None and learnercode.is_under(_innermost_file(exc), folder)


def _raised_in_workbook(exc: BaseException) -> bool:

    file = _innermost_file(exc)
    return any(learnercode.is_under(file, folder) for folder in (BUNDLED_GRADERS, ROOT / "workbook", graders_root()))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Issue 11, item 1: the trusted/untrusted split under attack. A tiny hosted problem of our
own (a manifest, a grader folder with `probes.py` and three checks, and a learner folder,
all under tmp_path) is graded through the real engine, so the sandbox, the fork server and
the app hosts are in play. Each test appends one attack class of issue 11 to a *wrong* app
(it does not reverse, and its score() is 0) and proves that the attack gains no check and,
where it matters, changes nothing outside the host's scratch folder and leaves a correct
neighbour's verdicts whole.

An attack that finds what it looks for raises `ATTACK SUCCEEDED: ...` where it runs: at
import, that fails the import and the text reaches the check's message, where the tests
look for it. Attacks that could harm the machine were the sandbox missing (signals to -1,
bombs) run only inside it (WORKBOOK_SANDBOXED=1), from the app's handlers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import secrets
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import SUCCEEDED, kill_all, loopback_listener, needs_sandbox, survivors

from workbook import engine
from workbook.jsonout import to_data
from workbook.manifest import BUNDLED_GRADERS, MANIFEST_ENV, ROOT, load_manifest
from workbook.sandbox import isolation

SLUG = "h1_echo"
# The wrong app's verdicts without any attack: what an attack must not improve on.
BASELINE = {"reverses_a_word": "fail", "score_sums_the_values": "fail", "health_answers_ok": "pass"}
# Three checks of a trivial app take about 1 s; an attacked run may wait out a host's
# connection timeout (hostkit.CONNECT_WAIT_S) or a check's time limit, never much more.
GRADE_BOUND_S = 45
MAX_REPORT_MESSAGE_CHARS = 10_000


MANIFEST_TEXT = f"""
[workbook]
title = "app hosts under attack"
check_timeout_s = 5
time_limit_s = {GRADE_BOUND_S - 5}

[[problems]]
number = 1
slug = "{SLUG}"
title = "Echo"
module = "app"
files = ["app.py"]
lesson = "none"
hints = ["none"]
"""

PROBES = '''
def total(host, values):
    """score(values), called in the host with the values the grader chose."""
    return host.module.score(values)
'''

GRADER = '''
from workbook.grading import expect, rng


def test_reverses_a_word(host):
    """GET /reverse/{word} answers the word reversed"""
    word = "".join(rng.choice("abcdefghij") for _ in range(16))
    response = host.client().get(f"/reverse/{word}")
    expect(response.status_code == 200, "GET /reverse answered another status.", got=str(response.status_code))
    expect(response.json() == {"word": word[::-1]}, "GET /reverse did not reverse the word.", got=response.text)


def test_score_sums_the_values(host):
    """score(values) is their sum"""
    values = [rng.randrange(1, 10**9) for _ in range(8)]
    got = host.probe("total", values=values)
    expect(got == sum(values), "score() is not the sum of the values.", expected=str(sum(values)), got=repr(got))


def test_health_answers_ok(host):
    """GET /health answers ok"""
    response = host.client().get("/health")
    expect(response.json() == {"ok": True}, "GET /health did not answer ok.", got=response.text)
'''

WRONG_APP = """
from fastapi import FastAPI

app = FastAPI()


def attack_on_reverse():
    pass


def attack_on_health():
    pass


@app.get("/reverse/{word}")
def reverse(word: str):
    attack_on_reverse()
    return {"word": word}


@app.get("/health")
def health():
    attack_on_health()
    return {"ok": True}


def score(values):
    return 0
"""

RIGHT_APP = (
    WRONG_APP.replace('return {"word": word}', 'return {"word": word[::-1]}')
    .replace("return 0", "return sum(values)")
    .replace("attack_on_reverse()\n", "")
    .replace("attack_on_health()\n", "")
)


# --- the tiny hosted problem, its submissions and what must not change --------------------


class Tiny:
    """The problem's manifest and graders, an instructor's HOME and a class folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = folder / "workbook.toml"
        self.graders = folder / "graders"
        self.home = folder / "home"
        self.submissions = folder / "submissions"
        for made in (self.graders / SLUG, self.home, self.submissions):
            made.mkdir(parents=True, exist_ok=True)
        self.manifest.write_text(MANIFEST_TEXT, encoding="utf-8")
        (self.graders / "conftest.py").write_bytes((BUNDLED_GRADERS / "conftest.py").read_bytes())
        (self.graders / SLUG / "probes.py").write_text(PROBES, encoding="utf-8")
        (self.graders / SLUG / "test_echo.py").write_text(GRADER, encoding="utf-8")
        (self.home / ".bashrc").write_text("# the instructor's\n", encoding="utf-8")

    def submission(self, name: str, app: str) -> Path:
        """A graded root (laid out like exercises/) holding `app` as the problem's app.py."""
        root = self.submissions / name
        (root / SLUG).mkdir(parents=True, exist_ok=True)
        (root / SLUG / "app.py").write_text(app, encoding="utf-8")
        return root

    def attacker(self, attack: str, *, on_reverse: str = "", on_health: str = "") -> Path:
        """The wrong app with `attack` run at import and the handlers' attacks in its endpoints."""
        app = WRONG_APP + "\n\n" + textwrap.dedent(attack)
        for name, body in (("attack_on_reverse", on_reverse), ("attack_on_health", on_health)):
            if body:
                app += f"\n\ndef {name}():\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n"
        return self.submission("mallory", app)

    def grade(self, root: Path) -> engine.ProblemResult:
        problem = load_manifest(self.manifest).by_slug(SLUG)
        return engine.grade(problem, root, graders=self.graders)

    def snapshot(self, *extra: Path) -> dict[str, str]:
        """Every file of the workbook's package, the graders, the manifest, HOME and the
        class folder (and `extra`), with its digest; and the checkout's top-level names."""
        found = {}
        folders = (ROOT / "workbook", self.graders, self.home, self.submissions, *extra)
        for folder in folders:
            for path in sorted(folder.rglob("*")) if folder.exists() else ():
                if path.is_file() and "__pycache__" not in path.parts:
                    found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(self.manifest)] = hashlib.sha256(self.manifest.read_bytes()).hexdigest()
        found["checkout"] = " ".join(sorted(p.name for p in ROOT.iterdir()))
        return found


@pytest.fixture(scope="module")
def module_tiny(tmp_path_factory) -> Tiny:
    return Tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def tiny(module_tiny, monkeypatch) -> Tiny:
    monkeypatch.setenv(MANIFEST_ENV, str(module_tiny.manifest))
    monkeypatch.setenv("HOME", str(module_tiny.home))
    for root in module_tiny.submissions.iterdir():
        engine.release(root)
    return module_tiny


def statuses(result: engine.ProblemResult) -> dict[str, str]:
    return {check.id: str(check.status) for check in result.checks}


def messages(result: engine.ProblemResult) -> str:
    return "\n".join(f"{check.id} [{check.status}/{check.kind}]: {check.message}" for check in result.checks)


def assert_gains_nothing(result: engine.ProblemResult) -> None:
    """No check passes that the wrong app fails, and no attack reported a find."""
    gained = [check for check, status in statuses(result).items() if status == "pass" and BASELINE[check] != "pass"]
    assert gained == [], f"the attack gained {gained}:\n{messages(result)}"
    assert SUCCEEDED not in messages(result), messages(result)
    assert result.isolation == isolation().label


def assert_same_verdicts_as_the_wrong_app(result: engine.ProblemResult) -> None:
    """The attack gained nothing and lost nothing: every check as the plain wrong app's."""
    assert_gains_nothing(result)
    assert statuses(result) == BASELINE, messages(result)


def assert_unchanged(before: dict[str, str], after: dict[str, str]) -> None:
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    assert changed == [], f"the attack changed {changed}"


# --- the problem itself --------------------------------------------------------------------


@needs_sandbox
def test_the_tiny_problem_is_hosted_and_tells_right_from_wrong(tiny):
    """The ground every other test stands on: hosted, sandboxed, and the checks discriminate."""
    problem = load_manifest(tiny.manifest).by_slug(SLUG)
    assert dataclasses.replace(problem, graders=tiny.graders).hosted
    right = tiny.grade(tiny.submission("alice", RIGHT_APP))
    wrong = tiny.grade(tiny.submission("mallory", WRONG_APP))
    assert set(statuses(right).values()) == {"pass"}, messages(right)
    assert statuses(wrong) == BASELINE, messages(wrong)
    assert right.isolation == isolation().label


# --- 1. self-forgery ---------------------------------------------------------------------------


SELF_FORGERY = """
import sys as _sys

def _no_failure(*args, **kwargs):
    return None

def _patch(module_name, patches):
    try:
        module = __import__(module_name, fromlist=["_"])
    except Exception:
        return
    for name, value in patches.items():
        if hasattr(module, name):
            setattr(module, name, value)

_patch("workbook.grading", {"expect": _no_failure, "fail": _no_failure, "expect_status": _no_failure,
                            "expect_json": _no_failure})
_patch("workbook.runner", {"classify": lambda *a, **k: ("pass", "pass", None)})
try:
    import _pytest.runner as _runner
    _original = _runner.call_and_report
    def _always_passed(item, when, log=True, **kwargs):
        report = _original(item, when, log, **kwargs)
        report.outcome = "passed"
        report.longrepr = None
        return report
    _runner.call_and_report = _always_passed
except Exception:
    pass
try:
    import workbook.hostkit as _hostkit
    _hostkit.AppHost.probe = lambda self, name, **args: sum(args.get("values", []))
    _hostkit._failure = lambda answer: None
except Exception:
    pass
try:
    import workbook.apphost as _apphost
    _original_answer = _apphost.Host.answer
    def _forged(self, request, ops):
        answer = _original_answer(self, request, ops)
        if request.get("op") == "probe":
            return {"ok": True, "value": 6}  # what a correct score() answers for [1, 2, 3]
        return answer
    _apphost.Host.answer = _forged
except Exception:
    pass
"""


@needs_sandbox
def test_patching_runner_grading_pytest_and_hostkit_at_import_gains_nothing(tiny):
    """The patches land in the host, which judges nothing: the verdicts are the wrong app's,
    the same as without the patches."""
    result = tiny.grade(tiny.attacker(SELF_FORGERY))
    assert_same_verdicts_as_the_wrong_app(result)


@needs_sandbox
def test_a_canned_lie_from_the_host_fails_against_the_trusted_sides_random_data(tiny):
    """The learner module replaces apphost.Host.probe and the JSON encoder with what a
    correct app answers for a canned input: the grader's values are random, so it fails."""
    attack = """
    import workbook.apphost as _apphost
    _apphost.Host.probe = lambda self, request: 6  # score([1, 2, 3]) of a correct app
    _encoded = _apphost._encoded
    def _lying(reply):
        if reply.get("ok") is False:
            reply = {"ok": True, "value": 6}
        return _encoded(reply)
    _apphost._encoded = _lying
    """
    result = tiny.grade(tiny.attacker(attack))
    assert_same_verdicts_as_the_wrong_app(result)


# --- 2. walking gc for the channel and its token ---------------------------------------------


@needs_sandbox
def test_walking_gc_and_the_environment_finds_no_channel_and_no_token(tiny):
    attack = f"""
    import gc as _gc, os as _os
    _found = [key for key, value in _os.environ.items() if ("TOKEN" in key and value)
              or key in ("WORKBOOK_HOST_SOCKETS", "WORKBOOK_HOST_REQUESTS_FD")]
    for _object in _gc.get_objects():
        _kind = type(_object).__name__
        if _kind in ("Events", "BoundedChannel", "Reporter", "AppHost", "_Line"):
            _found.append(_kind)
        with __import__("contextlib").suppress(Exception):
            if not isinstance(_object, type) and hasattr(_object, "_token"):
                _found.append("a token in " + _kind)
    if _found:
        raise RuntimeError("{SUCCEEDED}: " + ", ".join(sorted(set(_found))))
    """
    result = tiny.grade(tiny.attacker(attack))
    assert_same_verdicts_as_the_wrong_app(result)


# --- 3. reading /proc of the trusted side ------------------------------------------------------


@needs_sandbox
def test_proc_shows_no_trusted_grading_process_and_no_events_path(tiny):
    attack = f"""
    import os as _os
    _seen = []
    for _pid in [p for p in _os.listdir("/proc") if p.isdigit()]:
        try:
            with open(f"/proc/{{_pid}}/cmdline", "rb") as _f:
                _command = _f.read()
            with open(f"/proc/{{_pid}}/environ", "rb") as _f:
                _environment = _f.read().split(b"\\0")
        except OSError:
            continue
        if b"--events" in _command or b"workbook.runner" in _command:
            _seen.append(_pid + " runs the graders")
        if any(v.startswith(b"WORKBOOK_EVENTS_TOKEN=") and len(v) > 22 for v in _environment):
            _seen.append(_pid + " holds the events token")
        if any(v.startswith(b"WORKBOOK_HOST_SOCKETS=") for v in _environment):
            _seen.append(_pid + " names the sockets folder")
    if _seen:
        raise RuntimeError("{SUCCEEDED}: " + "; ".join(_seen))
    """
    result = tiny.grade(tiny.attacker(attack))
    assert_same_verdicts_as_the_wrong_app(result)


# --- 4. writing outside the host's scratch -----------------------------------------------------


@needs_sandbox
def test_writing_into_the_checkout_the_sockets_folder_and_home_fails_and_changes_nothing(tiny):
    token = secrets.token_hex(6)
    neighbour = tiny.submission("alice", RIGHT_APP)
    targets = [
        ROOT / "workbook" / "__init__.py",
        ROOT / "workbook" / "runner.py",
        ROOT / f"pwned-{token}.txt",
        tiny.graders / SLUG / "test_echo.py",
        tiny.graders / SLUG / f"test_pwned_{token}.py",
        tiny.manifest,
        tiny.home / ".bashrc",
        tiny.home / f"pwned-{token}.txt",
        neighbour / SLUG / "app.py",
    ]
    attack = f"""
    import os as _os
    _written = []
    for _target in {[str(t) for t in targets]!r}:
        # A file the sandbox does not show (a grader's checks) or a new one lands in the
        # sandbox's own throwaway /tmp, where an earlier host of this submission may have
        # left it: the snapshot of the real files judges those.
        try:
            with open(_target) as _f:
                _seen = not _f.read().endswith("# pwned\\n")
        except OSError:
            _seen = False
        try:
            with open(_target, "a") as _f:
                _f.write("\\n# pwned\\n")
            if _seen:
                _written.append(_target)
        except OSError:
            pass
    # The sockets folder: not named in the host's environment, but mounted (read-only).
    with open("/proc/self/mountinfo") as _f:
        _mounts = [line.split()[4] for line in _f]
    for _mount in _mounts:
        if _os.path.basename(_mount).startswith("wbk-"):
            try:
                with open(_os.path.join(_mount, "pwned-{token}.sock"), "w"):
                    pass
                _written.append(_mount)
            except OSError:
                pass
    if _written:
        raise RuntimeError("{SUCCEEDED}: wrote " + ", ".join(_written))
    """
    attacker = tiny.attacker(attack)
    before = tiny.snapshot()
    checkout = {path: path.read_bytes() for path in targets[:2]}
    try:
        result = tiny.grade(attacker)
        assert_same_verdicts_as_the_wrong_app(result)
        assert_unchanged(before, tiny.snapshot())
        neighbour_result = tiny.grade(neighbour)
        assert set(statuses(neighbour_result).values()) == {"pass"}, messages(neighbour_result)
    finally:
        # Were the attack to succeed, the rest of the suite must still run on the real package.
        for path, original in checkout.items():
            if path.read_bytes() != original:
                path.write_bytes(original)
        (ROOT / f"pwned-{token}.txt").unlink(missing_ok=True)


# --- 5. signals --------------------------------------------------------------------------------


SIGNALS = {
    "the fork server stopped": "os.kill(os.getppid(), signal.SIGSTOP)",
    # pid 1 of the sandbox ignores it; -1 then reaches every other process of the sandbox.
    "pid 1 and everything killed": "os.kill(1, signal.SIGKILL)\n        os.kill(-1, signal.SIGKILL)",
}


@needs_sandbox
@pytest.mark.parametrize("what", list(SIGNALS))
def test_a_signal_from_the_app_ends_in_a_clear_verdict_and_spares_a_neighbour(tiny, what):
    # Only in the sandbox: os.kill(-1, ...) outside it would reach every process of this user.
    handler = f"""
    import os, signal
    if os.environ.get("WORKBOOK_SANDBOXED") == "1":
        {SIGNALS[what]}
    """
    attacker = tiny.attacker("", on_reverse=handler)
    neighbour = tiny.submission("alice", RIGHT_APP)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        attacked, honest = pool.map(tiny.grade, [attacker, neighbour])
    took = time.monotonic() - started
    assert took < GRADE_BOUND_S, f"grading took {took:.0f} s\n{messages(attacked)}"
    assert_gains_nothing(attacked)
    reverse = next(check for check in attacked.checks if check.id == "reverses_a_word")
    assert str(reverse.status) in ("fail", "error") and reverse.message, messages(attacked)
    assert set(statuses(honest).values()) == {"pass"}, messages(honest)


# --- 6. detached children ----------------------------------------------------------------------


@contextlib.contextmanager
def released(attacker: Path, marker: str) -> Iterator[Path]:
    """`attacker`, graded in the block; then its sandbox goes, and every process of it still
    running (its command line holds `marker`) is killed, whatever the block asserted."""
    try:
        yield attacker
    finally:
        engine.release(attacker)
        kill_all(survivors(marker, wait_s=0))


@needs_sandbox
def test_detached_children_do_not_survive_grading(tiny):
    marker = f"workbook-detached-{secrets.token_hex(6)}"
    start = f"""
    import subprocess as _subprocess, sys as _sys
    _subprocess.Popen(["/bin/sh", "-c", "sleep 300", {marker!r}], start_new_session=True)
    _subprocess.Popen([_sys.executable, "-c", "import time\\nwhile True: time.sleep(1)", {marker!r}],
                      start_new_session=True)
    """
    with released(tiny.attacker(start, on_reverse=start), marker) as attacker:
        result = tiny.grade(attacker)
        assert_same_verdicts_as_the_wrong_app(result)
        # The submission's fork server stays warm (as under `watch`): its hosts' children must go anyway.
        assert survivors(marker) == []


# --- 7. network --------------------------------------------------------------------------------


@needs_sandbox
def test_the_app_cannot_reach_a_listener_on_loopback(tiny):
    with loopback_listener() as (port, accepted):
        connect = f"""
        import socket as _socket
        try:
            with _socket.create_connection(("127.0.0.1", {port}), timeout=2) as _c:
                _c.sendall(b"stolen answers")
        except OSError:
            pass
        """
        result = tiny.grade(tiny.attacker(connect, on_reverse=connect))
    assert_same_verdicts_as_the_wrong_app(result)
    assert accepted == []


# --- 8. flooding -------------------------------------------------------------------------------


def assert_bounded_and_valid(result: engine.ProblemResult) -> None:
    document = json.dumps(to_data(result), ensure_ascii=False)
    document.encode("utf-8")  # raises on a lone surrogate
    for check in result.checks:
        assert len(check.message or "") <= MAX_REPORT_MESSAGE_CHARS, f"{check.id}: {len(check.message or '')} chars"


@needs_sandbox
def test_megabytes_of_output_and_tens_of_megabytes_of_answers_keep_the_report_bounded(tiny):
    attack = """
    import sys as _sys
    for _ in range(8):
        print("x" * (1 << 20))
    _sys.stdout.flush()
    _big = "y" * (40 << 20)

    def score(values):
        return _big
    """
    result = tiny.grade(tiny.attacker(attack, on_reverse='return {"word": "z" * (40 << 20)}'))
    assert_gains_nothing(result)
    assert_bounded_and_valid(result)
    assert statuses(result)["health_answers_ok"] == "pass", messages(result)


@needs_sandbox
def test_invalid_utf8_and_lone_surrogates_in_what_the_app_raises_keep_the_report_valid(tiny):
    attack = """
    def score(values):
        raise RuntimeError("half \\ud800 pair, bad \\udcff byte")
    """
    raising = """
    raise ValueError(b"caf\\xe9 \\xff".decode("utf-8", "surrogateescape") + " \\udfff")
    """
    result = tiny.grade(tiny.attacker(attack, on_reverse=raising))
    assert_gains_nothing(result)
    assert_bounded_and_valid(result)
    by_id = {check.id: check for check in result.checks}
    assert "pair" in (by_id["score_sums_the_values"].message or ""), messages(result)
    assert str(by_id["reverses_a_word"].status) in ("fail", "error"), messages(result)


# --- 10. memory and fork bombs ---------------------------------------------------------------


def assert_later_checks_ran(result: engine.ProblemResult) -> None:
    """The bombed check (the first) ends failed or errored, as the machine's load decides
    (an exception, or its time limit); the checks after it get the wrong app's verdicts."""
    by_check = statuses(result)
    assert by_check["reverses_a_word"] in ("fail", "error"), messages(result)
    later = {check: by_check[check] for check in ("score_sums_the_values", "health_answers_ok")}
    assert later == {"score_sums_the_values": "fail", "health_answers_ok": "pass"}, messages(result)


@needs_sandbox
def test_a_memory_bomb_in_the_app_meets_the_limit_and_later_checks_still_run(tiny):
    bomb = f"""
    import os
    if os.environ.get("WORKBOOK_SANDBOXED") == "1":
        try:
            bomb = bytearray(3 << 30)
        except MemoryError:
            raise
        raise RuntimeError("{SUCCEEDED}: 3 GiB allocated")
    """
    result = tiny.grade(tiny.attacker("", on_reverse=bomb))
    assert_gains_nothing(result)
    assert_later_checks_ran(result)
    assert "MemoryError" in messages(result)


@needs_sandbox
def test_a_bounded_fork_bomb_in_the_app_dies_with_grading_and_later_checks_still_run(tiny):
    marker = f"workbook-forkbomb-{secrets.token_hex(6)}"
    bomb = f"""
    import os
    if os.environ.get("WORKBOOK_SANDBOXED") == "1":
        for _ in range(64):
            try:
                if os.fork() == 0:
                    os.setsid()
                    os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 300", {marker!r}])
            except OSError:
                break
    """
    with released(tiny.attacker("", on_reverse=bomb), marker) as attacker:
        result = tiny.grade(attacker)
        assert_gains_nothing(result)
        assert_later_checks_ran(result)
        assert survivors(marker) == []


# --- what the trusted side reads on the host's word --------------------------------------------


@needs_sandbox
def test_a_frame_naming_a_file_outside_the_sandbox_does_not_show_its_lines(tiny):
    """The host describes what the app raised, frames included; the trusted side formats the
    traceback, reading source lines of the files the frames name. A frame that names a file
    the sandbox hides (the instructor's, a reference solution) must not put its text in a report."""
    secret = f"instructor-secret-{secrets.token_hex(8)}"
    hidden = tiny.home / "secrets.txt"
    hidden.write_text(f"first line\n{secret}\n", encoding="utf-8")
    attack = f"""
    def score(values):
        exec(compile("\\nraise ValueError('peek')", {str(hidden)!r}, "exec"))
    """
    result = tiny.grade(tiny.attacker(attack))
    assert_gains_nothing(result)
    report = json.dumps(to_data(result), ensure_ascii=False)
    assert secret not in report, [check.traceback for check in result.checks if secret in (check.traceback or "")]


@needs_sandbox
def test_a_frame_naming_a_workbook_file_does_not_make_a_failure_read_as_the_workbooks_bug(tiny):
    """Only the workbook's own errors read "The grader itself failed; this is a bug in the
    workbook": the host's word that a frame was in workbook/ must not buy that verdict."""
    forged = str(ROOT / "workbook" / "grading.py")
    attack = f"""
    exec(compile("def score(values):\\n    raise ValueError('forged')", {forged!r}, "exec"))
    """
    result = tiny.grade(tiny.attacker(attack))
    assert_gains_nothing(result)
    kinds = {check.id: str(check.kind) for check in result.checks}
    assert kinds["score_sums_the_values"] != "internal", messages(result)


@needs_sandbox
def test_a_missing_function_is_the_learners_error_not_the_workbooks(tiny):
    """Honest work without `score`: the probe's AttributeError is raised in probes.py (a
    grader file), yet the verdict must name the learner's missing function."""
    result = tiny.grade(tiny.submission("mallory", WRONG_APP.replace("def score(values):\n    return 0\n", "")))
    score = next(check for check in result.checks if check.id == "score_sums_the_values")
    assert (str(score.status), str(score.kind)) != ("error", "internal"), score.message
    assert "score" in (score.message or ""), score.message


@needs_sandbox
def test_the_app_reads_neither_the_grader_files_nor_the_reference_solutions(tiny):
    """Issue 11: the host sees the learner's folder and the Python environment; of the
    graders it needs the probe menu only. An instructor's private checks must not be
    readable by the code they grade (nor the reference solutions of the checkout)."""
    readable = [tiny.graders / SLUG / "test_echo.py", ROOT / "solutions" / "p1_dependency_chain" / "app.py"]
    attack = f"""
    _read = []
    for _path in {[str(path) for path in readable]!r}:
        try:
            with open(_path, "rb") as _f:
                if _f.read(1):
                    _read.append(_path)
        except OSError:
            pass
    if _read:
        raise RuntimeError("{SUCCEEDED}: read " + ", ".join(_read))
    """
    result = tiny.grade(tiny.attacker(attack))
    assert_same_verdicts_as_the_wrong_app(result)

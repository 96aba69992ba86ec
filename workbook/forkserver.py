"""A warm fork server for grading processes (POSIX only).

Starting an interpreter and importing pytest and FastAPI costs ~0.6 s of CPU for every
grading process. When one workbook run grades many problems (--all, a class, watch), this
server imports them once and forks each grading process from that warm state instead.

The server is single-threaded on purpose: forking a process with other threads could
copy a lock some thread held (say, stdout's), and learner code printing in the child
would then wait for ever. It speaks JSON lines: on stdin it reads
`{"id", "argv", "env", "cwd", "output"}` and answers `{"id", "pid"}` on stdout; when a
grading process ends it writes `{"pid", "exit"}`. End of input stops the server, and it
ends any grading process still running.

The server shares its sandbox with the learner's code it grades, which may stop it (SIGSTOP)
or try to flood its input: it makes itself non-dumpable, so its /proc/<pid>/fd cannot be
opened from the sandbox, and the engine bounds every write to it and every wait for its
answers, past which it ends the server (ForkServer.end) and grades without it (issue 11).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from workbook.sandbox import adopted_children, become_subreaper, limit_processes, popen_options

HOST_REQUESTS_ENV = "WORKBOOK_HOST_REQUESTS_FD"  # the named pipe trusted graders ask for app hosts on
PRELOAD = (
    *("workbook.runner", "workbook.hostkit", "fastapi.testclient", "httpx"),
    *("jose.jwt", "passlib.context", "websockets.sync.client"),
)
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from workbook.forkserver import serve; serve()"
REAP_EVERY_S = 0.02
HOST_FD = -1  # in the server: the read end of its named pipe of host requests
# A request is a few hundred bytes and the server answers a fork in milliseconds. A server
# that takes longer was stopped (SIGSTOP) or flooded by the code it grades, which runs in
# its sandbox: past these bounds the engine ends it and grades without it.
WRITE_TIMEOUT_S = 2.0
ANSWER_TIMEOUT_S = 4.0


# --- the server process ---------------------------------------------------------------


def serve() -> None:
    limit_processes()
    make_undumpable()
    # A learner's process that leaves its grader's group (start_new_session=True) becomes
    # ours, and ends when its grader does: `watch` keeps this server for a whole session.
    adopting = become_subreaper()
    role = os.environ.pop("WORKBOOK_SERVER_ROLE", "")
    if role != "hosts":  # it forks grading processes
        for name in PRELOAD:
            with contextlib.suppress(ImportError):
                __import__(name)
    if role != "trusted":  # it forks app hosts
        from workbook.apphost import warm_up

        warm_up()
    # Everything imported so far lives as long as the server: out of the collector's sight,
    # a forked child's collections no longer touch (and so copy) every page of it.
    gc.freeze()
    # A check imports a FastAPI app (thousands of objects) and tears it down: at Python's
    # default of a young collection every 700 allocations, collections took ~8% of an app
    # host's CPU; every 10,000 they take ~4% (benchmarks/RESULTS.md). Cyclic garbage still
    # goes within a check; what refcounting frees goes at once, as before.
    gc.set_threshold(10_000, 10, 10)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine decides when we stop
    running: set[int] = set()
    hosts: set[int] = set()
    inputs = {0: b""}
    global HOST_FD
    HOST_FD = host_fd = int(os.environ.pop(HOST_REQUESTS_ENV, "-1"))
    if host_fd >= 0:
        inputs[host_fd] = b""
    while 0 in inputs:
        readable, _, _ = select.select(list(inputs), [], [], REAP_EVERY_S)
        for fd in readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                del inputs[fd]
                continue
            *lines, inputs[fd] = (inputs[fd] + chunk).split(b"\n")
            for line in lines:
                _obey(line, fd == 0, running, hosts)
        _reap(running, hosts, adopting)
    for pid in running | hosts:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def _obey(line: bytes, from_engine: bool, running: set[int], hosts: set[int]) -> None:
    """Carry out one request: from the engine (fork a grading process, end one), or from a
    trusted grading process (fork an app host, workbook/apphost.py)."""
    if not line.strip():
        return
    with contextlib.suppress(ValueError):
        request = json.loads(line)
        if not isinstance(request, dict):
            return
        if "host" in request and isinstance(request["host"], dict):
            hosts.add(_start_host(request["host"], closing=[HOST_FD] if HOST_FD >= 0 else []))
        elif "end_host" in request:
            # Asked by the trusted side when it is done with a host, in case the learner's
            # code keeps it from noticing that its connections closed.
            _end_grader(int(request["end_host"]), hosts)
        elif from_engine and "kill" in request:
            _end_grader(int(request["kill"]), running)
        elif from_engine:
            running.add(_start(request))


def _start_host(request: dict[str, Any], closing: list[int]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            for fd in closing:  # a host must not read its siblings' requests
                os.close(fd)
            # A pipe the host drains itself, not a file: a file would stop the learner's
            # prints with EFBIG at the sandbox's file size limit, and fail their requests.
            output, written = os.pipe()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(written, 1)
            os.dup2(written, 2)
            os.close(written)
            from workbook.apphost import run

            run(request, output)
        finally:
            os._exit(code)
    return pid


def make_undumpable() -> bool:
    """On Linux, make this process (and the graders it forks) non-dumpable: its /proc/<pid>/fd
    then belongs to root, so a grader's learner code, running as the same user in the same
    sandbox, cannot open the server's stdin through /proc and flood it. (It can still send
    the server signals: the engine's bounded waits handle that.) True when it worked."""
    if sys.platform != "linux":
        return False
    import ctypes  # lazy: Linux only

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) == 0  # 4: PR_SET_DUMPABLE
    except (OSError, AttributeError):
        return False


def _end_grader(pid: int, running: set[int]) -> None:
    """End a grading process and its group. Done here, not by the engine: in the sandbox the
    server's pids are those of its own PID namespace, and mean other processes outside."""
    if pid not in running:
        return
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(OSError):
            kill(pid, signal.SIGKILL)


def _start(request: dict[str, Any]) -> int:
    pid = os.fork()
    if pid == 0:
        _become_grader(request)
    _send({"id": request["id"], "pid": pid})
    return pid


def _become_grader(request: dict[str, Any]) -> None:
    """In the forked child: take the place of a fresh `python -I -c BOOT ...`, then grade."""
    code = 1
    try:
        os.setsid()  # a group of its own, so the engine can end it and all it starts
        signal.signal(signal.SIGINT, signal.default_int_handler)
        output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        # Lazy: the runner imports pytest, which the engine (importing this module for
        # ForkServer) must not pay for; the server has preloaded it (PRELOAD).
        from workbook.runner import main

        main(request["argv"])
        code = 0
    finally:
        os._exit(code)


def _reap(running: set[int], hosts: set[int], adopting: bool = False) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        hosts.discard(pid)
        if pid in running:  # else an app host or an adopted orphan, ended below
            running.discard(pid)
            _send({"pid": pid, "exit": os.waitstatus_to_exitcode(status)})
        if adopting:
            _end_orphans(running | hosts)


def _end_orphans(running: set[int]) -> None:
    for pid in adopted_children(running):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _send(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


# --- the engine's side ----------------------------------------------------------------


class ForkServerGone(Exception):
    """The fork server stopped, or was ended; grade with plain subprocesses instead."""


class ForkServer:
    """The engine's handle on one running server, shared by its grading threads.

    The server runs the learner's code's neighbours, so it is not trusted to answer: every
    write to it and every wait for its answer is bounded (WRITE_TIMEOUT_S, ANSWER_TIMEOUT_S),
    and past a bound the server is ended with all it forked, and `interfered` says why."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        *,
        command: list[str] | None = None,
        cwd: Path | None = None,
        scratch: Path | None = None,
    ) -> None:
        """`command` starts the server (by default a plain interpreter; the engine passes one
        in the sandbox); `scratch` is the one folder its graders may write, removed on close."""
        self.scratch = scratch
        self.sockets: Path | None = None  # where trusted graders listen for app hosts (engine)
        # Trusted grading processes ask for app hosts on a named pipe of their own, in a
        # folder the sandbox does not see: a line each, shorter than PIPE_BUF, so lines of
        # several writers never mix. By name, so that grading processes forked by a warm
        # server of their own can open it too. The engine holds a write end open, so the
        # server never reads an end of input between two writers.
        self.host_requests_folder = Path(tempfile.mkdtemp(prefix="wbq-"))
        self.host_requests = self.host_requests_folder / "hosts"
        os.mkfifo(self.host_requests, 0o600)
        host_read = os.open(self.host_requests, os.O_RDONLY | os.O_NONBLOCK)
        self.host_requests_fd = os.open(self.host_requests, os.O_WRONLY | os.O_NONBLOCK)
        try:
            self.process = subprocess.Popen(
                command or [sys.executable, "-I", "-c", BOOT, str(root)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**env, HOST_REQUESTS_ENV: str(host_read)},
                cwd=cwd,
                pass_fds=(host_read,),
                **popen_options(),
            )
        finally:
            os.close(host_read)
        # Written with os.write, never through the buffered file: a full pipe must not block.
        self.stdin_fd = self.process.stdin.fileno()  # type: ignore[union-attr]
        os.set_blocking(self.stdin_fd, False)
        self.lock = threading.Condition()
        self.write_lock = threading.Lock()  # one request at a time on the pipe
        self.next_id = 0
        self.pids: dict[int, int] = {}
        self.exits: dict[int, int] = {}
        self.alive = True
        self.interfered = ""  # why the engine ended the server, if it did: "it did not answer ..."
        # True when the cause was surely the graded code (a stopped or flooded server), not
        # a slow machine: only code running in the server's sandbox can do either.
        self.attacked = False
        threading.Thread(target=self._listen, name="workbook-forkserver", daemon=True).start()

    def fork(self, argv: list[str], env: dict[str, str], cwd: str, output: str) -> Grader:
        """A grading process forked by the server. Raises ForkServerGone when the server is
        gone, or does not take the request or answer in time (it is then ended)."""
        with self.lock:
            if not self.alive:
                raise ForkServerGone(self.interfered or "the fork server stopped")
            self.next_id += 1
            request_id = self.next_id
        line = json.dumps({"id": request_id, "argv": argv, "env": env, "cwd": cwd, "output": output})
        self._send((line + "\n").encode())
        with self.lock:
            if not self.lock.wait_for(lambda: request_id in self.pids or not self.alive, ANSWER_TIMEOUT_S):
                self.end(f"it did not answer a request within {ANSWER_TIMEOUT_S:g} s")
            if request_id not in self.pids:
                raise ForkServerGone(self.interfered or "the fork server stopped")
            return Grader(self, self.pids.pop(request_id))

    def kill(self, pid: int) -> None:
        """Ask the server to end grading process `pid` (a pid of the server's namespace)."""
        with contextlib.suppress(ForkServerGone):
            self._send((json.dumps({"kill": pid}) + "\n").encode())

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        with self.lock:
            self.lock.wait_for(lambda: pid in self.exits or not self.alive, timeout)
            return self.exits.get(pid, None if self.alive else -signal.SIGKILL)

    def end(self, reason: str, *, attacked: bool = False) -> None:
        """End the server now, with everything it forked (its sandbox's PID namespace dies
        with it), and remember why (`reason`, empty when the engine stops anyway: Ctrl-C).
        Never waits: safe from a signal handler and under locks."""
        if self.alive and reason and not self.interfered:
            if _stopped_under(self.process.pid):
                reason, attacked = f"{reason}; it had been stopped (SIGSTOP)", True
            self.interfered, self.attacked = reason, attacked
        if self.process.returncode is not None:
            return  # reaped: its pid may be another process's by now
        # Its own group (popen_options): the server, or the sandbox that holds it.
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        # The listener notices the end of the server's output and wakes every waiter.

    def close(self) -> None:
        """Stop the server and everything it forked; remove its scratch folder."""
        # Not while a request is being written, whose descriptor number could be reused.
        got_lock = self.write_lock.acquire(timeout=WRITE_TIMEOUT_S)
        with contextlib.suppress(OSError):
            os.close(self.stdin_fd)  # end of input: the server ends its graders and stops
        self.stdin_fd = -1
        self.process.stdin = None  # closed above; Popen must not close it again
        with contextlib.suppress(OSError):
            os.close(self.host_requests_fd)
        self.host_requests_fd = -1
        if got_lock:
            self.write_lock.release()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.end("")
            self.process.wait()
        for folder in (self.scratch, self.sockets, self.host_requests_folder):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def _send(self, data: bytes) -> None:
        """Write `data` to the server within WRITE_TIMEOUT_S, else end the server. Raises
        ForkServerGone when it could not be written."""
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        if not self.write_lock.acquire(timeout=WRITE_TIMEOUT_S):
            self.end(f"a request to it waited more than {WRITE_TIMEOUT_S:g} s")
            raise ForkServerGone(self.interfered)
        try:
            if self.stdin_fd < 0:
                raise ForkServerGone("the fork server was closed")
            while data:
                try:
                    data = data[os.write(self.stdin_fd, data) :]
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise ForkServerGone(self.interfered or str(exc)) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not _writable(self.stdin_fd, remaining):
                    # The engine's few requests never fill the pipe: someone else wrote to it.
                    self.end(f"its input stayed full for {WRITE_TIMEOUT_S:g} s", attacked=True)
                    raise ForkServerGone(self.interfered)
        finally:
            self.write_lock.release()

    def _listen(self) -> None:
        # Learner code runs in the server's sandbox and could write to this pipe through
        # /proc: each line is bounded, and anything but a well-formed answer is ignored.
        stream = self.process.stdout
        while True:
            line = stream.readline(MAX_LINE_BYTES)  # type: ignore[union-attr]
            if not line:
                break
            if not line.endswith(b"\n"):
                _skip_rest_of_line(stream)
                continue
            message = _answer(line)
            if message is None:
                continue
            with self.lock:
                if "id" in message:
                    self.pids[message["id"]] = message["pid"]
                else:
                    self.exits[message["pid"]] = message["exit"]
                self.lock.notify_all()
        with self.lock:
            self.alive = False
            self.lock.notify_all()


MAX_LINE_BYTES = 4096


def _stopped_under(pid: int, depth: int = 4) -> bool:
    """True when a process under `pid` (itself included, `depth` generations down) is stopped,
    as a SIGSTOP leaves it. Linux only (reads /proc: the state field and the children lists
    are readable even for the sandbox's non-dumpable processes); elsewhere False."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
            return True
        if depth == 0:
            return False
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except (OSError, IndexError, ValueError):
        return False
    return any(_stopped_under(child, depth - 1) for child in children)


def _writable(fd: int, timeout: float) -> bool:
    try:
        return bool(select.select([], [fd], [], timeout)[1])
    except (OSError, ValueError):  # closed meanwhile (close() at exit): the write will say
        return True


def _skip_rest_of_line(stream: Any) -> None:
    while True:
        chunk = stream.readline(MAX_LINE_BYTES)
        if not chunk or chunk.endswith(b"\n"):
            return


def _answer(line: bytes) -> dict[str, int] | None:
    """A server message: {"id", "pid"} or {"pid", "exit"} with integer values, else None."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or not all(type(v) is int for v in message.values()):
        return None
    if set(message) in ({"id", "pid"}, {"pid", "exit"}):
        return message
    return None


class Grader:
    """A grading process forked by the server, with the Popen methods the engine uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        return self.server.exit_code(self.pid, timeout=0)

    def kill(self) -> None:
        """End it and its process group, through the server (whose pids these are)."""
        self.server.kill(self.pid)

    def kill_now(self) -> None:
        """End it at once, without a word to the server: by ending the server, and every
        grader it forked with it (Ctrl-C, where nothing may wait)."""
        self.server.end("")

    def wait(self, timeout: float = ANSWER_TIMEOUT_S) -> int:
        """Its exit code, once it ended after kill(). A server that does not report the end
        within `timeout` is ended, and the grader with it (-SIGKILL)."""
        code = self.server.exit_code(self.pid, timeout)
        if code is None:
            self.server.end(f"it did not report the end of a grading process within {timeout:g} s")
            return -signal.SIGKILL
        return code

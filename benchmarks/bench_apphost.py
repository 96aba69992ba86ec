"""Benchmark: what issue 11 item 1's "app host" would cost, before anyone builds it.

    python benchmarks/bench_apphost.py            # 15 runs of each measurement
    python benchmarks/bench_apphost.py --runs 31 --checks 51

The design measured: the graders stay in a trusted process that never imports learner code;
the learner's app is served by a real uvicorn in a separate *app host*, inside bubblewrap (the
command line of `workbook.sandbox`: PID, network and user namespaces, read-only system,
Python environment and problem folder, writable scratch folder holding the sockets). The
trusted side talks to it with httpx over a Unix socket, with the `websockets` sync client,
and with JSON lines over a second Unix socket for probes. Rows (medians, wall time):

1. cold host: spawn bwrap + Python, import fastapi/uvicorn and the solution, serve, answer
   one request;
2. warm fork: a warm host (fastapi, uvicorn and the solutions' libraries imported, bcrypt
   made cheap) forks a child per check that imports the solution afresh and serves it;
3. checks in a row (problem 4's 51; problem 1's 21, a `watch` re-check; the 159 of problems
   1-5, `check --all`): on one shared host per problem (the floor), on a fresh host each one
   after the other, and pipelined (host k+1, or k+1 and k+2, forked while check k runs);
4. a WebSocket round trip to problem 3's solution over the Unix socket;
5. a probe round trip ("read attribute path X of the learner module") over a second socket.

Answers of 500 and connections a host dropped are counted and printed, not fatal. Nothing
here is product code: the host program is the string HOST_PROGRAM below.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.sync.client import unix_connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbook import sandbox  # noqa: E402

# One TLS context for every client: httpx builds (and loads certificates into) a new one per
# client otherwise, ~30 ms each, which would swamp what is measured here.
TLS = ssl.create_default_context()

# Runs inside the sandbox. `cold FOLDER MODULE SOCKET`: one host, from nothing. `warm CHEAP`:
# import the libraries once, then obey JSON-line commands on stdin (fork a host, stop one).
HOST_PROGRAM = r"""
import json, os, signal, socket, sys

def bind(path):
    # Bound and listening before the app is imported: the trusted side can connect at once,
    # its request waits in the backlog until uvicorn accepts it.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(64)
    return sock

def cheap_password_hashing():
    # The same setting as workbook.grading.cheap_password_hashing (bcrypt cost 4).
    import bcrypt
    from passlib.handlers.bcrypt import bcrypt as passlib_bcrypt
    passlib_bcrypt.default_rounds = passlib_bcrypt.min_rounds
    original = bcrypt.gensalt
    bcrypt.gensalt = lambda rounds=4, prefix=b"2b": original(rounds=rounds, prefix=prefix)

def plain(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return {"type": type(value).__qualname__}

def answer_probes(sock, module):
    while True:
        connection, _ = sock.accept()
        with connection, connection.makefile("rwb") as stream:
            for line in stream:
                request = json.loads(line)
                value = module
                try:
                    for name in request["path"].split("."):
                        value = getattr(value, name)
                    reply = {"ok": True, "value": plain(value)}
                except AttributeError as exc:
                    reply = {"ok": False, "error": str(exc)}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()

def serve(app_socket, probe_socket, folder, module_name, timings=None):
    import importlib, resource, threading, time
    import uvicorn
    forked = time.monotonic()
    sys.path.insert(0, folder)
    module = importlib.import_module(module_name)
    imported = time.monotonic()
    if probe_socket is not None:
        threading.Thread(target=answer_probes, args=(probe_socket, module), daemon=True).start()

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if timings is not None:
                usage = resource.getrusage(resource.RUSAGE_SELF)  # since the fork: a child starts at 0
                phases = {"forked": forked, "imported": imported, "serving": time.monotonic()}
                with open(timings, "w") as file:
                    json.dump({**phases, "cpu": usage.ru_utime + usage.ru_stime}, file)

    config = uvicorn.Config(module.app, log_level="critical", access_log=False)
    Server(config).run(sockets=[app_socket])

WARM_MODULES = (
    "fastapi", "fastapi.security", "fastapi.testclient", "fastapi.telemetry._runtime", "starlette",
    "pydantic", "pydantic.v1", "sqlite3", "jose.jwt", "passlib.context", "bcrypt", "multipart",
    "uvicorn", "uvicorn.protocols.http.auto", "uvicorn.protocols.websockets.auto", "uvicorn.lifespan.on",
    "uvicorn.loops.auto", "uvicorn.loops.asyncio", "anyio._backends._asyncio", "anyio.streams.memory",
)

def warm(cheap):
    import importlib
    # Libraries only, never learner code: what the solutions import, what uvicorn imports at
    # startup and what starlette imports at the first request (found by diffing sys.modules).
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if cheap:
        cheap_password_hashing()
    # passlib loads (and self-tests) its bcrypt backend at the first hash: once, here.
    import passlib.context
    passlib.context.CryptContext(schemes=["bcrypt"]).hash("warm")
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "fork":
            app_socket = bind(command["socket"])
            probe_socket = bind(command["probe"]) if command.get("probe") else None
            pid = os.fork()
            if pid == 0:
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                os.chdir(command["cwd"])
                serve(app_socket, probe_socket, command["folder"], command["module"], command.get("timings"))
                os._exit(0)
            app_socket.close()
            if probe_socket is not None:
                probe_socket.close()
            print(json.dumps({"pid": pid}), flush=True)
        elif command["op"] == "stop":
            os.kill(command["pid"], signal.SIGKILL)
            os.waitpid(command["pid"], 0)
            print(json.dumps({"stopped": command["pid"]}), flush=True)

if sys.argv[1] == "cold":
    app_socket = bind(sys.argv[4])
    import fastapi, uvicorn
    cheap_password_hashing()
    serve(app_socket, None, sys.argv[2], sys.argv[3])
else:
    warm(sys.argv[2] == "cheap")
"""


@dataclass(frozen=True)
class Problem:
    number: int
    folder: Path
    module: str
    first_request: str  # a cheap GET path: any answer below 500 proves the host serves


PROBLEMS = {
    1: Problem(1, ROOT / "solutions/p1_dependency_chain", "app", "/users"),
    2: Problem(2, ROOT / "solutions/p2_role_based_access", "app", "/posts"),
    3: Problem(3, ROOT / "solutions/p3_chat_rooms", "app", "/rooms"),
    4: Problem(4, ROOT / "solutions/p4_modular_app", "app.main", "/"),
    5: Problem(5, ROOT / "solutions/p5_lifespan", "app", "/items"),
}


# Answers of 500 and above per problem. Not a failure of the benchmark: problem 1's reference
# solution opens its sqlite connection in one worker thread and uses it in another now and
# then, which a real server shows (sqlite3.ProgrammingError) and this table reports.
SERVER_ERRORS: Counter[int] = Counter()
ANSWERS: Counter[int] = Counter()
LOST_CONNECTIONS: defaultdict[int, list[str]] = defaultdict(list)  # a host closed a check's connection


def note_answer(problem: Problem, response: httpx.Response) -> None:
    ANSWERS[problem.number] += 1
    if response.status_code >= 500:
        SERVER_ERRORS[problem.number] += 1


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} ms"


def client_for(path: Path) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(path), verify=TLS)
    return httpx.Client(transport=transport, base_url="http://app", timeout=10, trust_env=False)


def first_answer(path: Path, request: str, deadline: float = 20.0) -> httpx.Response:
    """The first answer of the host serving on `path`, waiting for the socket to appear."""
    give_up = time.perf_counter() + deadline
    while True:
        try:
            with client_for(path) as client:
                return client.get(request)
        except (httpx.ConnectError, FileNotFoundError):
            if time.perf_counter() > give_up:
                raise
            time.sleep(0.001)


def spawn(argv: list[str], scratch: Path, folders: list[Path], **popen: object) -> subprocess.Popen:
    """`argv` in bubblewrap as the workbook builds it, seeing `folders` read-only."""
    bwrap = shutil.which("bwrap") or "bwrap"
    command = sandbox.bubblewrap_command(argv, scratch, visible=folders, bwrap=bwrap)
    environment = sandbox.allowed_environment(dict(os.environ), scratch)
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.Popen(command, env=environment, **sandbox.popen_options(), **popen)  # type: ignore[arg-type]


@contextmanager
def scratch_folder() -> Iterator[Path]:
    # Short: a Unix socket path must fit in 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="ah-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- 1. cold host -------------------------------------------------------------------------


def cold_host(problem: Problem) -> float:
    with scratch_folder() as scratch:
        socket_path = scratch / "app.sock"
        argv = [sys.executable, "-c", HOST_PROGRAM, "cold", str(problem.folder), problem.module, str(socket_path)]
        started = time.perf_counter()
        host = spawn(argv, scratch, [problem.folder], stderr=subprocess.DEVNULL)
        try:
            response = first_answer(socket_path, problem.first_request)
            elapsed = time.perf_counter() - started
        finally:
            host.kill()
            host.wait()
        note_answer(problem, response)
        return elapsed


# --- 2. warm host that forks one fresh host per check -------------------------------------


HOST_NUMBERS = itertools.count(1)  # names of sockets and folders, unique in one scratch folder


class WarmHost:
    """The warm process in bubblewrap, and the fresh hosts it forks."""

    def __init__(self, scratch: Path, cheap: bool = True) -> None:
        self.scratch = scratch
        folders = [problem.folder for problem in PROBLEMS.values()]
        argv = [sys.executable, "-c", HOST_PROGRAM, "warm", "cheap" if cheap else "full"]
        started = time.perf_counter()
        self.process = spawn(argv, scratch, folders, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready", "the warm host did not start"  # type: ignore[union-attr]
        self.boot = time.perf_counter() - started

    def command(self, **fields: object) -> dict:
        self.process.stdin.write(json.dumps(fields) + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        return json.loads(self.process.stdout.readline())  # type: ignore[union-attr]

    def fork(self, problem: Problem, probe: bool = False) -> Host:
        number = next(HOST_NUMBERS)
        app_socket = self.scratch / f"a{number}.sock"
        probe_socket = self.scratch / f"p{number}.sock" if probe else None
        timings = self.scratch / f"t{number}.json"
        own = self.scratch / f"h{number}"  # each host's working folder: its own sqlite files
        own.mkdir()
        reply = self.command(
            op="fork",
            cwd=str(own),
            folder=str(problem.folder),
            module=problem.module,
            socket=str(app_socket),
            probe=str(probe_socket) if probe_socket else None,
            timings=str(timings),
        )
        return Host(reply["pid"], app_socket, probe_socket, timings)

    def stop(self, host: Host) -> None:
        self.command(op="stop", pid=host.pid)
        host.app_socket.unlink(missing_ok=True)
        if host.probe_socket is not None:
            host.probe_socket.unlink(missing_ok=True)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@dataclass(frozen=True)
class Host:
    pid: int  # in the sandbox's PID namespace: only the warm host can signal it
    app_socket: Path
    probe_socket: Path | None
    timings: Path  # written by the host once uvicorn serves: monotonic times and CPU seconds


@dataclass(frozen=True)
class FreshHost:
    """One fresh host's life, in seconds: where its time to a first answer goes."""

    fork: float  # the command sent to the warm host until its reply (the fork itself)
    imports: float  # the child imports the solution
    startup: float  # uvicorn's startup, lifespan included, until it serves
    first_request: float  # until the first answer is back on the trusted side
    stop: float  # SIGKILL and reap, sockets removed
    cpu: float  # CPU time of the child until it serves

    @property
    def answered(self) -> float:
        return self.fork + self.imports + self.startup + self.first_request


def fresh_host(warm: WarmHost, problem: Problem) -> FreshHost:
    # time.monotonic: the same clock inside and outside the sandbox (no time namespace).
    sent = time.monotonic()
    host = warm.fork(problem)
    response = first_answer(host.app_socket, problem.first_request)
    answered = time.monotonic()
    warm.stop(host)
    stopped = time.monotonic()
    note_answer(problem, response)
    inside = json.loads(host.timings.read_text())
    return FreshHost(
        fork=inside["forked"] - sent,
        imports=inside["imported"] - inside["forked"],
        startup=inside["serving"] - inside["imported"],
        first_request=answered - inside["serving"],
        stop=stopped - answered,
        cpu=inside["cpu"],
    )


# --- 3. checks in a row: fresh hosts, pipelined, shared ----------------------------------

# Test functions per problem in graders/ (2026-11-30): problem 4's 51 is the largest.
CHECKS = {1: 21, 2: 34, 3: 23, 4: 51, 5: 30}


def p4_check(client: httpx.Client) -> None:
    """A typical problem-4 check: log in (bcrypt verify), use the token, one refusal."""
    login = client.post("/auth/login", data={"username": "admin", "password": "admin-secret"})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    listed = client.get("/items", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text
    refused = client.get("/admin/stats")
    assert refused.status_code == 401, refused.text


def run_check_on(host: Host, problem: Problem) -> None:
    """One check: the first contact waits for the host to boot, then problem 4's typical
    check or, for the others, two more requests."""
    first_answer(host.app_socket, problem.first_request)
    try:
        with client_for(host.app_socket) as client:
            if problem.number == 4:
                p4_check(client)
            else:
                for _ in range(2):
                    response = client.get(problem.first_request)
                    note_answer(problem, response)
    except httpx.TransportError as exc:  # rare under load; counted and shown, not hidden
        LOST_CONNECTIONS[problem.number].append(repr(exc))


def sequence_fresh(warm: WarmHost, plan: list[Problem]) -> float:
    started = time.perf_counter()
    for problem in plan:
        host = warm.fork(problem)
        run_check_on(host, problem)
        warm.stop(host)
    return time.perf_counter() - started


def sequence_pipelined(warm: WarmHost, plan: list[Problem], ahead: int) -> float:
    """The checks of `plan` in a row, with `ahead` hosts forked in advance (1: host k+1
    boots while check k runs)."""
    started = time.perf_counter()
    upcoming = deque((problem, warm.fork(problem)) for problem in plan[:ahead])
    for index in range(len(plan)):
        problem, current = upcoming.popleft()
        if index + ahead < len(plan):
            upcoming.append((plan[index + ahead], warm.fork(plan[index + ahead])))  # boots while this check runs
        run_check_on(current, problem)
        warm.stop(current)
    return time.perf_counter() - started


def sequence_shared(warm: WarmHost, plan: list[Problem]) -> float:
    """The floor: one host per problem, shared by all its checks."""
    started = time.perf_counter()
    hosts: dict[int, Host] = {}
    for problem in plan:
        if problem.number not in hosts:
            hosts[problem.number] = warm.fork(problem)
        run_check_on(hosts[problem.number], problem)
    for host in hosts.values():
        warm.stop(host)
    return time.perf_counter() - started


# --- 4. WebSocket, 5. probe ---------------------------------------------------------------


def websocket_round_trips(warm: WarmHost, runs: int) -> tuple[list[float], list[float]]:
    """(connect + history + join, one message sent and its broadcast received), per run."""
    host = warm.fork(PROBLEMS[3])
    first_answer(host.app_socket, "/rooms")
    connects, round_trips = [], []
    try:
        for run in range(runs):
            started = time.perf_counter()
            with unix_connect(str(host.app_socket), uri=f"ws://app/ws/general?username=u{run}") as websocket:
                assert json.loads(websocket.recv(timeout=5))["type"] == "history"
                assert json.loads(websocket.recv(timeout=5))["type"] == "join"
                connects.append(time.perf_counter() - started)
                started = time.perf_counter()
                websocket.send("hello")
                message = json.loads(websocket.recv(timeout=5))
                round_trips.append(time.perf_counter() - started)
                assert message == {"type": "message", "room": "general", "username": f"u{run}", "text": "hello"}
    finally:
        warm.stop(host)
    return connects, round_trips


def probe_round_trips(warm: WarmHost, runs: int) -> list[float]:
    host = warm.fork(PROBLEMS[1], probe=True)
    first_answer(host.app_socket, "/users")
    samples = []
    try:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(str(host.probe_socket))
            stream = connection.makefile("rwb")
            for _ in range(runs):
                started = time.perf_counter()
                stream.write(b'{"path": "Settings.__name__"}\n')
                stream.flush()
                reply = json.loads(stream.readline())
                samples.append(time.perf_counter() - started)
                assert reply == {"ok": True, "value": "Settings"}, reply
    finally:
        warm.stop(host)
    return samples


# --- the table ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="samples per median (default 15)")
    parser.add_argument("--checks", type=int, default=51, help="problem 4's checks in a row (default 51)")
    args = parser.parse_args()
    if not sandbox.isolation().active:
        sys.exit(f"bubblewrap does not work here: {sandbox.isolation().reason}")
    print(f"{sandbox.isolation().label}; medians of {args.runs} runs")
    print("| measurement | median |")
    print("| --- | --- |")
    for number in (1, 4):
        samples = [cold_host(PROBLEMS[number]) for _ in range(args.runs)]
        print(f"| 1. cold host, p{number}: spawn to first answer | {median_ms(samples)} |", flush=True)
    with scratch_folder() as scratch:
        boots = []
        for _ in range(max(3, args.runs // 3)):
            warm = WarmHost(scratch)
            boots.append(warm.boot)
            warm.close()
        print(f"| 2. warm host boot (bwrap + imports), once per run | {median_ms(boots)} |", flush=True)
        warm = WarmHost(scratch)
        try:
            for problem in PROBLEMS.values():
                report_fresh_hosts(warm, problem, args.runs)
            repeats = max(3, args.runs // 5)
            report_sequences(warm, "p4", [PROBLEMS[4]] * args.checks, repeats)
            report_sequences(warm, "p1 (watch)", [PROBLEMS[1]] * CHECKS[1], repeats)
            every = [problem for number, problem in PROBLEMS.items() for _ in range(CHECKS[number])]
            report_sequences(warm, "p1-p5 (check --all)", every, repeats)
            connects, round_trips = websocket_round_trips(warm, args.runs)
            print(f"| 4. WebSocket p3: connect + history + join | {median_ms(connects)} |")
            print(f"| 4. WebSocket p3: message sent to broadcast back | {median_ms(round_trips)} |")
            probes = probe_round_trips(warm, args.runs * 20)
            print(f"| 5. probe round trip (attribute path, JSON line) | {statistics.median(probes) * 1e6:.0f} µs |")
        finally:
            warm.close()
        for number, errors in sorted(SERVER_ERRORS.items()):
            print(f"| answers of 500 from p{number}'s solution on a real server | {errors} of {ANSWERS[number]} |")
        for number, errors in sorted(LOST_CONNECTIONS.items()):
            print(f"| checks of p{number} that lost their connection | {len(errors)}: {sorted(set(errors))} |")
        full = WarmHost(scratch, cheap=False)
        try:
            samples = [fresh_host(full, PROBLEMS[2]).answered for _ in range(max(3, args.runs // 3))]
            print(f"| 2. warm fork, p2 at bcrypt's default cost: first answer | {median_ms(samples)} |")
        finally:
            full.close()


def report_fresh_hosts(warm: WarmHost, problem: Problem, runs: int) -> None:
    samples = [fresh_host(warm, problem) for _ in range(runs)]

    def median(phase: Callable[[FreshHost], float]) -> str:
        return median_ms([phase(sample) for sample in samples])

    print(
        f"| 2. warm fork, p{problem.number}: first answer / + stop; (fork, import, uvicorn startup, first request;"
        f" CPU) | {median(lambda s: s.answered)} / {median(lambda s: s.answered + s.stop)};"
        f" ({median(lambda s: s.fork)}, {median(lambda s: s.imports)}, {median(lambda s: s.startup)},"
        f" {median(lambda s: s.first_request)}; {median(lambda s: s.cpu)}) |",
        flush=True,
    )


def report_sequences(warm: WarmHost, label: str, plan: list[Problem], runs: int) -> None:
    shared = statistics.median(sequence_shared(warm, plan) for _ in range(runs))
    print(f"| 3. {label}, {len(plan)} checks, one shared host per problem (floor) | {shared:.2f} s |", flush=True)
    variants: list[tuple[str, Callable[[], float]]] = [
        ("fresh host each, in turn", lambda: sequence_fresh(warm, plan)),
        ("fresh host each, 1 forked ahead", lambda: sequence_pipelined(warm, plan, 1)),
        ("fresh host each, 2 forked ahead", lambda: sequence_pipelined(warm, plan, 2)),
    ]
    for variant, run in variants:
        total = statistics.median(run() for _ in range(runs))
        overhead = (total - shared) / len(plan) * 1000
        print(f"| 3. {label}, {len(plan)} checks, {variant} | {total:.2f} s ({overhead:.0f} ms/check over the floor) |")


if __name__ == "__main__":
    main()

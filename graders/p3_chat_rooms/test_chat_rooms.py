"""Grader for problem 3 — WebSocket chat with rooms.

Each check gets its own app host (workbook/hostkit.py): the learner's module imported afresh
in a sandboxed process and served by a real uvicorn, reached with real HTTP and WebSocket
clients; this process never imports it. Every wait is bounded: a receive goes through
`within`, so a server that never answers fails the check in seconds, naming where the
learner's code waits. The app is served wrapped by the probe menu's observer (probes.py),
which lets a check make one connection vanish or read slowly, and read the close code of a
connection refused before accept() (a real server shows that close as HTTP 403). The last
two checks talk to the plain app, as any client of a real server does.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from typing import Any
from urllib.parse import quote, unquote

import pytest

# Imported now rather than by the first handshake: that import would make the first answer
# look slow, and once a wait expires, later waits get a deadline derived from the slowest one.
import websockets.sync.client  # noqa: F401
from starlette.websockets import WebSocketDisconnect

from workbook import hangs, hostkit
from workbook.grading import (
    CheckTimeout,
    clip,
    expect,
    expect_json,
    expect_not_stuck,
    expect_status,
    fail,
    json_body,
    note_stuck,
    real_wait,
    rng,
    show,
    state,
    within,
    work_for_current_check,
)
from workbook.hostkit import AppHost, HostGone, RemoteClient, RemoteWebSocket, WebSocketRejected

WAIT = 1.0  # seconds any one message may take from the served app (a correct app answers in milliseconds)
REAL_WAIT = 2.0  # the same for the checks that talk to the plain app as any client does
POLICY_VIOLATION = 1008
NAMES = ["ada", "grace", "linus", "guido", "barbara", "ken", "margaret", "dennis", "frances", "alan", "radia", "edsger"]
WORDS = ["lobby", "general", "random", "python", "kitchen", "garden", "support", "music", "games", "news", "books"]
PHRASES = ["hello there", "who is around?", "lunch at noon", "deploy went fine", "tea or coffee", "see you later"]
MESSAGE = '{"type": "message", "room": ..., "username": ..., "text": ...}'


USED_NAMES: set[str] = set()


def new_name() -> str:
    """A username not handed out before in this process, so two peers never share one."""
    name = f"{rng.choice(NAMES)}{rng.randrange(100, 1000)}"
    while name in USED_NAMES:
        name = f"{rng.choice(NAMES)}{rng.randrange(100, 1000)}"
    USED_NAMES.add(name)
    return name


def new_room() -> str:
    return f"{rng.choice(WORDS)}-{rng.randrange(100, 1000)}"


def new_text() -> str:
    return f"{rng.choice(PHRASES)} #{rng.randrange(10**5)}"


def chat_message(room: str, username: str, text: str) -> dict[str, Any]:
    return {"type": "message", "room": room, "username": username, "text": text}


def expect_fields(got: dict[str, Any], wanted: dict[str, Any], what: str) -> None:
    """`got` must carry every key of `wanted` with the same value; extra keys are allowed. The
    failure leads with the first key that differs."""
    differing = [key for key, value in wanted.items() if got.get(key) != value]
    if differing:
        key = differing[0]
        found = f'"{key}": {clip(show(got[key]), 60)}' if key in got else f'no "{key}"'
        fail(
            f'{found}, expected "{key}": {clip(show(wanted[key]), 60)}. {what}',
            sent=LAST_SENT["what"],
            expected=f"{show(wanted)} (extra keys allowed)",
            got=show(got),
        )


def chat_fields(messages: list[Any]) -> list[Any]:
    """A history's messages reduced to the keys the contract names (extra keys are allowed)."""
    keys = ("type", "room", "username", "text")
    return [
        {key: item.get(key) for key in keys if key in item} if isinstance(item, dict) else item for item in messages
    ]


def expect_history(history: list[Any], wanted: list[dict[str, Any]], what: str) -> None:
    """The history's chat messages must be `wanted`; the failure leads with the first difference."""
    got = chat_fields(history)
    if got == wanted:
        return
    if len(got) != len(wanted):
        lead = f"{len(got)} messages in the history, expected {len(wanted)}"
    else:
        index = next(i for i, (one, other) in enumerate(zip(got, wanted, strict=True)) if one != other)
        lead = (
            f"history message {index + 1} is {clip(show(got[index]), 100)}, expected {clip(show(wanted[index]), 100)}"
        )
    fail(f"{lead}. {what}", sent=LAST_SENT["what"], expected=show(wanted), got=show(history))


def quietly(action: Callable[[], Any]) -> None:
    # Teardown of a learner's connection: the checks have already judged it, so errors here are ignored.
    with suppress(Exception):
        action()


# --- one chat client over a real WebSocket ----------------------------------------------

# A receive's own time-out, behind `within`'s: it only ends the waiting thread of a check
# that has already failed.
RECEIVE_BACKSTOP_S = 3 * REAL_WAIT
HOST_POLL_S = 0.02  # how often a wait looks where the host's code is, once a hang is known


class Peer:
    """One client connected to /ws/{room}?username=... of the served app."""

    def __init__(self, session: RemoteWebSocket, room: str, username: str, path: str) -> None:
        self.session = session
        self.room = room
        self.username = username
        self.path = path
        self.exited = False

    @property
    def label(self) -> str:
        return f"{self.username} (connected to {self.path})"

    def send(self, text: str) -> None:
        remember_sent(f"{self.username} sent the text frame {show(text)}")
        try:
            within_or_fail(
                lambda: self.session.send_text(text),
                f"{self.username} could not even hand over its text frame",
                "the server to take the frame",
            )
        except WebSocketDisconnect as exc:
            instead = f"an open connection to send {show(text)} on"
            self.closed_by_server(exc.code, instead, instead)

    def leave(self) -> None:
        """Close the connection from the client side (the server sees a disconnect)."""
        remember_sent(f"{self.username} closed its connection")
        self.exit()

    def text(self, expected: str) -> str:
        """The next frame the server sent to this client, within WAIT seconds."""
        try:
            return within_or_fail(
                lambda: self.session.receive_text(timeout=RECEIVE_BACKSTOP_S),
                f"{self.label} received nothing",
                expected,
            )
        except WebSocketDisconnect as exc:
            self.closed_by_server(exc.code, "a message", expected)

    def receive(self, expected: str) -> dict[str, Any]:
        """The next message as a JSON object; a close or anything else fails the check."""
        return decode(self.text(expected), expected)

    def closed_by_server(self, code: int, instead: str, expected: str) -> None:
        self.exited = True
        fail(
            f"close code {code}, expected {instead}: the server closed the connection of {self.label}.",
            sent=LAST_SENT["what"],
            expected=expected,
            got=f"close code {code}",
        )

    def receive_skipping(self, skip: Callable[[dict[str, Any]], bool], expected: str, limit: int = 3) -> dict[str, Any]:
        for _ in range(limit):
            data = self.receive(expected)
            if not skip(data):
                return data
        fail(f"{self.label} kept receiving other messages.", expected=expected, got=show(data))

    def exit(self) -> None:
        if not self.exited:
            self.exited = True
            self.session.close()

    def drop(self) -> None:
        """End the connection at once, without the closing handshake, which a stuck server
        would make wait: the end of a check, whose host ends with it."""
        if not self.exited and self.session.connection is not None:
            self.exited = True
            self.session.connection.close_socket()

    def history(self) -> list[Any]:
        """Receive the history message and return its list of messages."""
        data = self.receive('{"type": "history", "room": ..., "messages": [...]} first')
        expect_fields(
            data,
            {"type": "history", "room": self.room},
            f"The first message {self.username} receives must be the history of room {self.room}.",
        )
        messages = data.get("messages")
        expect(
            isinstance(messages, list),
            'The history message must carry a list under "messages".',
            expected='"messages": [...]',
            got=show(data),
        )
        return messages

    def expect_event(self, wanted: dict[str, Any], what: str) -> dict[str, Any]:
        data = self.receive(show(wanted))
        expect_fields(data, wanted, what)
        return data


def decode(text: str | None, expected: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        data = None
    expect(
        isinstance(data, dict),
        "Every message the server sends must be a JSON object (send it with send_json).",
        expected=expected,
        got=show(text),
    )
    return data


LAST_SENT: dict[str, str | None] = {"what": None}


def remember_sent(what: str) -> None:
    """What the grader last did to the app, so a wait that times out can say what it followed."""
    LAST_SENT["what"] = clip(what, 200)


def within_host(seconds: float, action: Callable[[], Any], what: str) -> Any:
    """`within`, looking for the learner's code in the app host, where it runs: `within`
    samples only this process. On time-out, the site goes with the failure; once this run
    found the code stuck, the wait ends as soon as the host sits at that same place."""
    if state.get("first_stuck") is not None:
        return wait_unless_blocked(seconds, action, what)
    try:
        return within(seconds, action, what)
    except CheckTimeout as timeout:
        if timeout.site is None:
            site = hostkit.RemoteSampler(hostkit.current_hosts).any_site(set())
            if site is not None:
                state["waited_site"] = site
                note_stuck(site, state["check_id"])
        raise


def wait_unless_blocked(seconds: float, action: Callable[[], Any], what: str) -> Any:
    """`action` in a thread of its own for at most `seconds` (shortened as `within` shortens
    it once a wait expired), ended early when the host's code holds at the place an earlier
    check found it stuck for hangs.BLOCKED_S: as `within` does in process (grading.py)."""
    known_site, known_check = state["first_stuck"]
    waits = state["waits"]
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work_for_current_check(action)
        except BaseException as exc:  # noqa: BLE001 - handed back to the check's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="workbook-within-host")
    started = time.monotonic()
    deadline = started + waits.deadline(seconds)
    worker.start()
    sampler = hostkit.RemoteSampler(hostkit.current_hosts)
    held_since: float | None = None
    site = None
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(HOST_POLL_S)
        if not worker.is_alive():
            break
        site = sampler.any_site(set())
        if site is None or site.key != known_site.key:
            held_since = None
        elif held_since is None:
            held_since = time.monotonic()
        elif time.monotonic() - held_since >= hangs.BLOCKED_S:
            break
    if worker.is_alive():
        waits.expired()
        state["waited_site"] = site
        state["wait_expired"] = True
        where = f"; {site.describe()}" if site is not None else ""
        raise CheckTimeout(
            f"no answer after {time.monotonic() - started:.2f} s: {what}{where}.",
            site=site,
            blocked_by=known_check if site is not None and site.key == known_site.key else None,
        )
    waits.answered(time.monotonic() - started)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def within_or_fail(action: Callable[[], Any], what: str, expected: str | None = None) -> Any:
    """`action` within WAIT seconds; otherwise fail leading with what did not happen, then what
    was sent last and what was awaited."""
    try:
        return within_host(WAIT, action, what)
    except CheckTimeout:
        fail(
            f"{what} within {WAIT:g} s: the handler seems stuck (a loop that never awaits?) or never sends it.",
            sent=LAST_SENT["what"],
            expected=expected,
            got="nothing",
        )


def plain_client(host: AppHost) -> RemoteClient:
    """A client of the served app whose WebSocket handshakes carry no `Connection:
    keep-alive` (httpx's default header, which would replace `Connection: Upgrade` and turn
    the handshake into a plain GET)."""
    api = host.client()
    del api.headers["connection"]
    return api


class Chat:
    """The learner's app served in one app host; remembers every connection to close it at the end."""

    def __init__(self, host: AppHost, *, restartable: bool = False) -> None:
        self.host = host
        if restartable:
            host.probe("reusable_listener")
        host.serve(app=host.probe("wrap_app"))
        self.api = plain_client(host)
        self.peers: list[Peer] = []

    def session(self, path: str, headers: dict[str, str] | None = None) -> RemoteWebSocket:
        remember_sent(f"WebSocket {path}")
        return self.api.websocket_connect(path, headers=dict(headers or {}))

    def connect(self, room: str, username: str, *, label: str | None = None) -> Peer:
        """Open /ws/{room}?username=... and wait (bounded) until the server accepts it; `label`
        names the connection for the probes (header x-peer)."""
        path = f"/ws/{room}?username={quote(username)}"
        session = self.session(path, {"x-peer": label} if label else None)
        try:
            within_or_fail(session.__enter__, f"The connection to {path} was not accepted", "an accepted connection")
        except WebSocketRejected as exc:
            fail(
                f"HTTP status {exc.status}, expected an accepted connection: the server refused a valid client.",
                sent=f"WebSocket {path}",
                expected="an accepted connection",
                got=f"HTTP status {exc.status}",
            )
        peer = Peer(session, room, username, path)
        self.peers.append(peer)
        return peer

    def enter(self, room: str, present: list[Peer] = (), *, label: str | None = None) -> Peer:
        """Connect a new user, read its history and join event, and the join event each present peer gets."""
        newcomer = self.connect(room, new_name(), label=label)
        newcomer.history()
        joined = {"type": "join", "room": room, "username": newcomer.username}
        newcomer.expect_event(
            joined, f"Right after the history, {newcomer.username} should receive its own join event."
        )
        for other in present:
            other.expect_event(joined, f"{other.username} should hear that {newcomer.username} joined room {room}.")
        return newcomer

    def rooms(self) -> Any:
        response = self.api.get("/rooms")
        expect_status(response, 200, "GET /rooms should answer 200.")
        return json_body(response)

    def close(self, *, stop: bool = False) -> None:
        """Drop every connection; with `stop`, close each one properly and stop the server (its
        lifespan's shutdown runs), as a restart does."""
        for peer in self.peers:
            quietly(peer.exit if stop else peer.drop)
        quietly(self.api.close)
        if stop:
            quietly(self.host.stop)


@pytest.fixture
def chat(host: AppHost) -> Iterator[Chat]:
    room = Chat(host)
    yield room
    room.close()


REFUSALS = f"close code {POLICY_VIOLATION}, or an HTTP 403 answer to the handshake"


def expect_refused(chat: Chat, path: str, why: str) -> None:
    """The server must refuse a connection to `path`: close code 1008 before or after accepting it.
    Closed before accept(), a real server answers the handshake with HTTP 403 and the code never
    travels: the probes read the code the app closed with. An HTTP 403 without a close (a denial
    response) is accepted too. Statement: "Connecting", refusal clause."""
    label = f"refused-{rng.randrange(10**9)}"
    session = chat.session(path, {"x-peer": label})
    peer = Peer(session, "", "a refused client", path)
    try:
        within_or_fail(session.__enter__, f"{why} got no answer to its handshake", REFUSALS)
    except WebSocketRejected as exc:
        expect(
            exc.status == 403,
            f"HTTP status {exc.status}, expected close code {POLICY_VIOLATION} (or 403): {why} must be "
            "refused, not answered with another HTTP status.",
            sent=f"WebSocket {path}",
            expected=REFUSALS,
            got=f"HTTP status {exc.status}",
        )
        code = chat.host.probe("close_before_accept", peer=label)
        expect(
            code in (None, POLICY_VIOLATION),
            f"close code {code}, expected {POLICY_VIOLATION}: {why} must be refused with "
            "status.WS_1008_POLICY_VIOLATION.",
            sent=f"WebSocket {path}",
            expected=REFUSALS,
            got=f"close code {code} before accept() (a real server then answers the handshake with HTTP 403, "
            "so the code never reaches the client)",
        )
        return
    chat.peers.append(peer)
    seen = []
    for _ in range(3):
        try:
            text = within_host(
                WAIT, lambda: session.receive_text(timeout=RECEIVE_BACKSTOP_S), f"Waiting for the close of {path}"
            )
        except CheckTimeout:
            fail(
                f"the connection stayed open, expected close code {POLICY_VIOLATION}: {why} was accepted and "
                "never refused.",
                sent=f"WebSocket {path}",
                expected=REFUSALS,
                got=f"{show(seen)}, then nothing for {WAIT:g} s",
            )
        except WebSocketDisconnect as exc:
            expect(
                exc.code == POLICY_VIOLATION,
                f"close code {exc.code}, expected {POLICY_VIOLATION}: {why} must be closed with "
                "status.WS_1008_POLICY_VIOLATION.",
                sent=f"WebSocket {path}",
                expected=REFUSALS,
                got=f"close code {exc.code}",
            )
            return
        seen.append(decode(text, REFUSALS))
    fail(
        f"the connection stayed open, expected close code {POLICY_VIOLATION}: {why} was accepted and sent "
        "messages instead of being refused.",
        sent=f"WebSocket {path}",
        expected=REFUSALS,
        got=show(seen),
    )


# --- history ------------------------------------------------------------------------------


def test_history_starts_empty(chat: Chat) -> None:
    """The first message in a new room is {"type": "history", "room": ..., "messages": []}"""
    room = new_room()
    peer = chat.connect(room, new_name())
    first = peer.receive('{"type": "history", "room": ..., "messages": []}')
    expect_fields(
        first,
        {"type": "history", "room": room, "messages": []},
        "A newcomer to a room nobody has written in should first receive an empty history.",
    )


def test_history_comes_before_join(chat: Chat) -> None:
    """A newcomer receives the history first, then its own join event"""
    room = new_room()
    first = chat.enter(room)
    first.send(new_text())
    first.receive(MESSAGE)
    peer = chat.connect(room, new_name())
    got = [peer.receive("the history, then the join event") for _ in range(2)]
    kinds = [item.get("type") for item in got]
    expect(
        kinds == ["history", "join"],
        "The newcomer must get the room's history before any join event.",
        expected=show(["history", "join"]),
        got=show(got),
    )


def test_history_lists_messages_in_order(chat: Chat) -> None:
    """The history holds the room's earlier chat messages, oldest first"""
    room = new_room()
    writer = chat.enter(room)
    sent = []
    for _ in range(rng.randrange(3, 7)):
        text = new_text()
        writer.send(text)
        writer.expect_event(chat_message(room, writer.username, text), "The sender should get its own message back.")
        sent.append(chat_message(room, writer.username, text))
    history = chat.connect(room, new_name()).history()
    expect_history(history, sent, "The history should list every earlier message, oldest first.")


def test_history_keeps_last_50(chat: Chat) -> None:
    """After 55 messages the history holds exactly the last 50, oldest first"""
    room = new_room()
    writer = chat.enter(room)
    token = rng.randrange(10**5)
    texts = [f"message {number} #{token}" for number in range(1, 56)]
    for text in texts:
        writer.send(text)
        writer.expect_event(chat_message(room, writer.username, text), "The sender should get its own message back.")
    history = chat.connect(room, new_name()).history()
    got = [item.get("text") if isinstance(item, dict) else item for item in history]
    expect(
        got == texts[5:],
        "The history should keep exactly the last 50 messages (6 to 55), oldest first.",
        expected=f"{len(texts[5:])} messages: {show(texts[5])} ... {show(texts[-1])}",
        got=f"{len(got)} messages: {show(got[:1])} ... {show(got[-1:])}",
    )


def test_history_holds_only_chat_messages(chat: Chat) -> None:
    """The history holds chat messages only, never join or leave events"""
    room = new_room()
    first = chat.enter(room)
    second = chat.enter(room, [first])
    second.leave()
    first.expect_event(
        {"type": "leave", "room": room, "username": second.username},
        f"{first.username} should hear that {second.username} left.",
    )
    text = new_text()
    first.send(text)
    first.receive(MESSAGE)
    history = chat.connect(room, new_name()).history()
    wanted = [chat_message(room, first.username, text)]
    expect_history(history, wanted, "The history must hold the chat messages only, not join or leave events.")


# --- join, message, leave -----------------------------------------------------------------


def test_join_announced_with_count(chat: Chat) -> None:
    """Everyone in the room, the newcomer included, receives a join event with the new user count"""
    room = new_room()
    present: list[Peer] = []
    for count in range(1, 4):
        peer = chat.connect(room, new_name())
        peer.history()
        joined = {"type": "join", "room": room, "username": peer.username, "users": count}
        for member in [peer, *present]:
            member.expect_event(
                joined,
                f"When {peer.username} joins as user number {count}, {member.username} should receive this join event.",
            )
        present.append(peer)


def test_message_echoed_to_sender(chat: Chat) -> None:
    """A chat message comes back to its sender as {"type": "message", "room", "username", "text"}"""
    room = new_room()
    peer = chat.enter(room)
    text = new_text()
    peer.send(text)
    peer.expect_event(chat_message(room, peer.username, text), "The sender should receive its own message too.")


def test_message_reaches_room_members(chat: Chat) -> None:
    """A chat message reaches every other member of the room"""
    room = new_room()
    first = chat.enter(room)
    second = chat.enter(room, [first])
    third = chat.enter(room, [first, second])
    text = new_text()
    second.send(text)
    for member in (first, third):
        member.expect_event(
            chat_message(room, second.username, text),
            f"{member.username} should receive what {second.username} wrote in the same room.",
        )


def test_leave_announced_with_count(chat: Chat) -> None:
    """When a client leaves, the others receive a leave event with the new user count"""
    room = new_room()
    first = chat.enter(room)
    second = chat.enter(room, [first])
    third = chat.enter(room, [first, second])
    third.leave()
    for member in (first, second):
        member.expect_event(
            {"type": "leave", "room": room, "username": third.username, "users": 2},
            f"{member.username} should hear that {third.username} left, leaving 2 users.",
        )
    second.leave()
    first.expect_event(
        {"type": "leave", "room": room, "username": second.username, "users": 1},
        f"{first.username} should hear that {second.username} left, leaving 1 user.",
    )


def test_rooms_are_isolated(chat: Chat) -> None:
    """Messages, join events and history never cross from one room into another"""
    here, there = new_room(), new_room()
    while there == here:
        there = new_room()
    alice = chat.enter(here)
    bob = chat.enter(there)
    carol = chat.enter(there, [bob])
    texts = [new_text() for _ in range(3)]
    alice.send(texts[0])
    alice.expect_event(chat_message(here, alice.username, texts[0]), "The sender should get its own message back.")
    bob.send(texts[1])
    for member in (bob, carol):
        member.expect_event(
            chat_message(there, bob.username, texts[1]),
            f"{member.username} in room {there} must not receive anything from room {here}.",
        )
    alice.send(texts[2])
    alice.expect_event(
        chat_message(here, alice.username, texts[2]),
        f"{alice.username} in room {here} must not receive anything from room {there}.",
    )
    history = chat.connect(there, new_name()).history()
    wanted = [chat_message(there, bob.username, texts[1])]
    expect_history(history, wanted, f"The history of room {there} must hold only that room's messages.")


# --- GET /rooms -----------------------------------------------------------------------------


def test_rooms_listing_sorted_with_counts(chat: Chat) -> None:
    """GET /rooms lists each room in use with its user count, sorted by room name"""
    expect_json(chat.api.get("/rooms"), [], "With nobody connected, GET /rooms should answer an empty list.")
    names = rng.sample(WORDS, 3)
    if names == sorted(names):  # create them out of order, so listing in creation order shows
        names.reverse()
    counts = [rng.randrange(1, 4) for _ in names]
    for name, count in zip(names, counts, strict=True):
        present: list[Peer] = []
        for _ in range(count):
            present.append(chat.enter(name, present))
    wanted = [{"room": name, "users": count} for name, count in sorted(zip(names, counts, strict=True))]
    response = chat.api.get("/rooms")
    expect_json(response, wanted, "GET /rooms should list every room with its user count, sorted by room name.")


def test_rooms_listing_drops_empty_room(chat: Chat) -> None:
    """A room leaves GET /rooms when its last user leaves, and keeps its history for the next visitor"""
    kept, emptied = sorted(rng.sample(WORDS, 2))
    chat.enter(kept)
    goes = chat.enter(emptied)
    text = new_text()
    goes.send(text)
    goes.receive(MESSAGE)
    goes.leave()
    wanted = [{"room": kept, "users": 1}]
    listed = chat.rooms()
    deadline = time.monotonic() + 1.0
    while listed != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
        listed = chat.rooms()
    expect(
        listed == wanted,
        f"After the last user left room {emptied}, GET /rooms should no longer list it.",
        sent="GET /rooms",
        expected=show(wanted),
        got=show(listed),
    )
    history = chat.connect(emptied, new_name()).history()
    expect_history(
        history,
        [chat_message(emptied, goes.username, text)],
        "A room that emptied must keep its history for the next visitor.",
    )


# --- validation -----------------------------------------------------------------------------


def test_username_required(chat: Chat) -> None:
    """Connecting without a username, or with a blank one, is refused (close code 1008)"""
    room = new_room()
    for query, why in (
        ("", "A connection without ?username="),
        ("?username=", "A connection with an empty username"),
        ("?username=%20%20%20", "A connection with a blank username"),
    ):
        expect_refused(chat, f"/ws/{room}{query}", why)
    expect_json(chat.api.get("/rooms"), [], "A refused connection must not appear in GET /rooms.")


def test_room_name_validated(chat: Chat) -> None:
    """A room name must be 1-32 ASCII letters, digits, _ or -, nothing around them; anything else is refused"""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    longest = "".join(rng.choice(letters) for _ in range(30))
    too_long = longest + "xyz"
    word = rng.choice(WORDS)
    # Beside the plain classes: a trailing newline (which `$` lets through), padding that a strip()
    # before matching would hide, and a non-ASCII letter (which a Unicode `\w` lets through).
    for room in (
        too_long,
        f"{word}.{rng.choice(WORDS)}",
        f"{word}%20{rng.choice(WORDS)}",
        f"{word}!",
        f"{word}@home",
        f"{word}%0A",
        f"%20{word}",
        f"{word}%20",
        f"caf%C3%A9{rng.randrange(10, 99)}",
    ):
        expect_refused(chat, f"/ws/{room}?username={new_name()}", f"The room name {show(unquote(room))}")
    good = f"{longest[:15]}_{longest[15:]}-"
    chat.connect(good, new_name()).history()


# --- what clients send ----------------------------------------------------------------------


def test_blank_message_ignored(chat: Chat) -> None:
    """A blank (whitespace-only) message is neither broadcast nor kept in the history"""
    room = new_room()
    writer = chat.enter(room)
    reader = chat.enter(room, [writer])
    for blank in ("", "   ", "\t \n"):
        writer.send(blank)
    text = new_text()
    writer.send(text)
    for member in (writer, reader):
        member.expect_event(
            chat_message(room, writer.username, text),
            f"A blank message must be ignored: {member.username}'s next message should be the real one.",
        )
    history = chat.connect(room, new_name()).history()
    wanted = [chat_message(room, writer.username, text)]
    expect_history(history, wanted, "A blank message must not be kept in the history.")


def test_oversize_message_refused(chat: Chat) -> None:
    """A message over 1000 characters earns only its sender an error; the connection stays open"""
    room = new_room()
    writer = chat.enter(room)
    reader = chat.enter(room, [writer])
    filler = "".join(rng.choice("abcdefgh ") for _ in range(1000))
    longest = "x" + filler[1:]
    writer.send(longest + "y")
    error = writer.receive('{"type": "error", "detail": "..."}')
    expect(
        error.get("type") == "error" and isinstance(error.get("detail"), str),
        "A 1001-character message should earn its sender an error message.",
        expected='{"type": "error", "detail": "..."}',
        got=show(error),
    )
    writer.send(longest)
    for member in (writer, reader):
        member.expect_event(
            chat_message(room, writer.username, longest),
            f"A message of exactly 1000 characters is allowed, and the 1001-character one must not "
            f"reach {member.username}.",
        )


MULTI_BYTE = "éßøü☕漢字😀🎉ñ"  # 2, 3 and 4 bytes each in UTF-8


def test_text_limit_counts_characters_as_sent(chat: Chat) -> None:
    """The 1000-character limit counts characters of the text as sent, multi-byte and surrounding spaces included"""
    room = new_room()
    writer = chat.enter(room)
    reader = chat.enter(room, [writer])
    wide = "".join(rng.choice(MULTI_BYTE) for _ in range(1000))
    writer.send(wide)
    for member in (writer, reader):
        member.expect_event(
            chat_message(room, writer.username, wide),
            f"1000 multi-byte characters ({len(wide.encode())} bytes in UTF-8) are within the limit, which counts "
            f"characters (len(text)), not bytes: {member.username} should receive them unchanged.",
        )
    core = "".join(rng.choice("abcdefgh") for _ in range(998))
    padded_over = f"  {core}z"  # 1001 characters, 999 once stripped
    writer.send(padded_over)
    error = writer.receive('{"type": "error", "detail": "..."}')
    expect(
        error.get("type") == "error" and isinstance(error.get("detail"), str),
        f"{show(error.get('type'))} instead of an error: a text of 1001 characters (2 of them leading spaces) is "
        "over the limit. Measure the text as it was sent, before any strip().",
        sent=f"{writer.username} sent 2 spaces + 999 letters (1001 characters)",
        expected='{"type": "error", "detail": "..."}',
        got=show(error),
    )
    padded_fit = f" {core} "  # exactly 1000 characters, spaces kept
    writer.send(padded_fit)
    for member in (writer, reader):
        member.expect_event(
            chat_message(room, writer.username, padded_fit),
            f"A text of exactly 1000 characters with a space at each end is allowed and goes out as it was "
            f"sent (the padded 1001-character one must not reach {member.username}).",
        )


# --- failing connections ----------------------------------------------------------------------


def test_dead_connection_dropped(chat: Chat) -> None:
    """A client that vanished without closing is dropped at the next send, and the others still get every message"""
    room = new_room()
    label = f"dead-{rng.randrange(10**9)}"
    first = chat.enter(room)
    dead = chat.enter(room, [first], label=label)
    last = chat.enter(room, [first, dead])
    # From now on every send to that connection raises OSError, as sending to a vanished client does.
    chat.host.probe("unplug", peer=label)

    def about_the_dead(data: dict[str, Any]) -> bool:
        return data.get("type") == "leave" and data.get("username") == dead.username

    for number in range(2):
        text = new_text()
        first.send(text)
        for member in (first, last):
            got = member.receive_skipping(about_the_dead, MESSAGE)
            expect_fields(
                got,
                chat_message(room, first.username, text),
                f"{dead.username}'s connection died silently; sending to it fails. Message {number + 1} "
                f"must still reach {member.username} (catch the failed send and drop that connection).",
            )
    wanted = [{"room": room, "users": 2}]
    expect_json(
        chat.api.get("/rooms"),
        wanted,
        f"After a send to {dead.username} failed, that connection should be dropped from the room.",
    )


def test_same_username_twice_both_members(chat: Chat) -> None:
    """Two connections with the same username are two members: both stay, both receive, the count says 2"""
    room = new_room()
    name = new_name()
    first = chat.connect(room, name)
    first.history()
    first.expect_event({"type": "join", "room": room, "username": name, "users": 1}, f"{name} joined an empty room.")
    second = chat.connect(room, name)
    second.history()
    for member, which in ((first, "first"), (second, "second")):
        member.expect_event(
            {"type": "join", "room": room, "username": name, "users": 2},
            f"A second connection of {name} is a second member; the {which} one should hear users: 2. Key the "
            "room's members by connection, not by username.",
        )
    expect_json(
        chat.api.get("/rooms"),
        [{"room": room, "users": 2}],
        f"Two connections share the username {name}: GET /rooms should count 2 users.",
    )
    other = chat.enter(room, [first, second])
    text = new_text()
    other.send(text)
    for member, which in ((first, "first"), (second, "second"), (other, "sender")):
        member.expect_event(
            chat_message(room, other.username, text),
            f"The {which} connection should receive what {other.username} wrote.",
        )
    first.leave()
    for member in (second, other):
        member.expect_event(
            {"type": "leave", "room": room, "username": name, "users": 2},
            f"One of the two connections of {name} left; the other one stays, so users is 2.",
        )
    text = new_text()
    other.send(text)
    second.expect_event(
        chat_message(room, other.username, text),
        f"The remaining connection of {name} must still receive messages after the other one left.",
    )


def test_leave_during_slow_broadcast(chat: Chat) -> None:
    """A member leaving while a broadcast waits on a slow reader stops nobody: the sender stays, the others receive"""
    label = f"slow-{rng.randrange(10**9)}"
    try:
        room = new_room()
        sender = chat.enter(room)
        sluggish = chat.enter(room, [sender], label=label)
        stays = chat.enter(room, [sender, sluggish])
        goes = chat.enter(room, [sender, sluggish, stays])
        # From now on a send to the sluggish connection waits (bounded) until released, as a send
        # to a client that reads slowly does.
        chat.host.probe("slow_down", peer=label, seconds=3 * WAIT)
        text = new_text()
        sender.send(text)
        chat.host.probe("slow_send_started", seconds=WAIT)
        # While the broadcast waits on the slow reader, another member leaves: its handler now
        # changes the room's members under the broadcast's feet.
        goes.leave()
        deadline = time.monotonic() + WAIT
        while chat.rooms() != [{"room": room, "users": 3}] and time.monotonic() < deadline:
            time.sleep(0.02)
        chat.host.probe("release_sends")

        def about_the_leaver(data: dict[str, Any]) -> bool:
            return data.get("type") == "leave" and data.get("username") == goes.username

        for member in (sender, sluggish, stays):
            got = member.receive_skipping(about_the_leaver, MESSAGE)
            expect_fields(
                got,
                chat_message(room, sender.username, text),
                f"{goes.username} left while the broadcast of this message waited on the slow reader "
                f"{sluggish.username}; {member.username} must still receive it. Loop over a copy of the "
                "room's members, and let one failed send stop nobody.",
            )
        text = new_text()
        sender.send(text)
        for member in (sender, sluggish, stays):
            got = member.receive_skipping(about_the_leaver, MESSAGE)
            expect_fields(
                got,
                chat_message(room, sender.username, text),
                f"After that broadcast, {sender.username} must still be a member whose messages reach "
                f"{member.username}.",
            )
        expect_json(
            chat.api.get("/rooms"),
            [{"room": room, "users": 3}],
            f"Only {goes.username} left; the three others stay in the room.",
        )
    finally:
        quietly(lambda: chat.host.probe("release_sends"))


def test_app_serves_again_after_restart(host: AppHost) -> None:
    """The same app started a second time in one process still connects, chats and lists its rooms"""
    first_run = Chat(host, restartable=True)
    try:
        room = new_room()
        early = first_run.enter(room)
        early.send(new_text())
        early.receive(MESSAGE)
    finally:
        first_run.close(stop=True)
    # What the first run's code raised while it stopped was its own; the second run starts clean.
    quietly(host.raised)
    # A second event loop now: anything bound to the first one (a task, a queue's consumer) is gone.
    second_run = Chat(host, restartable=True)
    try:
        writer = second_run.enter(room)
        reader = second_run.enter(room, [writer])
        text = new_text()
        writer.send(text)
        for member in (writer, reader):
            member.expect_event(
                chat_message(room, writer.username, text),
                f"After the app was stopped and started again, {member.username} should receive what "
                f"{writer.username} wrote. Create nothing at import that belongs to one event loop (a task, "
                "a queue with its consumer); the connections of the first run are gone.",
            )
        expect_json(
            second_run.api.get("/rooms"),
            [{"room": room, "users": 2}],
            "After a restart, GET /rooms should count only the connections of the running app.",
        )
    finally:
        second_run.close()


# --- a real server, as any client sees it -----------------------------------------------------


def log_tail(host: AppHost) -> str:
    """The end of the server's output, starting at a whole line."""
    text = host.log(700)
    return text.split("\n", 1)[-1] if len(text) >= 700 else text


def test_real_server_end_to_end(host: AppHost) -> None:
    """On a real uvicorn server two clients chat, and one dropped abruptly does not stop the other"""
    # Every step needs the handler to answer: when an earlier check found it stuck, say so
    # now instead of serving the app to wait at the same place.
    expect_not_stuck("chat over a real uvicorn server through the same code")
    api = plain_client(host)
    # Once a wait of this run expired, a wait here is derived from how fast the app answered.
    wait = real_wait(REAL_WAIT)
    with ExitStack() as stack:
        stack.callback(quietly, api.close)
        room = new_room()

        def open_client(username: str) -> RemoteWebSocket:
            path = f"/ws/{room}?username={username}"
            conn = api.websocket_connect(path)
            try:
                within(wait, conn.__enter__, f"the handshake of {path}")
            except (CheckTimeout, WebSocketRejected, HostGone) as exc:
                fail(
                    f"The real server did not accept a WebSocket connection to {path}.",
                    expected="an accepted connection",
                    got=f"{type(exc).__name__}: {exc}; the server log ends with:\n{log_tail(host)}",
                )
            stack.callback(quietly, conn.close)
            return conn

        def send(conn: RemoteWebSocket, who: str, text: str) -> None:
            try:
                conn.send_text(text)
            except WebSocketDisconnect as exc:
                fail(
                    f"On the real server, the connection of {who} was closed before it could send {show(text)}.",
                    expected="an open connection",
                    got=f"{closed_how(exc.code)}; the server log ends with:\n{log_tail(host)}",
                )

        def receive(conn: RemoteWebSocket, who: str, expected: str) -> dict[str, Any]:
            try:
                text = conn.receive_text(timeout=wait)
            except TimeoutError:
                fail(
                    f"On the real server, {who} waited {wait:.1f} s for a message, but nothing arrived.",
                    expected=expected,
                    got="nothing",
                )
            except WebSocketDisconnect as exc:
                fail(
                    f"On the real server, the connection of {who} was closed.",
                    expected=expected,
                    got=f"{closed_how(exc.code)}; the server log ends with:\n{log_tail(host)}",
                )
            return decode(text, expected)

        def expect_next(conn: RemoteWebSocket, who: str, wanted: dict[str, Any], what: str, skip: Any = None) -> None:
            for _ in range(3):
                got = receive(conn, who, show(wanted))
                if not (skip and skip(got)):
                    break
            expect_fields(got, wanted, f"On the real server: {what}")

        alice, bob = new_name(), new_name()
        a = open_client(alice)
        expect_next(a, alice, {"type": "history", "room": room}, "the first message should be the history.")
        expect_next(a, alice, {"type": "join", "username": alice, "users": 1}, "a newcomer hears its own join.")
        b = open_client(bob)
        expect_next(b, bob, {"type": "history", "room": room}, "the first message should be the history.")
        for conn, who in ((b, bob), (a, alice)):
            expect_next(conn, who, {"type": "join", "username": bob, "users": 2}, f"{who} should hear {bob} join.")
        text = new_text()
        send(b, bob, text)
        for conn, who in ((b, bob), (a, alice)):
            expect_next(conn, who, chat_message(room, bob, text), f"{who} should receive what {bob} wrote.")

        with suppress(OSError):
            b.connection.socket.shutdown(socket.SHUT_RDWR)  # bob vanishes: no close frame

        def about_bob(data: dict[str, Any]) -> bool:
            return data.get("type") == "leave" and data.get("username") == bob

        for _ in range(2):
            text = new_text()
            send(a, alice, text)
            expect_next(
                a,
                alice,
                chat_message(room, alice, text),
                f"after {bob} vanished without a close frame, {alice} must still get every message.",
                about_bob,
            )
        wanted = [{"room": room, "users": 1}]
        deadline = time.monotonic() + 2.0
        listed: Any = None
        while time.monotonic() < deadline:
            try:
                response = api.get("/rooms", timeout=wait)
            except HostGone as exc:
                fail("GET /rooms on the real server failed.", expected=show(wanted), got=f"{type(exc).__name__}: {exc}")
            try:
                listed = response.json()
            except ValueError:
                listed = f"status {response.status_code}: {response.text[:200]}"
            if listed == wanted:
                break
            time.sleep(0.05)
        expect(
            listed == wanted,
            f"On the real server, {bob} vanished: GET /rooms should count only {alice}.",
            sent="GET /rooms",
            expected=show(wanted),
            got=show(listed),
        )


def closed_how(code: int) -> str:
    """A close as the client saw it: 1006 is the code a client reports for no close frame."""
    return "closed without a close frame" if code == 1006 else f"close code {code}"


def test_real_server_refusal(host: AppHost) -> None:
    """On a real uvicorn server a refused client sees an HTTP 403 handshake rejection, or close 1008 after accept"""
    api = plain_client(host)
    wait = real_wait(REAL_WAIT)
    for path, why in (
        (f"/ws/{new_room()}", "a client without ?username="),
        (f"/ws/{rng.choice(WORDS)}.{rng.randrange(10, 99)}?username={new_name()}", "a client of an invalid room"),
    ):
        remember_sent(f"WebSocket {path} (on a real uvicorn server)")
        conn = api.websocket_connect(path)
        try:
            within(wait, conn.__enter__, f"the handshake of {path}")
        except WebSocketRejected as exc:
            expect(
                exc.status == 403,
                f"HTTP status {exc.status}, expected 403 (or close code {POLICY_VIOLATION} after accepting): "
                f"{why} must be refused by closing the WebSocket, not by an error.",
                sent=f"WebSocket {path} on a real uvicorn server",
                expected=REFUSALS,
                got=f"HTTP status {exc.status}; the server log ends with:\n{log_tail(host)}",
            )
            continue
        except (CheckTimeout, HostGone) as exc:
            fail(
                f"{type(exc).__name__}, expected {REFUSALS}: the real server gave {why} no clear answer.",
                sent=f"WebSocket {path} on a real uvicorn server",
                expected=REFUSALS,
                got=f"{type(exc).__name__}: {clip(str(exc), 200)}; the server log ends with:\n{log_tail(host)}",
            )
        try:
            seen = []
            for _ in range(3):
                seen.append(clip(conn.receive_text(timeout=wait), 120))
            fail(
                f"the connection stayed open, expected close code {POLICY_VIOLATION}: the real server accepted "
                f"{why} and sent it messages.",
                sent=f"WebSocket {path} on a real uvicorn server",
                expected=REFUSALS,
                got=show(seen),
            )
        except TimeoutError:
            fail(
                f"the connection stayed open, expected close code {POLICY_VIOLATION}: the real server accepted "
                f"{why} and never closed it.",
                sent=f"WebSocket {path} on a real uvicorn server",
                expected=REFUSALS,
                got=f"nothing for {wait:.1f} s",
            )
        except WebSocketDisconnect as exc:
            expect(
                exc.code == POLICY_VIOLATION,
                f"close code {exc.code}, expected {POLICY_VIOLATION}: the real server accepted {why} and then "
                "closed it with the wrong code.",
                sent=f"WebSocket {path} on a real uvicorn server",
                expected=REFUSALS,
                got=closed_how(exc.code),
            )
        finally:
            quietly(conn.close)

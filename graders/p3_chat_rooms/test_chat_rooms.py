"""Grader for problem 3 — WebSocket chat with rooms.

Each check imports the app afresh and talks to it through Starlette's TestClient, used as a
context manager so every connection of a check shares one event loop. A TestClient WebSocket
receive has no timeout of its own: every receive here goes through `within`, so a server that
never answers fails the check in seconds. The last check serves the app with a real uvicorn
process and talks to it with the `websockets` client.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from workbook.grading import (
    CheckTimeout,
    client,
    expect,
    expect_json,
    expect_status,
    fail,
    json_body,
    rng,
    serve,
    show,
    within,
)

WAIT = 1.0  # seconds any one message may take through the TestClient (a correct app answers in milliseconds)
REAL_WAIT = 2.0  # the same over real sockets, to a freshly started server
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
    """`got` must carry every key of `wanted` with the same value; extra keys are allowed."""
    if any(got.get(key) != value for key, value in wanted.items()):
        fail(what, expected=f"{show(wanted)} (extra keys allowed)", got=show(got))


def chat_fields(messages: list[Any]) -> list[Any]:
    """A history's messages reduced to the keys the contract names (extra keys are allowed)."""
    keys = ("type", "room", "username", "text")
    return [
        {key: item.get(key) for key in keys if key in item} if isinstance(item, dict) else item for item in messages
    ]


def quietly(action: Callable[[], Any]) -> None:
    # Teardown of a learner's connection: the checks have already judged it, so errors here are ignored.
    with suppress(Exception):
        action()


# --- one chat client over the TestClient ------------------------------------------------


class Peer:
    """One client connected to /ws/{room}?username=... through the TestClient."""

    def __init__(self, session: Any, room: str, username: str, path: str) -> None:
        self.session = session
        self.room = room
        self.username = username
        self.path = path
        self.exited = False

    @property
    def label(self) -> str:
        return f"{self.username} (connected to {self.path})"

    def send(self, text: str) -> None:
        try:
            within_or_fail(lambda: self.session.send_text(text), f"Sending a text frame as {self.label}")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            self.handler_ended(f"a place to send {show(text)}")

    def leave(self) -> None:
        """Close the connection from the client side (the server sees a disconnect)."""
        try:
            within_or_fail(
                lambda: self.session.send({"type": "websocket.disconnect", "code": 1000}), f"Closing {self.label}"
            )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            self.exit()

    def raw(self, expected: str) -> dict[str, Any]:
        """The next ASGI message the server sent to this client, within WAIT seconds."""
        try:
            return within_or_fail(self.session.receive, f"{self.label} waited for {expected}", expected)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            self.handler_ended(expected)

    def receive(self, expected: str) -> dict[str, Any]:
        """The next message as a JSON object; a close or anything else fails the check."""
        message = self.raw(expected)
        if message.get("type") == "websocket.close":
            fail(
                f"The server closed the connection of {self.label} while it waited for a message.",
                expected=expected,
                got=f"close code {message.get('code')}",
            )
        return decode(message, expected)

    def receive_skipping(self, skip: Callable[[dict[str, Any]], bool], expected: str, limit: int = 3) -> dict[str, Any]:
        for _ in range(limit):
            data = self.receive(expected)
            if not skip(data):
                return data
        fail(f"{self.label} kept receiving other messages.", expected=expected, got=show(data))

    def handler_ended(self, expected: str) -> None:
        self.exit()  # raises the exception that ended the server's handler, if there was one
        fail(
            f"The server stopped handling the connection of {self.label} without closing it.",
            expected=expected,
            got="the handler ended",
        )

    def exit(self) -> None:
        if not self.exited:
            self.exited = True
            within_or_fail(lambda: self.session.__exit__(None, None, None), f"Closing {self.label}")

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


def decode(message: dict[str, Any], expected: str) -> dict[str, Any]:
    text = message.get("text")
    if text is None and isinstance(message.get("bytes"), bytes):
        text = message["bytes"].decode("utf-8", "replace")
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


def within_or_fail(action: Callable[[], Any], what: str, expected: str | None = None) -> Any:
    try:
        return within(WAIT, action, what)
    except CheckTimeout:
        fail(f"{what}, but nothing happened within {WAIT:g} s.", expected=expected, got="nothing")


class Chat:
    """The learner's app behind one TestClient; remembers every connection to close it at the end."""

    def __init__(self, app: Any) -> None:
        self.api = client(app)
        self.api.__enter__()
        self.peers: list[Peer] = []

    def connect(self, room: str, username: str, *, headers: dict[str, str] | None = None) -> Peer:
        """Open /ws/{room}?username=... and wait (bounded) until the server accepts it."""
        path = f"/ws/{room}?username={quote(username)}"
        session = self.api.websocket_connect(path, headers=dict(headers or {}))
        try:
            within_or_fail(session.__enter__, f"Connecting to {path}", "the server to accept the connection")
        except WebSocketDisconnect as exc:
            fail(
                f"The server refused the connection to {path}.",
                expected="an accepted connection",
                got=f"close code {exc.code}",
            )
        except WebSocketDenialResponse as exc:
            fail(
                f"The server refused the connection to {path}.",
                expected="an accepted connection",
                got=f"HTTP status {exc.status_code}",
            )
        peer = Peer(session, room, username, path)
        self.peers.append(peer)
        return peer

    def enter(self, room: str, present: list[Peer] = (), *, headers: dict[str, str] | None = None) -> Peer:
        """Connect a new user, read its history and join event, and the join event each present peer gets."""
        peer = self.connect(room, new_name(), headers=headers)
        peer.history()
        joined = {"type": "join", "room": room, "username": peer.username}
        peer.expect_event(joined, f"Right after the history, {peer.username} should receive its own join event.")
        for other in present:
            other.expect_event(joined, f"{other.username} should hear that {peer.username} joined room {room}.")
        return peer

    def rooms(self) -> Any:
        response = self.api.get("/rooms")
        expect_status(response, 200, "GET /rooms should answer 200.")
        return json_body(response)

    def close(self) -> None:
        for peer in self.peers:
            quietly(peer.exit)
        quietly(lambda: within_or_fail(lambda: self.api.__exit__(None, None, None), "Stopping the test client"))


@pytest.fixture
def chat(learner: Any) -> Iterator[Chat]:
    room = Chat(learner.app)
    yield room
    room.close()


def expect_refused(chat: Chat, path: str, why: str) -> None:
    """The server must end a connection to `path` with close code 1008, before or after accepting it."""
    session = chat.api.websocket_connect(path)
    peer = Peer(session, "", "a refused client", path)
    expected = f"close code {POLICY_VIOLATION}"
    try:
        within_or_fail(session.__enter__, f"Connecting to {path}", expected)
    except WebSocketDisconnect as exc:
        expect(
            exc.code == POLICY_VIOLATION,
            f"{why} must be refused with close code {POLICY_VIOLATION}.",
            sent=f"WebSocket {path}",
            expected=expected,
            got=f"close code {exc.code}",
        )
        return
    except WebSocketDenialResponse as exc:
        fail(
            f"{why} must be refused with a WebSocket close, not an HTTP answer.",
            sent=f"WebSocket {path}",
            expected=expected,
            got=f"HTTP status {exc.status_code}",
        )
    chat.peers.append(peer)
    seen = []
    for _ in range(3):
        try:
            message = within(WAIT, session.receive, f"Waiting for the close of {path}")
        except CheckTimeout:
            fail(
                f"{why} must be closed with code {POLICY_VIOLATION}, but the server accepted it and kept it open.",
                sent=f"WebSocket {path}",
                expected=expected,
                got=f"{show(seen)}, then nothing for {WAIT:g} s",
            )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            peer.handler_ended(expected)
        if message.get("type") == "websocket.close":
            expect(
                message.get("code") == POLICY_VIOLATION,
                f"{why} must be closed with code {POLICY_VIOLATION}.",
                sent=f"WebSocket {path}",
                expected=expected,
                got=f"close code {message.get('code')}",
            )
            return
        seen.append(decode(message, expected))
    fail(
        f"{why} must be closed with code {POLICY_VIOLATION}, but the server kept the connection open.",
        sent=f"WebSocket {path}",
        expected=expected,
        got=show(seen),
    )


# --- history ------------------------------------------------------------------------------


def test_history_starts_empty(chat: Chat) -> None:
    """the first message in a new room is {"type": "history", "room": ..., "messages": []}"""
    room = new_room()
    peer = chat.connect(room, new_name())
    first = peer.receive('{"type": "history", "room": ..., "messages": []}')
    expect_fields(
        first,
        {"type": "history", "room": room, "messages": []},
        "A newcomer to a room nobody has written in should first receive an empty history.",
    )


def test_history_comes_before_join(chat: Chat) -> None:
    """a newcomer receives the history first, then its own join event"""
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
    """the history holds the room's earlier chat messages, oldest first"""
    room = new_room()
    writer = chat.enter(room)
    sent = []
    for _ in range(rng.randrange(3, 7)):
        text = new_text()
        writer.send(text)
        writer.expect_event(chat_message(room, writer.username, text), "The sender should get its own message back.")
        sent.append(chat_message(room, writer.username, text))
    history = chat.connect(room, new_name()).history()
    expect(
        chat_fields(history) == sent,
        "The history should list every earlier message, oldest first.",
        expected=show(sent),
        got=show(history),
    )


def test_history_keeps_last_50(chat: Chat) -> None:
    """after 55 messages the history holds exactly the last 50, oldest first"""
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
    """the history holds chat messages only, never join or leave events"""
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
    expect(
        chat_fields(history) == wanted,
        "The history must hold the chat messages only, not join or leave events.",
        expected=show(wanted),
        got=show(history),
    )


# --- join, message, leave -----------------------------------------------------------------


def test_join_announced_with_count(chat: Chat) -> None:
    """everyone in the room, the newcomer included, receives a join event with the new user count"""
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
    """a chat message comes back to its sender as {"type": "message", "room", "username", "text"}"""
    room = new_room()
    peer = chat.enter(room)
    text = new_text()
    peer.send(text)
    peer.expect_event(chat_message(room, peer.username, text), "The sender should receive its own message too.")


def test_message_reaches_room_members(chat: Chat) -> None:
    """a chat message reaches every other member of the room"""
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
    """when a client leaves, the others receive a leave event with the new user count"""
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
    """messages, join events and history never cross from one room into another"""
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
    expect(
        chat_fields(history) == wanted,
        f"The history of room {there} must hold only that room's messages.",
        expected=show(wanted),
        got=show(history),
    )


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
    """a room leaves GET /rooms when its last user leaves, and keeps its history for the next visitor"""
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
    expect(
        chat_fields(history) == [chat_message(emptied, goes.username, text)],
        "A room that emptied must keep its history for the next visitor.",
        expected=show([chat_message(emptied, goes.username, text)]),
        got=show(history),
    )


# --- validation -----------------------------------------------------------------------------


def test_username_required(chat: Chat) -> None:
    """connecting without a username, or with a blank one, is closed with code 1008"""
    room = new_room()
    for query, why in (
        ("", "A connection without ?username="),
        ("?username=", "A connection with an empty username"),
        ("?username=%20%20%20", "A connection with a blank username"),
    ):
        expect_refused(chat, f"/ws/{room}{query}", why)
    expect_json(chat.api.get("/rooms"), [], "A refused connection must not appear in GET /rooms.")


def test_room_name_validated(chat: Chat) -> None:
    """a room name must be 1-32 letters, digits, _ or -; anything else is closed with code 1008"""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    longest = "".join(rng.choice(letters) for _ in range(30))
    too_long = longest + "xyz"
    for room in (
        too_long,
        f"{rng.choice(WORDS)}.{rng.choice(WORDS)}",
        f"{rng.choice(WORDS)}%20{rng.choice(WORDS)}",
        f"{rng.choice(WORDS)}!",
        f"{rng.choice(WORDS)}@home",
    ):
        expect_refused(chat, f"/ws/{room}?username={new_name()}", f"The room name {show(room)}")
    good = f"{longest[:15]}_{longest[15:]}-"
    chat.connect(good, new_name()).history()


# --- what clients send ----------------------------------------------------------------------


def test_blank_message_ignored(chat: Chat) -> None:
    """a blank (whitespace-only) message is neither broadcast nor kept in the history"""
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
    expect(
        chat_fields(history) == wanted,
        "A blank message must not be kept in the history.",
        expected=show(wanted),
        got=show(history),
    )


def test_oversize_message_refused(chat: Chat) -> None:
    """a message over 1000 characters earns only its sender an error; the connection stays open"""
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


# --- failing connections ----------------------------------------------------------------------


def unpluggable(app: Any, unplugged: set[str]) -> Any:
    """Wrap the app: a connection opened with header x-peer: NAME dies silently once NAME is in
    `unplugged` — every later send to it raises OSError, as sending to a vanished client does."""

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await app(scope, receive, send)
            return
        peer = dict(scope.get("headers") or []).get(b"x-peer", b"").decode()

        async def guarded_send(message: dict) -> None:
            if peer and peer in unplugged and message.get("type") == "websocket.send":
                raise OSError("the client vanished (simulated by the grader)")
            await send(message)

        await app(scope, receive, guarded_send)

    return wrapped


def test_dead_connection_dropped(learner: Any) -> None:
    """a client that vanished without closing is dropped at the next send, and the others still get every message"""
    unplugged: set[str] = set()
    chat = Chat(unpluggable(learner.app, unplugged))
    try:
        room = new_room()
        first = chat.enter(room)
        dead = chat.enter(room, [first], headers={"x-peer": "dead"})
        last = chat.enter(room, [first, dead])
        unplugged.add("dead")

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
    finally:
        chat.close()


# --- a real server ------------------------------------------------------------------------------


def log_tail(server: Any) -> str:
    """The end of the server's output, starting at a whole line."""
    text = server.log(700)
    return text.split("\n", 1)[-1] if len(text) >= 700 else text


def test_real_server_end_to_end(problem: Any) -> None:
    """on a real uvicorn server two clients chat, and one dropped abruptly does not stop the other"""
    import httpx
    from websockets.exceptions import ConnectionClosed, InvalidHandshake
    from websockets.sync.client import connect

    server = serve(problem)
    try:
        with ExitStack() as stack:
            room = new_room()

            def open_client(username: str) -> Any:
                url = f"{server.ws_url}/ws/{room}?username={username}"
                try:
                    # legacy=True: connect now and hand back the connection (websockets 17 warns otherwise).
                    conn = connect(url, open_timeout=REAL_WAIT, close_timeout=0.5, legacy=True)
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    fail(
                        f"The real server did not accept a WebSocket connection to /ws/{room}?username={username}.",
                        expected="an accepted connection",
                        got=f"{type(exc).__name__}: {exc}; the server log ends with:\n{log_tail(server)}",
                    )
                stack.callback(quietly, conn.close)
                return conn

            def send(conn: Any, who: str, text: str) -> None:
                try:
                    conn.send(text)
                except ConnectionClosed as exc:
                    code = f"close code {exc.rcvd.code}" if exc.rcvd else "closed without a close frame"
                    fail(
                        f"On the real server, the connection of {who} was closed before it could send {show(text)}.",
                        expected="an open connection",
                        got=f"{code}; the server log ends with:\n{log_tail(server)}",
                    )

            def receive(conn: Any, who: str, expected: str) -> dict[str, Any]:
                try:
                    text = conn.recv(timeout=REAL_WAIT)
                except TimeoutError:
                    fail(
                        f"On the real server, {who} waited {REAL_WAIT:g} s for a message, but nothing arrived.",
                        expected=expected,
                        got="nothing",
                    )
                except ConnectionClosed as exc:
                    code = f"close code {exc.rcvd.code}" if exc.rcvd else "closed without a close frame"
                    fail(
                        f"On the real server, the connection of {who} was closed.",
                        expected=expected,
                        got=f"{code}; the server log ends with:\n{log_tail(server)}",
                    )
                return decode({"text": text if isinstance(text, str) else text.decode("utf-8", "replace")}, expected)

            def expect_next(conn: Any, who: str, wanted: dict[str, Any], what: str, skip: Any = None) -> None:
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
                b.socket.shutdown(socket.SHUT_RDWR)  # bob vanishes: no close frame

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
                    response = httpx.get(f"{server.http_url}/rooms", timeout=REAL_WAIT)
                except httpx.HTTPError as exc:
                    fail(
                        "GET /rooms on the real server failed.",
                        expected=show(wanted),
                        got=f"{type(exc).__name__}: {exc}",
                    )
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
    finally:
        server.stop(timeout=3)

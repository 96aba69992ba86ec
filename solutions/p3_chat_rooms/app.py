"""Problem 3 — WebSocket chat with rooms.

The lesson's single-room chat (§5 WebSocket Support) grown into rooms: each room has its own
connections and keeps its last 50 chat messages; GET /rooms lists the rooms in use. Read
README.md in this folder for the exact contract, then run `workbook check 3` after each change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, status

HISTORY_SIZE = 50  # Don't change this line
MAX_TEXT_LENGTH = 1000  # Don't change this line
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # Don't change this line


@dataclass
class ConnectionManager:
    """Who is in which room, and what each room has said lately."""

    # Why: one {connection: username} dict per room, so a broadcast only ever reaches its own room.
    rooms: dict[str, dict[WebSocket, str]] = field(default_factory=dict)
    # Why: history lives apart from the connections, so it outlives a room that empties.
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def connect(self, websocket: WebSocket, room: str, username: str) -> None:
        await websocket.accept()
        # Why: history goes out before the newcomer joins, so no broadcast can overtake it.
        await websocket.send_json({"type": "history", "room": room, "messages": list(self.history.get(room, []))})
        self.rooms.setdefault(room, {})[websocket] = username
        await self.broadcast(room, {"type": "join", "room": room, "username": username, "users": self.count(room)})

    def disconnect(self, websocket: WebSocket, room: str) -> str | None:
        """Forget a connection; returns its username, or None when it was already gone."""
        # Why: pop with a default, because a dead socket may have been dropped by broadcast() already.
        members = self.rooms.get(room, {})
        username = members.pop(websocket, None)
        if not members:
            self.rooms.pop(room, None)
        return username

    def count(self, room: str) -> int:
        return len(self.rooms.get(room, {}))

    def remember(self, room: str, message: dict[str, Any]) -> None:
        # Why: append, then keep only the newest HISTORY_SIZE, so the oldest messages drop off.
        kept = self.history.setdefault(room, [])
        kept.append(message)
        del kept[:-HISTORY_SIZE]

    async def broadcast(self, room: str, message: dict[str, Any]) -> None:
        dead = []
        # Why: iterate over a copy, and keep going past a socket that fails, so one dead client stops nobody.
        for websocket in list(self.rooms.get(room, {})):
            try:
                await websocket.send_json(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                dead.append(websocket)
        for websocket in dead:
            username = self.disconnect(websocket, room)
            if username is not None:
                await self.broadcast(room, leave_event(room, username, self.count(room)))

    def list_rooms(self) -> list[dict[str, Any]]:
        # Why: only rooms with someone in them, sorted by name.
        return [{"room": room, "users": len(members)} for room, members in sorted(self.rooms.items()) if members]


def leave_event(room: str, username: str, users: int) -> dict[str, Any]:
    return {"type": "leave", "room": room, "username": username, "users": users}


manager = ConnectionManager()  # Don't change this line

app = FastAPI(title="Problem 3 — WebSocket chat with rooms")  # Don't change this line


@app.get("/rooms")
def list_rooms() -> list[dict[str, Any]]:
    # Why: the manager already knows which rooms are in use and how full they are.
    return manager.list_rooms()


@app.websocket("/ws/{room}")
async def chat(websocket: WebSocket, room: str, username: str = "") -> None:
    # Why: refuse a blank username or a bad room name before accepting; 1008 means "policy violation".
    if not username.strip() or not ROOM_NAME.fullmatch(room):
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    await manager.connect(websocket, room, username)
    try:
        while True:
            text = await websocket.receive_text()
            # Why: a blank message is ignored; an oversize one earns only its sender an error.
            if not text.strip():
                continue
            if len(text) > MAX_TEXT_LENGTH:
                detail = f"A message may hold at most {MAX_TEXT_LENGTH} characters; yours has {len(text)}."
                await websocket.send_json({"type": "error", "detail": detail})
                continue
            message = {"type": "message", "room": room, "username": username, "text": text}
            manager.remember(room, message)
            await manager.broadcast(room, message)
    except WebSocketDisconnect:
        pass
    finally:
        # Why: announce the leave to the rest of the room, unless broadcast() already dropped us.
        if manager.disconnect(websocket, room) is not None:
            await manager.broadcast(room, leave_event(room, username, manager.count(room)))

"""Problem 3 — WebSocket chat with rooms.

Start from the lesson's single-room chat (§5 WebSocket Support) and grow it into rooms: each
room has its own connections and keeps its last 50 chat messages; GET /rooms lists the rooms in
use. Read README.md in this folder for the exact contract, then run `workbook check 3` after
each change. To try it by hand: `uvicorn app:app --reload` in this folder, then open chat.html.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, status  # noqa: F401

HISTORY_SIZE = 50  # Don't change this line
MAX_TEXT_LENGTH = 1000  # Don't change this line
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # Don't change this line


@dataclass
class ConnectionManager:
    """The lesson's manager: ONE list of connections, so every broadcast reaches everyone."""

    # TODO: keep the connections per room (and remember each connection's username), and keep
    #       each room's chat history apart from its connections, so it outlives an empty room.
    active_connections: list[WebSocket] = field(default_factory=list)

    async def connect(self, websocket: WebSocket, room: str, username: str) -> None:
        # TODO: accept; send {"type": "history", "room", "messages"} to the newcomer FIRST; then add
        #       it to its room and broadcast {"type": "join", "room", "username", "users"} to the room.
        raise NotImplementedError("ConnectionManager.connect() is not written yet")

    def disconnect(self, websocket: WebSocket) -> None:
        # TODO: remove the connection from its room (it may already be gone) and forget empty rooms.
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        # TODO: send a JSON message to the members of ONE room only. A send to a dead connection
        #       raises: drop that connection and keep sending to the others.
        for connection in self.active_connections.copy():
            try:
                await connection.send_text(message)
            except WebSocketDisconnect:
                self.disconnect(connection)

    def list_rooms(self) -> list[dict[str, Any]]:
        # TODO: [{"room": ..., "users": ...}] for the rooms with at least one connection, sorted by name.
        raise NotImplementedError("ConnectionManager.list_rooms() is not written yet")


manager = ConnectionManager()  # Don't change this line

app = FastAPI(title="Problem 3 — WebSocket chat with rooms")  # Don't change this line


@app.get("/rooms")
def list_rooms() -> list[dict[str, Any]]:
    # TODO: answer the rooms in use with their user counts.
    raise NotImplementedError("GET /rooms is not written yet")


@app.websocket("/ws/{room}")
async def chat(websocket: WebSocket, room: str, username: str = "") -> None:
    # TODO: close with code 1008 (status.WS_1008_POLICY_VIOLATION) when the username is missing or
    #       blank, or when the room name does not match ROOM_NAME.
    await manager.connect(websocket, room, username)
    try:
        while True:
            text = await websocket.receive_text()
            # TODO: ignore a blank text; answer a text over MAX_TEXT_LENGTH characters with
            #       {"type": "error", "detail": ...} to the sender only; otherwise broadcast
            #       {"type": "message", "room", "username", "text"} to the room and keep it in the
            #       room's history (the last HISTORY_SIZE messages).
            await manager.broadcast(f"[{room}] {text}")
    except WebSocketDisconnect:
        manager.disconnect(websocket)
        # TODO: tell the rest of the room: {"type": "leave", "room", "username", "users"}.
        await manager.broadcast(f"User left room {room}")

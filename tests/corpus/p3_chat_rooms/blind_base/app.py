"""Problem 3 — WebSocket chat with rooms.

Start from the lesson's single-room chat (§5 WebSocket Support) and grow it into rooms: each
room has its own connections and keeps its last 50 chat messages; GET /rooms lists the rooms in
use. Read README.md in this folder for the exact contract, then run `workbook check 3` after
each change. To try it by hand: `uvicorn app:app --reload` in this folder, then open chat.html.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, status  # noqa: F401

HISTORY_SIZE = 50  # Don't change this line
MAX_TEXT_LENGTH = 1000  # Don't change this line
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # Don't change this line


@dataclass
class ConnectionManager:
    """Connections per room (each with its username), and each room's chat history."""

    rooms: dict[str, dict[WebSocket, str]] = field(default_factory=dict)
    histories: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)

    def _history(self, room: str) -> deque[dict[str, Any]]:
        if room not in self.histories:
            self.histories[room] = deque(maxlen=HISTORY_SIZE)
        return self.histories[room]

    def count(self, room: str) -> int:
        return len(self.rooms.get(room, {}))

    async def connect(self, websocket: WebSocket, room: str, username: str) -> None:
        await websocket.accept()
        history = list(self._history(room))
        await websocket.send_json({"type": "history", "room": room, "messages": history})
        self.rooms.setdefault(room, {})[websocket] = username
        await self.broadcast(
            room, {"type": "join", "room": room, "username": username, "users": self.count(room)}
        )

    def disconnect(self, websocket: WebSocket) -> None:
        for room, members in list(self.rooms.items()):
            if websocket in members:
                del members[websocket]
                if not members:
                    del self.rooms[room]

    async def broadcast(self, room: str, message: dict[str, Any]) -> None:
        for connection in list(self.rooms.get(room, {})):
            try:
                await connection.send_json(message)
            except Exception:
                self.disconnect(connection)

    def add_message(self, room: str, message: dict[str, Any]) -> None:
        self._history(room).append(message)

    def list_rooms(self) -> list[dict[str, Any]]:
        return [{"room": room, "users": len(members)} for room, members in sorted(self.rooms.items()) if members]


manager = ConnectionManager()  # Don't change this line

app = FastAPI(title="Problem 3 — WebSocket chat with rooms")  # Don't change this line


@app.get("/rooms")
def list_rooms() -> list[dict[str, Any]]:
    return manager.list_rooms()


@app.websocket("/ws/{room}")
async def chat(websocket: WebSocket, room: str, username: str = "") -> None:
    if not username.strip() or not ROOM_NAME.fullmatch(room):
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    await manager.connect(websocket, room, username)
    try:
        while True:
            text = await websocket.receive_text()
            if not text.strip():
                continue
            if len(text) > MAX_TEXT_LENGTH:
                await websocket.send_json(
                    {
                        "type": "error",
                        "detail": f"A message may hold at most {MAX_TEXT_LENGTH} characters; yours has {len(text)}.",
                    }
                )
                continue
            message = {"type": "message", "room": room, "username": username, "text": text}
            manager.add_message(room, message)
            await manager.broadcast(room, message)
    except WebSocketDisconnect:
        pass
    finally:
        manager.disconnect(websocket)
        await manager.broadcast(
            room, {"type": "leave", "room": room, "username": username, "users": manager.count(room)}
        )

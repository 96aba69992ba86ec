"""Problem 3, an alternative correct solution: one Room object per room holding a set of
sockets, a username map and a deque(maxlen=50); an asyncio.Lock guards membership changes;
an invalid connection is accepted first and then closed with 1008."""

import asyncio
import re
from collections import deque
from dataclasses import dataclass, field

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

VALID_ROOM = re.compile(r"\A[A-Za-z0-9_-]{1,32}\Z")


@dataclass
class Room:
    sockets: set = field(default_factory=set)
    names: dict = field(default_factory=dict)
    history: deque = field(default_factory=lambda: deque(maxlen=50))


class Hub:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.lock = asyncio.Lock()

    def room(self, name: str) -> Room:
        if name not in self.rooms:
            self.rooms[name] = Room()
        return self.rooms[name]

    async def send_all(self, name: str, payload: dict) -> None:
        room = self.room(name)
        gone = []
        for ws in tuple(room.sockets):
            try:
                await ws.send_json(payload)
            except Exception:
                gone.append(ws)
        for ws in gone:
            await self.remove(name, ws, announce=True)

    async def add(self, name: str, ws: WebSocket, user: str) -> None:
        room = self.room(name)
        await ws.send_json({"type": "history", "room": name, "messages": list(room.history)})
        async with self.lock:
            room.sockets.add(ws)
            room.names[ws] = user
            users = len(room.sockets)
        await self.send_all(name, {"type": "join", "room": name, "username": user, "users": users})

    async def remove(self, name: str, ws: WebSocket, announce: bool) -> None:
        room = self.room(name)
        async with self.lock:
            if ws not in room.sockets:
                return
            room.sockets.discard(ws)
            user = room.names.pop(ws)
            users = len(room.sockets)
        if announce:
            await self.send_all(name, {"type": "leave", "room": name, "username": user, "users": users})


hub = Hub()
app = FastAPI()


@app.get("/rooms")
async def rooms():
    return [{"room": name, "users": len(room.sockets)} for name, room in sorted(hub.rooms.items()) if room.sockets]


@app.websocket("/ws/{room}")
async def ws_room(websocket: WebSocket, room: str, username: str | None = None):
    await websocket.accept()
    if username is None or username.strip() == "" or VALID_ROOM.match(room) is None:
        await websocket.close(code=1008, reason="username and a valid room name are required")
        return
    await hub.add(room, websocket, username)
    try:
        while True:
            text = await websocket.receive_text()
            if text.strip() == "":
                continue
            if len(text) > 1000:
                await websocket.send_json({"type": "error", "detail": "message too long (max 1000 characters)"})
                continue
            msg = {
                "type": "message",
                "room": room,
                "username": username,
                "text": text,
                "ts": asyncio.get_running_loop().time(),
            }
            hub.room(room).history.append(msg)
            await hub.send_all(room, msg)
    except WebSocketDisconnect:
        await hub.remove(room, websocket, announce=True)

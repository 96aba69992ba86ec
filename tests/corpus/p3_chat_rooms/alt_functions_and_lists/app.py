"""Problem 3, an alternative correct solution: plain module-level dicts of lists, list slicing
for the history, a required Query username (FastAPI itself closes with 1008 when it is
missing), and json.dumps + send_text. A dead socket is dropped silently (no leave event)."""

import json
import re
from datetime import datetime, timezone

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect, status

app = FastAPI()

connections: dict[str, list[tuple[WebSocket, str]]] = {}
histories: dict[str, list[dict]] = {}


def members(room: str) -> list[tuple[WebSocket, str]]:
    return connections.setdefault(room, [])


def drop(room: str, websocket: WebSocket) -> bool:
    before = len(members(room))
    connections[room] = [(ws, name) for ws, name in members(room) if ws is not websocket]
    return len(connections[room]) < before


async def send_room(room: str, event: dict) -> None:
    text = json.dumps(event)
    for ws, _ in members(room).copy():
        try:
            await ws.send_text(text)
        except WebSocketDisconnect:
            drop(room, ws)


@app.get("/rooms")
def rooms():
    listing = [{"room": room, "users": len(people)} for room, people in connections.items() if people]
    return sorted(listing, key=lambda item: item["room"])


@app.websocket("/ws/{room}")
async def chat(websocket: WebSocket, room: str, username: str = Query()):
    if not re.fullmatch(r"[\w-]{1,32}", room, flags=re.ASCII) or username.strip() == "":
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    await websocket.accept()
    await websocket.send_text(json.dumps({"type": "history", "room": room, "messages": histories.get(room, [])}))
    members(room).append((websocket, username))
    await send_room(room, {"type": "join", "room": room, "username": username, "users": len(members(room))})
    try:
        while True:
            text = await websocket.receive_text()
            if not text.strip():
                continue
            if len(text) > 1000:
                await websocket.send_text(
                    json.dumps({"type": "error", "detail": f"{len(text)} characters is too long"})
                )
                continue
            event = {
                "type": "message",
                "room": room,
                "username": username,
                "text": text,
                "sent_at": datetime.now(timezone.utc).isoformat(),
            }
            histories[room] = (histories.get(room, []) + [event])[-50:]
            await send_room(room, event)
    except WebSocketDisconnect:
        if drop(room, websocket):
            await send_room(room, {"type": "leave", "room": room, "username": username, "users": len(members(room))})

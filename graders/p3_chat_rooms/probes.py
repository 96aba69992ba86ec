"""Problem 3's probe menu (workbook/hostkit.py): what the grader observes or arranges inside
the app host, beside the learner's code.

The grader serves the learner's `app` wrapped by `wrap_app`: a transparent ASGI layer that
looks only at WebSocket connections opened with the header `x-peer: LABEL` (labels the
grader draws at random). For such a connection it records the close code the app sent
before accepting (a real server shows any such close as HTTP 403, so the code never reaches
the client), and, once the grader asks, makes every later send to it fail (a client that
vanished) or wait (a client that reads slowly). Every answer is an observation; the grader
judges it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

WRAPPED_APP = "workbook_observed_app"  # where wrap_app puts the wrapper, for serve(app=...)

_unplugged: set[str] = set()
_slow: dict[str, float] = {}  # label -> seconds a send to it may wait at most
_slow_send_started = threading.Event()
_release = threading.Event()
_closed_before_accept: dict[str, int] = {}
_kept_listener: Any = None


def wrap_app(host: Any) -> str:
    """Put the learner's app, wrapped, on its module; returns the attribute to serve."""
    setattr(host.module, WRAPPED_APP, _observed(host.module.app))
    return WRAPPED_APP


def unplug(host: Any, peer: str) -> None:
    """From now on every send to the connection labelled `peer` raises OSError, as a send to
    a client whose network died does."""
    _unplugged.add(peer)


def slow_down(host: Any, peer: str, seconds: float) -> None:
    """From now on a send to the connection labelled `peer` waits until `release_sends` (at
    most `seconds`), as a send to a client that reads slowly does."""
    _slow[peer] = seconds


def slow_send_started(host: Any, seconds: float) -> bool:
    """Whether a send to a slowed connection began, waiting at most `seconds` for one."""
    return _slow_send_started.wait(seconds)


def release_sends(host: Any) -> None:
    _release.set()


def close_before_accept(host: Any, peer: str) -> int | None:
    """The close code the app sent to the connection labelled `peer` before accepting it;
    None when it sent no close before accepting."""
    return _closed_before_accept.get(peer)


def reusable_listener(host: Any) -> None:
    """Serve the next time on a duplicate of the listening socket: uvicorn closes the socket
    it served on when it stops, and an app started a second time in this process needs one."""
    global _kept_listener
    if _kept_listener is None:
        _kept_listener = host.listener
    host.listener = _kept_listener.dup()


def _observed(app: Any) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await app(scope, receive, send)
            return
        peer = dict(scope.get("headers") or []).get(b"x-peer", b"").decode("latin-1")
        accepted = False

        async def observed_send(message: dict[str, Any]) -> None:
            nonlocal accepted
            kind = message.get("type")
            if kind == "websocket.accept":
                accepted = True
            elif kind == "websocket.close" and not accepted and peer:
                _closed_before_accept[peer] = int(message.get("code", 1000))
            elif kind == "websocket.send" and peer in _unplugged:
                raise OSError("the client vanished (simulated by the grader)")
            elif kind == "websocket.send" and peer in _slow:
                _slow_send_started.set()
                deadline = time.monotonic() + _slow[peer]
                while not _release.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
            await send(message)

        await app(scope, receive, observed_send)

    return wrapped

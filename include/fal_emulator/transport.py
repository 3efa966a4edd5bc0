"""Connection-level misbehaviour that plain ASGI cannot express: drop, stall, cut short.

ASGI has no "close the socket" message, so the outermost app wrapper stores uvicorn's transport
(reachable as ``send.__self__.transport`` on uvicorn's own send callable) in the scope. Faults
then close it directly, so the client sees a real dropped connection, not an HTTP error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import Response

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
TRANSPORT = "fal_emulator.transport"


class ConnectionDropped(Exception):
    """Raised when no transport is reachable: uvicorn then aborts the response itself."""


def expose_transport(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so handlers can reach the socket of their HTTP connection."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            cycle = getattr(send, "__self__", None)
            scope[TRANSPORT] = getattr(cycle, "transport", None)
        await app(scope, receive, send)

    return wrapper


async def drop(scope: Scope) -> None:
    """Close the connection now, without an answer (or after a partial one)."""
    transport = scope.get(TRANSPORT)
    if transport is None:
        raise ConnectionDropped("no transport to close")
    transport.close()
    await asyncio.sleep(0)  # let uvicorn notice the disconnect before anything else is sent


async def wait_for_disconnect(receive: Receive, seconds: float) -> None:
    """Hold the connection open (at most ``seconds``) until the client gives up."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
    except TimeoutError:
        return


class RawResponse(Response):
    """Base for answers that talk ASGI directly (FastAPI passes Response subclasses through untouched)."""

    def __init__(self, status_code: int = 200) -> None:
        self.status_code, self.background = status_code, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
        raise NotImplementedError


class StalledResponse(RawResponse):
    """F1: send the status line and headers, then never the body."""

    def __init__(self, status_code: int, seconds: float) -> None:
        super().__init__(status_code)
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"512")]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await wait_for_disconnect(receive, self.seconds)
        await drop(scope)


class DroppedResponse(RawResponse):
    """F4 and friends: the connection closes before any byte of an answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await drop(scope)

"""Running a fake provider's ASGI app under uvicorn on a background thread, on a free local port, and the
few ASGI steps every HTTP fake takes: read the request, answer it whole."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def read_body(receive: Receive) -> bytes:
    """The whole request body: ASGI may hand it over in several ``http.request`` events."""
    chunks: list[bytes] = []
    while True:
        event = await receive()
        chunks.append(event.get("body", b""))
        if not event.get("more_body"):
            return b"".join(chunks)


def headers_of(scope: Scope) -> dict[str, str]:
    """The request headers by lower-case name, decoded as latin-1 so that any byte a client sends decodes."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


async def answer(send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    """Send a whole response at once: the fakes never stream."""
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ThreadedServer:
    """Base of the HTTP fakes: ``start()`` serves :meth:`asgi` on ``self.port`` until ``stop()``."""

    port: int
    url: str
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def asgi(self) -> Any:
        return self

    def start(self) -> None:
        config = uvicorn.Config(self.asgi(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__} did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving without waiting out a request still in the handler (a ``slow`` fake's sleep):
        uvicorn cancels it (the client, if still there, gets a 500). Python 3.12 and later still wait
        for open connections to close; the tests stop a fake after the app that called it."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = self._server.force_exit = True
            self._thread.join(timeout=10)
            self._server = None

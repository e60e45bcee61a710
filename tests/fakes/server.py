"""Running a fake provider's ASGI app under uvicorn on a background thread, on a free local port."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class ThreadedServer:
    """Base of the HTTP fakes: ``start()`` serves :meth:`asgi` on ``self.port`` until ``stop()``."""

    port: int
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

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
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

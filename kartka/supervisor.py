"""``kartka serve`` keeps its worker running: a worker that exits is started again, with backoff.

The worker itself survives database outages (it backs off and reconnects); this covers everything
else that can end a process: a bug, the OOM killer, a stray ``kill``. Each restart is logged with the
exit status, and ``/ready`` turns 503 when no worker is beating (kartka.heartbeat), so a worker that
keeps failing is seen.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)


class Supervisor:
    """Runs ``command`` in a child process from a thread of its own, restarting it when it exits."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        name: str = "worker",
        min_backoff: float = 1.0,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.name = name
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # The thread that starts the child must outlive it: the kernel's parent-death signal
        # (kartka.lifeline) fires when the starting thread ends. So it is not a daemon thread.
        self._thread = threading.Thread(target=self._run, name=f"supervise {name}")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                # A session of its own: a Ctrl-C in the terminal reaches only kartka serve, which stops the
                # worker in order instead of seeing it exit and restarting it.
                self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True)  # noqa: S603
            started = time.monotonic()
            status = self.process.wait()
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            failures = 1 if ran >= self.healthy_after else failures + 1
            delay = min(self.max_backoff, self.min_backoff * 2 ** (failures - 1))
            self.restarts += 1
            logger.error(
                "the %s (pid %d) exited with status %d after %.1f s; restarting it in %.1f s",
                self.name,
                self.process.pid,
                status,
                ran,
                delay,
            )
            self._stopping.wait(delay)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the child (it finishes what it holds), SIGKILL it after ``timeout``; no restart."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("the %s did not stop within %.0f s; killing it", self.name, timeout)
                process.kill()
                process.wait()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

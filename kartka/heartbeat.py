"""Worker heartbeats: a row per worker, refreshed while its loops make progress, read by ``/ready``.

A worker that died, froze, or sits in a loop that no longer comes round stops beating; every API
replica sees that in the database, whichever machine the worker ran on.
"""

from __future__ import annotations

import os
import socket

from kartka.db import Connection, Pool

#: Rows of workers silent this long are deleted by the next beat of any worker.
FORGET_AFTER_SECONDS = 86_400


async def beat(pool: Pool, name: str) -> None:
    """Record that worker ``name`` is alive now (database time)."""
    await pool.execute(
        """
        INSERT INTO worker_heartbeats (name, host, pid) VALUES ($1, $2, $3)
        ON CONFLICT (name) DO UPDATE SET beat_at = now()
        """,
        name,
        socket.gethostname()[:200],
        os.getpid(),
    )


async def forget_old(pool: Pool) -> None:
    await pool.execute(
        "DELETE FROM worker_heartbeats WHERE beat_at < now() - make_interval(secs => $1)", float(FORGET_AFTER_SECONDS)
    )


async def seconds_since_last_beat(conn: Connection) -> float | None:
    """Seconds since the freshest heartbeat of any worker; None when no worker ever beat."""
    age: float | None = await conn.fetchval(
        "SELECT extract(epoch FROM now() - max(beat_at))::float8 FROM worker_heartbeats"
    )
    return age

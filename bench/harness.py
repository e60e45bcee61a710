"""What the benchmarks share: a fresh database, the app served as ``kartka serve`` serves it, wrk's
figures read back, the median round, and where results go.

Every benchmark measures against a baseline taken in the same run, on a database made for the run
(``KARTKA_BENCH_ADMIN_URL``, default the local server, else an embedded one) and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def admin_url() -> tuple[str, Any]:
    url = os.environ.get("KARTKA_BENCH_ADMIN_URL", DEFAULT_ADMIN_URL)
    try:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()
        return url, None
    except (OSError, asyncpg.PostgresError):
        from kartka.embedded import _server  # noqa: PLC0415

        server = _server(Path(tempfile.mkdtemp(prefix="kartka-bench-")) / "pgdata")
        return server.get_uri("postgres"), server


def with_database(url: str, name: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path=f"/{name}"))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(prefix: str = "kartka_bench") -> Iterator[str]:
    """The URL of a new, uniquely named, empty database; dropped (and an embedded server stopped) after."""
    admin, embedded = asyncio.run(admin_url())
    name = f"{prefix}_{secrets.token_hex(4)}"
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(admin, name)
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if embedded is not None:
            embedded.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_server(url: str, port: int, workers: int, settings: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The bench app under uvicorn; ``settings`` are extra environment variables (``KARTKA_*`` settings,
    ``BENCH_AT`` for ``bench.app``), none inherited from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARTKA_") and k != "BENCH_AT"}
    env |= {
        "DATABASE_URL": url,
        "KARTKA_ENV": "test",
        "KARTKA_MIGRATE_ON_START": "false",
        "KARTKA_LOG_LEVEL": "WARNING",
        "KARTKA_DB_POOL_MIN": "10",
        "KARTKA_WORKER_STALE_SECONDS": "0",  # no worker runs beside the benchmark: /ready need not wait for one
        "PYTHONPATH": str(ROOT),
    } | (settings or {})
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.app:create_bench_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
        "--no-proxy-headers",  # as `kartka serve`: the app reads X-Forwarded-For from KARTKA_TRUSTED_PROXIES
        "--no-date-header",  # as kartka serve: the app sets Date
    ]
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


@contextlib.contextmanager
def serving(url: str, workers: int, settings: dict[str, str] | None = None) -> Iterator[str]:
    """The bench app served on a free port (its base URL), stopped afterwards."""
    port = free_port()
    process = start_server(url, port, workers, settings)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A folder for wrk scripts and data files, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="kartka-bench-") as folder:
        yield Path(folder)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"cannot read a latency from {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    """Throughput, median and 99th percentile latency, and non-2xx answers from wrk's report."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    latencies = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {
        "requests_per_second": rate,
        "p50_ms": _ms(latencies["50"]),
        "p99_ms": _ms(latencies["99"]),
        "errors": int(errors[1]) if errors else 0,
        "client": "wrk",
    }


def median_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["requests_per_second"])
    middle = dict(ordered[len(ordered) // 2])
    middle["rounds"] = [round(r["requests_per_second"]) for r in runs]
    return middle


def save(kind: str, results: dict[str, Any]) -> Path:
    """Write a run's figures to ``bench/results/<kind>-<time>.json`` (git-ignored)."""
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path

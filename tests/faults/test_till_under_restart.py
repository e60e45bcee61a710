"""Tills keep committing while PostgreSQL crashes and restarts under them.

Several tills commit purchases concurrently through the real HTTP app; midway the database server
crashes (``pg_ctl stop -m immediate``) and comes back. A till that gets a 503 or loses its connection
retries with the same Idempotency-Key, as tills do. Afterwards every purchase the API acknowledged
(201) is in the ledger exactly once, every balance equals its ledger, and the worker, which lived
through the crash, still sends what is queued after it.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kartka.db import Pool
from kartka.keys import Scope
from kartka.settings import Settings
from tests.faults.conftest import KARTKA, eventually, stopped, worker_env
from tests.faults.test_worker_faults import delivered, send_one
from tests.helpers import Keys
from tests.pgcluster import Cluster
from tests.served import Served

# One worker runs this group on a throwaway cluster of its own (pytest-xdist --dist loadgroup), beside
# the other half of the fault tests ("pg-cluster-worker") on another worker and cluster.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pg-cluster-till")]

TILLS = 6
SHOPPERS = 12
LOAD_SECONDS = 3.0
CHECK_SECONDS = 30.0
"""The checks' own deadline: the pool's 1.5 s is the app's, and a loaded machine just out of crash
recovery once took longer than that to answer a check (the checks' speed is not what is tested)."""


async def _till(
    client: httpx.AsyncClient, headers: dict[str, str], cards: list[str], n: int, stop: asyncio.Event
) -> tuple[dict[str, dict[str, Any]], int]:
    """Commit purchases until told to stop; returns the acknowledged ones by order id and the retries."""
    acknowledged: dict[str, dict[str, Any]] = {}
    retries = 0
    sequence = 0
    while not stop.is_set():
        sequence += 1
        order_id = f"t{n}-{sequence}"
        body = {
            "order_id": order_id,
            "card": cards[(n + sequence) % len(cards)],
            "lines": [{"sku": "milk", "qty": 1 + sequence % 3, "unit_price": 1990}],
        }
        key = {"Idempotency-Key": uuid.uuid4().hex}
        for _attempt in range(40):  # the same purchase, the same key, until it is answered
            try:
                response = await client.post("/v1/pos/orders", json=body, headers=headers | key)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 201:
                acknowledged[order_id] = response.json()
                break
            if response is not None and response.status_code != 503:
                raise AssertionError(f"{order_id}: {response.status_code} {response.text}")
            assert response is None or response.headers.get("retry-after"), "a 503 says when to retry"
            retries += 1
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{order_id} was never answered")
    return acknowledged, retries


async def test_tills_commit_through_a_database_crash_and_nothing_is_lost_or_doubled(
    cluster_settings: Settings,
    serve: Callable[[Settings], Served],
    cluster: Cluster,
    cluster_pool: Pool,
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(  # noqa: ASYNC220 - starting a process takes no time worth awaiting
            [KARTKA, "worker"], env=worker_env(cluster_settings), stdout=out, stderr=subprocess.STDOUT
        )
    served = serve(cluster_settings)
    headers = await Keys(cluster_pool).headers(Scope.POS)
    limits = httpx.Limits(max_connections=TILLS + 2)
    try:
        async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=10, limits=limits) as client:
            cards = []
            for n in range(SHOPPERS):
                registered = await client.post("/v1/pos/customers", json={"phone": f"+37529333{n:04d}"})
                assert registered.status_code == 201, registered.text
                cards.append(registered.json()["card"]["number"])
            stop = asyncio.Event()
            tills = [asyncio.create_task(_till(client, headers, cards, n, stop)) for n in range(TILLS)]
            await asyncio.sleep(LOAD_SECONDS / 3)
            crashed = time.monotonic()
            await asyncio.to_thread(cluster.restart)
            await asyncio.sleep(LOAD_SECONDS * 2 / 3)
            stop.set()
            results = await asyncio.gather(*tills)
        recovered = time.monotonic() - crashed

        acknowledged = {order: body for till, _ in results for order, body in till.items()}
        retries = sum(r for _, r in results)
        assert retries > 0, "the crash should have been felt"
        assert len(acknowledged) >= TILLS  # purchases went through around the crash (how many: the machine's speed)
        # Every acknowledged purchase is in the ledger exactly once, with the points the till was told.
        rows = await cluster_pool.fetch(
            """
            SELECT o.order_id, count(DISTINCT o.id) AS orders, count(e.id) AS accruals,
                   coalesce(sum(e.points), 0) AS points
              FROM orders o LEFT JOIN ledger_entries e ON e.order_pk = o.id AND e.kind = 'accrual'
             WHERE o.order_id = ANY($1::text[]) GROUP BY o.order_id
            """,
            list(acknowledged),
            timeout=CHECK_SECONDS,
        )
        found = {r["order_id"]: r for r in rows}
        assert set(found) == set(acknowledged), "acknowledged purchases missing from the ledger"
        for order_id, body in acknowledged.items():
            assert found[order_id]["orders"] == 1
            assert found[order_id]["accruals"] == (1 if body["accrued_points"] else 0), order_id
            assert found[order_id]["points"] == body["accrued_points"], order_id
        # No purchase the tills did not send, and every balance is its ledger.
        sent = {f"t{n}-{s}" for n in range(TILLS) for s in range(1, 1000)}
        stored = await cluster_pool.fetch("SELECT order_id FROM orders", timeout=CHECK_SECONDS)
        assert not {r["order_id"] for r in stored} - sent
        unbalanced = await cluster_pool.fetch(
            """
            SELECT a.customer_id FROM accounts a
             WHERE (SELECT coalesce(sum(points), 0) FROM ledger_entries e WHERE e.customer_id = a.customer_id)
                <> (SELECT coalesce(sum(remaining), 0) FROM lots l WHERE l.customer_id = a.customer_id) - a.debt
            """,
            timeout=CHECK_SECONDS,
        )
        assert unbalanced == []

        # The worker lived through the crash and sends what is queued after it.
        assert worker.poll() is None, log.read_text()[-3000:]
        phone = await send_one(cluster_pool, 9)
        await eventually(lambda: delivered(cluster_pool, phone), 10, "the worker to send after the crash", log)
        print(  # noqa: T201 - the figures the report quotes
            f"\n{len(acknowledged)} purchases acknowledged by {TILLS} tills, {retries} retries, "
            f"load and recovery {recovered:.1f} s"
        )
    finally:
        await stopped(worker)

"""A change is in force on every API process within a second: two app instances (two lifespans, two
pools, two LISTEN connections) on one database; one takes the change, the other prices with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from boot.web import create_app
from engine.promotions.model import parse_promotion
from engine.promotions.reload import LiveCatalog
from engine.promotions.store import PromotionAdmin
from kartka.clock import FakeClock
from kartka.db import Pool, connect
from kartka.keys import Scope
from kartka.settings import Settings
from tests.api.conftest import Staff
from tests.api.test_promotions import BASE, MILK, no_promotions_left, promotion
from tests.conftest import START
from tests.helpers import Keys

Client = AsyncTestClient[Litestar]
__all__ = ["no_promotions_left"]  # the fixture, shared


async def within(seconds: float, check: Callable[[], Any]) -> float:
    """How long ``check`` took to hold (it must within ``seconds``), polled every 5 ms."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def test_a_change_through_one_process_prices_on_the_other_within_a_second(
    client: Client, settings: Settings, clock: FakeClock, keys: Keys, staff: Staff
) -> None:
    admin, till = await keys.headers(Scope.ADMIN), await keys.headers(Scope.POS)
    other_app = create_app(settings, clock=clock)
    async with AsyncTestClient(other_app) as other:
        card = (await other.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=till)).json()
        cart = {
            "card": card["card"]["number"],
            "lines": [{"sku": "milk", "qty": 2, "unit_price": 250, "category": "dairy"}],
        }

        async def discount() -> int:
            quote = await other.post("/v1/pos/orders/calculate", json=cart, headers=till)
            assert quote.status_code == 200, quote.text
            return int(quote.json()["discount"])

        async def priced() -> bool:
            return await discount() == 50

        async def unpriced() -> bool:
            return await discount() == 0

        # An API key is its own author: approving its own revision would break four eyes, so a second key.
        approver = staff.headers["ada"]  # four eyes: a person other than the author (the admin key)
        assert (await client.post(BASE, json=MILK, headers=admin)).status_code == 201
        assert (await client.post(f"{BASE}/milk-10/submit", headers=admin)).status_code == 200
        assert await unpriced()  # submitted is not approved
        assert (await client.post(f"{BASE}/milk-10/approve", headers=approver)).status_code == 200
        took = await within(1.0, priced)
        assert (await client.post(f"{BASE}/milk-10/pause", headers=admin)).status_code == 200
        took = max(took, await within(1.0, unpriced))
        assert (await client.post(f"{BASE}/milk-10/resume", headers=admin)).status_code == 200
        took = max(took, await within(1.0, priced))
        assert took < 1.0


async def test_without_listen_a_poll_of_the_version_brings_the_change(pool: Pool) -> None:
    async def refuse() -> Any:
        raise OSError("no listening today")

    catalog = LiveCatalog(pool, refuse, poll_unlistened=0.02)
    await catalog.start()
    try:
        assert not catalog.listener.listening
        assert not catalog.current.promotions
        admin = PromotionAdmin(remote=False, approval=False)
        async with pool.acquire() as conn, conn.transaction():
            await admin.create(conn, parse_promotion(promotion()), actor="staff:a", now=START)
            await admin.submit(conn, "pastry-with-coffee", actor="staff:a", now=START)

        async def arrived() -> bool:
            return [p.id for p in catalog.current.promotions] == ["pastry-with-coffee"]

        await within(1.0, arrived)
        assert catalog.current.promotions[0].revision == 1
    finally:
        await catalog.close()


async def test_the_catalog_is_read_whole_at_one_moment(pool: Pool, settings: Settings) -> None:
    """Two promotions approved in one transaction arrive together: no reload sees one without the other."""
    catalog = LiveCatalog(pool, lambda: connect(settings, background=False))
    await catalog.start()
    seen: list[tuple[str, ...]] = []
    stop = catalog.on_swap(lambda c: seen.append(tuple(p.id for p in c.promotions)))
    admin = PromotionAdmin(remote=False, approval=False)
    async with pool.acquire() as conn, conn.transaction():
        for name in ("one", "two"):
            await admin.create(conn, parse_promotion(promotion(name)), actor="staff:a", now=START)
            await admin.submit(conn, name, actor="staff:a", now=START)

    async def both() -> bool:
        return seen[-1] == ("one", "two")

    try:
        await within(1.0, both)
    finally:
        stop()
        await catalog.close()
    assert all(ids in ((), ("one", "two")) for ids in seen), seen

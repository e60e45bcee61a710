"""Campaigns aimed at a saved segment, with a held-out control group, and the campaign report."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from uuid import UUID

from litestar import Litestar
from litestar.testing import AsyncTestClient

from analytics.segments_daily import run_daily
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.keys import Scope
from tests.analytics.data import customer, order
from tests.helpers import Keys
from tests.notifications.conftest import Make
from wallet.program import DEFAULT_PROGRAM

Client = AsyncTestClient[Litestar]


def held_out(campaign_id: int, customer_id: UUID, share_bp: int) -> bool:
    """The control group by hand: the first 32 bits of md5("<campaign>:<customer>") modulo 10,000."""
    digest = hashlib.md5(f"{campaign_id}:{customer_id}".encode()).hexdigest()  # noqa: S324 - a hash, not security
    return int(digest[:8], 16) % 10_000 < share_bp


async def test_a_campaign_to_a_saved_segment_holds_out_its_control_group_and_reports_against_it(
    client: Client, keys: Keys, conn: Connection, pool: Pool, clock: FakeClock, make_dispatcher: Make
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    now = clock.now()
    people = [await customer(conn, now, consent=True, home_store="s1") for _ in range(24)]
    await customer(conn, now, consent=True, home_store="s2")  # not in the segment
    await customer(conn, now, home_store="s1")  # no consent: not a recipient
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is not None
    put = {"title": "Store 1", "rule": {"home_stores": ["s1"]}}
    assert (await client.put("/v1/admin/segments/s1", json=put, headers=admin)).status_code == 201

    body = {
        "name": "Store 1 reopening",
        "texts": {"ru": "Мы открылись!"},
        "segment": {"id": "s1"},
        "control_share_bp": 5_000,
    }
    mixed = await client.post(
        "/v1/admin/campaigns", json=body | {"segment": {"id": "s1", "tiers": ["gold"]}}, headers=admin
    )
    assert mixed.status_code == 422
    missing = await client.post("/v1/admin/campaigns", json=body | {"segment": {"id": "nope"}}, headers=admin)
    assert missing.status_code == 422
    created = await client.post("/v1/admin/campaigns", json=body, headers=admin)
    assert created.status_code == 202, created.text
    campaign_id = created.json()["id"]
    await make_dispatcher().enqueue_campaigns()

    control = {p for p in people if held_out(campaign_id, p, 5_000)}
    treated = set(people) - control
    assert control
    assert treated  # 24 customers at 50 %: both groups exist (fixed by the hash, not by chance at run time)
    messaged = {r["customer_id"] for r in await conn.fetch("SELECT customer_id FROM outbox")}
    assert messaged == treated
    holdouts = {r["customer_id"] for r in await conn.fetch("SELECT customer_id FROM campaign_holdouts")}
    assert holdouts == control
    shown = (await client.get(f"/v1/admin/campaigns/{campaign_id}", headers=admin)).json()
    assert (shown["recipients"], shown["held_out"], shown["control_share_bp"]) == (len(treated), len(control), 5_000)

    # Within the window: two recipients buy (one twice, one refunded in part), one of the control group.
    # Before the campaign, and after the window, purchases do not count; nor does a refunded one.
    t1, t2 = sorted(treated)[:2]
    c1 = sorted(control)[0]
    await order(conn, t1, now + timedelta(days=1), 2_000)
    await order(conn, t1, now + timedelta(days=2), 1_000)
    await order(conn, t2, now + timedelta(days=3), 3_000, refunded=1_000)
    await order(conn, c1, now + timedelta(days=4), 4_000)
    await order(conn, c1, now - timedelta(days=1), 9_000)
    await order(conn, sorted(control)[-1], now + timedelta(days=15), 9_000)
    await order(conn, sorted(control)[-1], now + timedelta(days=5), 9_000, refunded=9_000)
    clock.advance(timedelta(days=20))
    report = (await client.get(f"/v1/admin/reports/campaigns/{campaign_id}", headers=admin)).json()
    assert report["days"] == 14
    assert report["complete"] is True
    assert report["recipients"] == {
        "customers": len(treated),
        "buyers": 2,
        "orders": 3,
        "revenue": 5_000,
        "conversion": 2 / len(treated),
        "revenue_per_customer": (5_000 + len(treated) // 2) // len(treated),
    }
    assert report["control"]["buyers"] == 1
    assert report["control"]["revenue"] == 4_000
    assert report["conversion_uplift"] == 2 / len(treated) - 1 / len(control)
    assert report["sent"] + report["failed"] <= len(treated)
    assert (await client.get("/v1/admin/reports/campaigns/999", headers=admin)).status_code == 404


async def test_a_campaign_leaves_out_the_customers_of_excluded_segments(
    client: Client, keys: Keys, conn: Connection, pool: Pool, clock: FakeClock, make_dispatcher: Make
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    now = clock.now()
    store1 = {await customer(conn, now, consent=True, home_store="s1") for _ in range(3)}
    store2 = {await customer(conn, now, consent=True, home_store="s2") for _ in range(2)}
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is not None
    for sid, rule in (("all", {}), ("s2", {"home_stores": ["s2"]})):
        assert (
            await client.put(f"/v1/admin/segments/{sid}", json={"title": sid, "rule": rule}, headers=admin)
        ).is_success
    body = {"name": "Not store 2", "texts": {"ru": "Привет"}, "segment": {"id": "all", "exclude": ["s2"]}}
    for wrong in ({"exclude": ["s2"]}, {"id": "all", "exclude": ["nope"]}, {"id": "all", "exclude": ["all"]}):
        refused = await client.post("/v1/admin/campaigns", json=body | {"segment": wrong}, headers=admin)
        assert refused.status_code == 422, wrong
    created = await client.post("/v1/admin/campaigns", json=body, headers=admin)
    assert created.status_code == 202, created.text
    # Until it is enqueued, the segments it aims at and leaves out stay (its recipients would change).
    for sid in ("all", "s2"):
        kept = await client.delete(f"/v1/admin/segments/{sid}", headers=admin)
        assert (kept.status_code, kept.json()["code"]) == (409, "segment-in-use"), kept.text
    await make_dispatcher().enqueue_campaigns()
    messaged = {r["customer_id"] for r in await conn.fetch("SELECT customer_id FROM outbox")}
    assert messaged == store1
    assert not messaged & store2
    assert (await client.delete("/v1/admin/segments/s2", headers=admin)).is_success  # enqueued: it may go
    listed = (await client.get("/v1/admin/campaigns", headers=admin)).json()
    assert [(c["id"], c["recipients"], c["segment"]) for c in listed] == [
        (created.json()["id"], 3, {"id": "all", "exclude": ["s2"]})
    ]

"""Campaigns over the admin API: validation, segments, set-based enqueueing, throttling, counts; and
the "points expiring soon" reminder job."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.keys import Scope
from tests.helpers import Keys, problem
from tests.notifications.conftest import Make

Client = AsyncTestClient[Litestar]


async def _customer(
    conn: Connection,
    n: int,
    *,
    consent: bool = True,
    tier: str = "standart",
    source: str = "pos",
    spend: int = 0,
    language: str | None = None,
    channels: list[str] | None = None,
    clock: FakeClock,
) -> uuid.UUID:
    customer_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO customers (phone, source, language, name) VALUES ($1, $2, $3, $4) RETURNING id",
        f"+37529{n:07d}",
        source,
        language,
        f"Имя{n}",
    )
    card = await conn.fetchval(
        "INSERT INTO cards (number, customer_id) VALUES ($1, $2) RETURNING number", _ean(n), customer_id
    )
    await conn.execute("INSERT INTO accounts (customer_id, tier_code) VALUES ($1, $2)", customer_id, tier)
    if consent:
        await conn.execute(
            "INSERT INTO notification_preferences (customer_id, channels, marketing) VALUES ($1, $2, true)",
            customer_id,
            channels or ["app", "viber", "sms"],
        )
    if spend:
        await conn.execute(
            """
            INSERT INTO orders (order_id, customer_id, card_number, idempotency_key, request_hash, purchased_at,
                                subtotal, discount, redeemed_points, paid, accrued_points, tier_code, rate_bp, engine,
                                degraded)
            VALUES ($1, $2, $3, $1, '\\x00', $4, $5, 0, 0, $5, 0, 'standart', 500, 'embedded', false)
            """,
            f"o-{n}",
            customer_id,
            card,
            clock.now() - timedelta(days=10),
            spend,
        )
    return customer_id


def _ean(n: int) -> str:
    body = f"2{n:011d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


async def test_campaign_reaches_its_segment_once_throttled_with_counts(
    client: Client, keys: Keys, conn: Connection, clock: FakeClock, make_dispatcher: Make
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    await _customer(conn, 1, tier="gold", spend=60_000, clock=clock)  # in
    await _customer(conn, 2, tier="gold", spend=60_000, language="en", channels=["sms"], clock=clock)  # in, by SMS
    await _customer(conn, 3, tier="gold", spend=60_000, consent=False, clock=clock)  # no consent
    await _customer(conn, 4, tier="standart", spend=60_000, clock=clock)  # other tier
    await _customer(conn, 5, tier="gold", spend=60_000, source="crm_import", clock=clock)  # other source
    await _customer(conn, 6, tier="gold", spend=10_000, clock=clock)  # spent too little
    body = {
        "name": "Spring",
        "texts": {"ru": "{name}, весна: −20% на всё!", "en": "{name}, spring: 20% off!"},
        "channels": ["viber", "sms"],
        "segment": {"tiers": ["gold"], "spend_min": 50_000, "sources": ["pos"]},
        "rate_per_minute": 60,
    }
    created = await client.post("/v1/admin/campaigns", json=body, headers=admin)
    assert created.status_code == 202, created.text
    location = created.headers["location"]
    assert (await client.get(location, headers=admin)).json()["status"] == "enqueuing"

    dispatcher = make_dispatcher()
    await dispatcher.enqueue_campaigns()
    rows = await conn.fetch("SELECT recipient, channel, locale, due_at FROM outbox ORDER BY due_at")
    assert [(r["recipient"], r["channel"], r["locale"]) for r in rows] == [
        ("+375290000001", "viber", "ru"),
        ("+375290000002", "sms", "en"),
    ] or sorted(r["recipient"] for r in rows) == ["+375290000001", "+375290000002"]
    assert (rows[1]["due_at"] - rows[0]["due_at"]) == timedelta(seconds=1)  # 60 a minute
    shown = (await client.get(location, headers=admin)).json()
    assert shown["recipients"] == 2
    assert shown["counts"] == {"queued": 2, "sent": 0, "delivered": 0, "failed": 0, "cancelled": 0}

    await dispatcher.enqueue_campaigns()  # running the enqueuer again adds nobody
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 2
    clock.advance(timedelta(seconds=2))
    await dispatcher.run_once()
    shown = (await client.get(location, headers=admin)).json()
    assert shown["status"] == "done"
    assert shown["counts"]["delivered"] == 2
    texts = {m["to"]: m["text"] for m in await _inbox(client, "+375290000001", "+375290000002")}
    assert texts["+375290000001"].startswith("Имя1, весна")
    assert texts["+375290000002"].startswith("Имя2, spring")
    assert "/u/" in texts["+375290000002"]


async def _inbox(client: Client, *phones: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for phone in phones:
        found += (await client.get("/dev/inbox", params={"to": phone})).json()
    return found


async def test_campaign_input_is_checked(client: Client, keys: Keys, conn: Connection) -> None:
    admin = await keys.headers(Scope.ADMIN)
    good = {"name": "x", "texts": {"ru": "Привет"}}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "x", "texts": {"en": "Hi"}}, "texts"),
        ({**good, "texts": {"ru": "Привет", "de": "Hallo"}}, "texts"),
        ({**good, "segment": {"tiers": ["diamond"]}}, "segment.tiers"),
        ({**good, "segment": {"spend_min": 10, "spend_max": 5}}, "segment.spend_min"),
        ({**good, "segment": {"marketing_consent": False}}, "marketing_consent"),
        ({**good, "channels": ["pigeon"]}, "channels"),
        ({**good, "texts": {"ru": "Ы" * 400}}, "texts.ru"),
    ]
    for body, field in cases:
        response = await client.post("/v1/admin/campaigns", json=body, headers=admin)
        assert response.status_code in (400, 422), (body, response.text)
        assert field in response.text, (field, response.text)
        problem(response)
    assert await conn.fetchval("SELECT count(*) FROM campaigns") == 0
    pos = await keys.headers(Scope.POS)
    assert (await client.post("/v1/admin/campaigns", json=good, headers=pos)).status_code == 403
    assert (await client.get("/v1/admin/campaigns/99", headers=admin)).status_code == 404


async def test_expiring_points_are_reminded_once_per_lot(
    client: Client,
    pos: dict[str, str],
    conn: Connection,
    clock: FakeClock,
    app: Litestar,
    make_dispatcher: Make,
    pool: Pool,
) -> None:
    card = (await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)).json()["card"]
    body = {"order_id": "o-1", "card": card["number"], "lines": [{"sku": "milk", "qty": 1, "unit_price": 10_000}]}
    assert (await client.post("/v1/pos/orders", json=body, headers=pos | {"Idempotency-Key": "k"})).status_code == 201
    notifier = app.state.services.notifier  # the app's pool belongs to the app's event loop: use ours
    assert await notifier.remind_expiring(pool, clock.now()) == 0  # six months away
    clock.advance(timedelta(days=184 - 14 + 1))  # 13 days before expiry
    assert await notifier.remind_expiring(pool, clock.now()) == 1
    assert await notifier.remind_expiring(pool, clock.now()) == 0
    clock.advance(timedelta(days=1))
    assert await notifier.remind_expiring(pool, clock.now()) == 0
    await make_dispatcher().run_once()
    texts = [m["text"] for m in (await client.get("/dev/inbox", params={"to": "+375291234567"})).json()]
    reminder = next(t for t in texts if "сгор" in t)
    assert "5" in reminder  # 5 points (5% of 100,00)
    assert "02.09.2026" in reminder


async def test_campaigns_are_listed_newest_first_a_page_at_a_time(client: Client, keys: Keys) -> None:
    admin = await keys.headers(Scope.ADMIN)
    made = []
    for n in range(5):
        response = await client.post(
            "/v1/admin/campaigns", json={"name": f"c{n}", "texts": {"ru": "Привет"}}, headers=admin
        )
        assert response.status_code == 202, response.text
        made.append(response.json()["id"])
    first = (await client.get("/v1/admin/campaigns", params={"limit": 2}, headers=admin)).json()
    assert [c["name"] for c in first] == ["c4", "c3"]
    pages = [first]
    while pages[-1]:
        after = pages[-1][-1]["id"]
        pages.append(
            (await client.get("/v1/admin/campaigns", params={"limit": 2, "before": after}, headers=admin)).json()
        )
    assert [c["id"] for page in pages for c in page] == made[::-1]  # every campaign once, newest first
    for bad in ({"limit": 0}, {"limit": 201}, {"before": 0}, {"before": 2**63}):
        assert (await client.get("/v1/admin/campaigns", params=bad, headers=admin)).status_code == 422, bad

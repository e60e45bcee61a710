"""The outbox end to end: producers enqueue in their transaction, the dispatcher sends through real
providers (the development inbox in PostgreSQL, a fake Infobip over HTTP) and records what happened."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.resilience import CircuitBreaker
from main.schema import SCHEMA
from notifications.model import Category, Channel
from notifications.outbox import Message, enqueue
from notifications.preferences import OptOutLinks
from notifications.providers.dev import DevProvider
from notifications.worker import Dispatcher, Lane, WorkerConfig
from tests.fakes.infobip import FakeInfobip, report
from tests.helpers import problem
from tests.notifications.conftest import Make, infobip_provider

Client = AsyncTestClient[Litestar]
PHONE = "+375291234567"


def sms(n: int, *, key: str | None = None, category: Category = Category.TRANSACTIONAL) -> Message:
    return Message(
        key=key or f"test:{n}",
        channel=Channel.SMS,
        recipient=f"+37529{n:07d}",
        category=category,
        template="otp",
        locale="ru",
        params={"code": f"{n % 1_000_000:06d}", "minutes": 5},
    )


async def statuses(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM outbox GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def test_registration_sends_the_card_link(
    client: Client, pos: dict[str, str], conn: Connection, make_dispatcher: Make
) -> None:
    registered = await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)
    assert registered.status_code == 201
    card = registered.json()["card"]["number"]
    token = await conn.fetchval("SELECT page_token FROM cards WHERE number = $1", card)
    row = await conn.fetchrow("SELECT channel, template, status, params FROM outbox")
    assert row is not None
    assert (row["channel"], row["template"], row["status"]) == ("viber", "card_link", "queued")
    assert row["params"]["url"] == f"http://127.0.0.1:8000/c/{token}"

    assert await make_dispatcher().run_once() == 1
    inbox = await client.get("/dev/inbox", params={"to": PHONE})
    assert inbox.status_code == 200
    [message] = inbox.json()
    assert f"/c/{token}" in message["text"]
    assert message["channel"] == "viber"
    assert await statuses(conn) == {"delivered": 1}

    # Registering the same phone again (another till) sends nothing new.
    again = await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)
    assert again.status_code == 200
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 1


async def test_dev_inbox_takes_a_phone_whose_plus_was_not_escaped(client: Client) -> None:
    response = await client.get("/dev/inbox?to=+375291234567")
    assert response.status_code == 200
    assert response.json() == []
    bad = await client.get("/dev/inbox")
    assert bad.status_code in (400, 422)
    assert "to" in problem(bad)["detail"]


async def test_a_rolled_back_change_sends_nothing(pool: Pool, client: Client) -> None:
    services = client.app.state.services  # the client has run the app's start-up, which builds them
    seen_inside = -1

    async def register_then_crash() -> None:
        nonlocal seen_inside
        async with pool.acquire() as conn, conn.transaction():
            await services.customers.register(conn, phone=PHONE, origin=_origin())
            seen_inside = await conn.fetchval("SELECT count(*) FROM outbox")
            raise RuntimeError("till crashed")

    with pytest.raises(RuntimeError, match="till crashed"):
        await register_then_crash()
    assert seen_inside == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0


def _origin() -> Any:
    from wallet.customers import Origin  # noqa: PLC0415
    from wallet.models import Source  # noqa: PLC0415

    return Origin(source=Source.POS, store="store-1")


async def test_the_idempotency_key_never_doubles_a_message(conn: Connection, clock: FakeClock) -> None:
    assert await enqueue(conn, [sms(1)], clock.now()) == 1
    assert await enqueue(conn, [sms(1), sms(2)], clock.now()) == 1
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 2


async def test_a_purchase_tells_points_earned_and_the_new_tier(
    client: Client, pos: dict[str, str], conn: Connection, make_dispatcher: Make
) -> None:
    card = (await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)).json()["card"]["number"]
    body = {"order_id": "o-1", "card": card, "lines": [{"sku": "tv", "qty": 1, "unit_price": 60_025}]}
    committed = await client.post("/v1/pos/orders", json=body, headers=pos | {"Idempotency-Key": "k-1"})
    assert committed.status_code == 201, committed.text
    assert committed.json()["tier_upgraded"] is True
    await make_dispatcher().run_once()
    texts = [m["text"] for m in (await client.get("/dev/inbox", params={"to": PHONE})).json()]
    assert len(texts) == 3  # card link, points earned, Gold
    earned = next(t for t in texts if "Начислено" in t)
    assert "30,01" in earned  # 5% of 600,25: points formatted for people
    assert any("Gold" in t for t in texts)
    # The till retrying the same commit sends nothing more.
    again = await client.post("/v1/pos/orders", json=body, headers=pos | {"Idempotency-Key": "k-1"})
    assert again.status_code in (200, 201)
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 3


async def test_two_dispatchers_share_the_queue_and_send_each_message_once(
    conn: Connection, clock: FakeClock, infobip: FakeInfobip, make_dispatcher: Make
) -> None:
    await enqueue(conn, [sms(n) for n in range(3_000)], clock.now())
    workers = [make_dispatcher({Channel.SMS: infobip_provider(infobip, Channel.SMS)}, batch=200) for _ in range(2)]

    async def drain(dispatcher: Any) -> None:
        while await dispatcher.run_once():
            pass

    await asyncio.gather(*(drain(w) for w in workers))
    assert len(infobip.messages) == 3_000
    assert infobip.duplicates == 0
    assert set(infobip.per_recipient.values()) == {1}
    assert await statuses(conn) == {"sent": 3_000}
    # A sign-in code does not stay in the database once it left.
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE params <> '{}'") == 0


async def test_failures_back_off_with_jitter_then_dead_letter(
    conn: Connection, clock: FakeClock, infobip: FakeInfobip, make_dispatcher: Make
) -> None:
    await enqueue(conn, [sms(1)], clock.now())
    infobip.mode, infobip.fail_times = "error", 100
    dispatcher = make_dispatcher({Channel.SMS: infobip_provider(infobip, Channel.SMS)}, max_attempts=3)
    delays = []
    for attempt in (1, 2):
        assert await dispatcher.run_once() == 1
        row = await conn.fetchrow("SELECT status, attempts, due_at, last_error FROM outbox")
        assert row is not None
        assert (row["status"], row["attempts"]) == ("queued", attempt)
        assert "503" in row["last_error"]
        delays.append((row["due_at"] - clock.now()).total_seconds())
        assert await dispatcher.run_once() == 0  # not due yet
        clock.advance(timedelta(seconds=delays[-1] + 1))
    assert 2.5 <= delays[0] <= 5.0  # 5 s base, full jitter over its upper half
    assert 5.0 <= delays[1] <= 10.0  # doubled
    assert await dispatcher.run_once() == 1
    assert await statuses(conn) == {"dead": 1}
    assert infobip.messages == {}


async def test_429_waits_for_retry_after(
    conn: Connection, clock: FakeClock, infobip: FakeInfobip, make_dispatcher: Make
) -> None:
    await enqueue(conn, [sms(1)], clock.now())
    infobip.mode, infobip.retry_after = "throttle", 120
    dispatcher = make_dispatcher({Channel.SMS: infobip_provider(infobip, Channel.SMS)})
    await dispatcher.run_once()
    due = await conn.fetchval("SELECT due_at FROM outbox")
    assert (due - clock.now()).total_seconds() >= 120
    infobip.mode = "ok"
    clock.advance(timedelta(seconds=121))
    await dispatcher.run_once()
    assert len(infobip.messages) == 1


async def test_a_provider_timeout_is_retried(
    conn: Connection, clock: FakeClock, infobip: FakeInfobip, make_dispatcher: Make
) -> None:
    await enqueue(conn, [sms(1)], clock.now())
    infobip.mode, infobip.delay = "slow", 1.0
    provider = infobip_provider(infobip, Channel.SMS, timeout=0.2)
    dispatcher = make_dispatcher({Channel.SMS: provider})
    await dispatcher.run_once()
    row = await conn.fetchrow("SELECT status, last_error FROM outbox")
    assert row is not None
    assert row["status"] == "queued"
    assert "Timeout" in row["last_error"]


async def test_a_dead_provider_opens_its_breaker_without_holding_up_the_others(
    conn: Connection, clock: FakeClock, infobip: FakeInfobip, make_dispatcher: Make
) -> None:
    """SMS goes to an Infobip that refuses our key; Viber (the dev inbox) keeps flowing."""
    viber = [
        Message(
            key=f"v:{n}",
            channel=Channel.VIBER,
            recipient=f"+37533{n:07d}",
            category=Category.TRANSACTIONAL,
            template="otp",
            locale="en",
            params={"code": "123456", "minutes": 5},
        )
        for n in range(5)
    ]
    bad_sms = infobip_provider(infobip, Channel.SMS, key="wrong-key")
    # Retries wait longer than the test runs, so the refused messages keep saying why (with the default
    # 5 s backoff, a jittered retry could come due and be skipped by the open circuit, overwriting it).
    dispatcher = make_dispatcher({Channel.SMS: bad_sms}, batch=2, backoff_seconds=60.0)
    for n in range(5):
        await enqueue(conn, [sms(n), viber[n]], clock.now())
        await dispatcher.run_once()
        clock.advance(timedelta(seconds=1))
    while await dispatcher.run_once():
        pass
    counts = await statuses(conn)
    assert counts.get("delivered") == 5  # every Viber message went out
    assert counts.get("queued") == 5  # every SMS waits
    assert not dispatcher.lanes[Channel.SMS].breaker.allows()  # three refusals opened it
    errors = {r["last_error"] for r in await conn.fetch("SELECT last_error FROM outbox WHERE channel = 'sms'")}
    assert any("credentials refused" in (e or "") for e in errors)
    assert any("circuit open" in (e or "") for e in errors)
    # Open-circuit skips cost no attempt: SMS still has all but the three real ones left.
    assert await conn.fetchval("SELECT max(attempts) FROM outbox WHERE channel = 'sms'") <= 2


async def test_a_dead_workers_lease_expires_and_another_sends_it(
    conn: Connection, clock: FakeClock, make_dispatcher: Make
) -> None:
    await enqueue(conn, [sms(1)], clock.now())
    # A worker claimed it and died before recording anything.
    await conn.execute(
        "UPDATE outbox SET status = 'sending', attempts = 1, worker = 'dead:1', lease_until = $1",
        clock.now() + timedelta(seconds=60),
    )
    survivor = make_dispatcher()
    assert await survivor.recover_leases() == 0  # the lease still runs
    clock.advance(timedelta(seconds=61))
    assert await survivor.recover_leases() == 1
    assert await survivor.run_once() == 1
    row = await conn.fetchrow("SELECT status, attempts FROM outbox")
    assert row is not None
    assert (row["status"], row["attempts"]) == ("delivered", 2)


async def _viber_message(conn: Connection, clock: FakeClock) -> None:
    message = Message(
        key="v:1",
        channel=Channel.VIBER,
        recipient=PHONE,
        category=Category.TRANSACTIONAL,
        template="otp",
        locale="ru",
        params={"code": "123456", "minutes": 5},
    )
    await enqueue(conn, [message], clock.now())


HOOK_SECRET = "hook-secret"


def _basic(secret: str = HOOK_SECRET) -> dict[str, str]:
    token = base64.b64encode(f"infobip:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def infobip_app(settings: Any, clock: FakeClock) -> Litestar:
    from main.web import create_app  # noqa: PLC0415

    configured = settings.__class__(
        **{f: getattr(settings, f) for f in settings.__struct_fields__}
        | {"infobip_webhook_secret": _secret("hook-secret")}
    )
    return create_app(configured, clock=clock)


def _secret(value: str) -> Any:
    from kartka.settings import Secret  # noqa: PLC0415

    return Secret(value)


async def test_viber_falls_back_to_sms_when_its_receipt_says_undelivered(
    conn: Connection, clock: FakeClock, infobip: FakeInfobip, make_dispatcher: Make, infobip_app: Litestar
) -> None:
    await _viber_message(conn, clock)
    providers = {c: infobip_provider(infobip, c) for c in (Channel.SMS, Channel.VIBER)}
    dispatcher = make_dispatcher(providers, viber_fallback_seconds=600)
    await dispatcher.run_once()
    [(mid, sent)] = list(infobip.messages.items())
    assert sent["channel"] == "viber"
    assert sent["message"]["options"]["validityPeriod"] == {"amount": 600, "timeUnit": "SECONDS"}

    async with AsyncTestClient(infobip_app) as web:
        refused = await web.post("/v1/webhooks/infobip", json={"results": []}, headers=_basic("wrong"))
        assert refused.status_code == 401
        posted = await web.post(
            "/v1/webhooks/infobip",
            json={"results": [report(mid, "UNDELIVERABLE", error="EC_ABSENT_SUBSCRIBER")]},
            headers=_basic(),
        )
        assert posted.status_code == 200
        assert posted.json() == {"updated": 1}
    assert await dispatcher.fallbacks() == 1
    assert await dispatcher.fallbacks() == 0  # once only
    await dispatcher.run_once()
    channels = sorted(m["channel"] for m in infobip.messages.values())
    assert channels == ["sms", "viber"]
    assert await statuses(conn) == {"failed": 1, "sent": 1}


async def test_a_delivered_viber_message_gets_no_sms_and_a_silent_one_does(
    conn: Connection, clock: FakeClock, infobip: FakeInfobip, make_dispatcher: Make, infobip_app: Litestar
) -> None:
    providers = {c: infobip_provider(infobip, c) for c in (Channel.SMS, Channel.VIBER)}
    dispatcher = make_dispatcher(providers, viber_fallback_seconds=600)
    await _viber_message(conn, clock)
    await dispatcher.run_once()
    [mid] = list(infobip.messages)
    async with AsyncTestClient(infobip_app) as web:
        posted = await web.post("/v1/webhooks/infobip", json={"results": [report(mid, "DELIVERED")]}, headers=_basic())
        assert posted.json() == {"updated": 1}
    clock.advance(timedelta(hours=1))
    assert await dispatcher.fallbacks() == 0
    assert await statuses(conn) == {"delivered": 1}

    # Another message nobody reports on: after the fallback delay it goes by SMS.
    await conn.execute("TRUNCATE outbox RESTART IDENTITY CASCADE")
    infobip.messages.clear()
    await _viber_message(conn, clock)
    await dispatcher.run_once()
    clock.advance(timedelta(seconds=599))
    assert await dispatcher.fallbacks() == 0
    clock.advance(timedelta(seconds=2))
    assert await dispatcher.fallbacks() == 1
    await dispatcher.run_once()
    assert sorted(m["channel"] for m in infobip.messages.values()) == ["sms", "viber"]


async def test_rejected_numbers_fail_without_retrying(
    conn: Connection, clock: FakeClock, infobip: FakeInfobip, make_dispatcher: Make
) -> None:
    await enqueue(conn, [sms(1), sms(2)], clock.now())
    infobip.rejected = {"375290000001"}
    await make_dispatcher({Channel.SMS: infobip_provider(infobip, Channel.SMS)}).run_once()
    rows = {r["recipient"]: r for r in await conn.fetch("SELECT recipient, status, last_error FROM outbox")}
    assert rows["+375290000001"]["status"] == "failed"
    assert "REJECTED" in rows["+375290000001"]["last_error"]
    assert rows["+375290000002"]["status"] == "sent"


async def _consenting_customer(conn: Connection, phone: str = PHONE, **extra: Any) -> uuid.UUID:
    customer_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO customers (phone, source, name, home_store) VALUES ($1, 'pos', $2, $3) RETURNING id",
        phone,
        extra.get("name"),
        extra.get("home_store"),
    )
    await conn.execute(
        "INSERT INTO notification_preferences (customer_id, channels, marketing) VALUES ($1, $2, true)",
        customer_id,
        extra.get("channels", ["app", "viber", "sms"]),
    )
    return customer_id


async def test_marketing_waits_out_quiet_hours_in_the_stores_time_zone(
    conn: Connection, clock: FakeClock, make_dispatcher: Make
) -> None:
    await conn.execute("INSERT INTO stores (code, name, timezone) VALUES ('vl', 'Vladivostok', 'Asia/Vladivostok')")
    customer = await _consenting_customer(conn, home_store="vl")
    from notifications.audience import ALL_CHANNELS, load_audience, route  # noqa: PLC0415
    from wallet.program import DEFAULT_PROGRAM  # noqa: PLC0415

    audience = await load_audience(conn, customer, DEFAULT_PROGRAM)
    assert audience is not None
    messages = route(
        audience, ALL_CHANNELS, key="promo", category=Category.MARKETING, template="campaign", params={"text": "Hi"}
    )
    await enqueue(conn, messages, clock.now())
    # 09:00 UTC is 19:00 in Vladivostok: fine. At 12:30 UTC (22:30 there) it must wait until 09:00 local.
    clock.advance(timedelta(hours=3, minutes=30))
    await make_dispatcher().run_once()
    row = await conn.fetchrow("SELECT status, attempts, due_at FROM outbox")
    assert row is not None
    assert (row["status"], row["attempts"]) == ("queued", 0)
    local = row["due_at"].astimezone(ZoneInfo("Asia/Vladivostok"))
    assert local.hour == 9  # quiet hours end at 09:00, spread over the next ten minutes
    assert local.minute < 10
    clock.set(row["due_at"])
    await make_dispatcher().run_once()
    assert await statuses(conn) == {"delivered": 1}


async def test_the_opt_out_link_stops_marketing_already_queued(
    conn: Connection, clock: FakeClock, client: Client, make_dispatcher: Make, app: Litestar
) -> None:
    customer = await _consenting_customer(conn)
    link = app.state.services.opt_out.url(customer)
    token = link.rsplit("/", 1)[1]
    await enqueue(
        conn,
        [
            Message(
                key="promo:1",
                channel=Channel.SMS,
                recipient=PHONE,
                category=Category.MARKETING,
                template="campaign",
                locale="ru",
                params={"text": "Скидки!"},
                customer_id=customer,
            )
        ],
        clock.now(),
    )
    page = await client.get(f"/u/{token}")
    assert page.status_code == 200
    assert '<form method="post">' in page.text
    assert await conn.fetchval("SELECT marketing FROM notification_preferences") is True  # GET changes nothing
    confirmed = await client.post(f"/u/{token}")
    assert confirmed.status_code == 200
    assert await conn.fetchval("SELECT marketing FROM notification_preferences") is False
    forged = await client.post(f"/u/{token[:-2]}AA")
    assert forged.status_code == 404
    await make_dispatcher().run_once()
    assert await statuses(conn) == {"cancelled": 1}


async def test_a_bad_unsubscribe_link_gets_a_page_in_one_language(client: Client) -> None:
    """The page said "this unsubscribe link is not valid" in English inside a Russian page."""
    ru = await client.get("/u/not-a-token")
    assert ru.status_code == 404
    assert '<html lang="ru">' in ru.text
    assert "ссылка для отписки недействительна" in ru.text
    assert "not valid" not in ru.text
    assert "Рассылка Kartka" in ru.text  # the configured program name (KARTKA_PASS_ORGANIZATION)
    en = await client.post("/u/not-a-token", headers={"Accept-Language": "en-US"})
    assert en.status_code == 404
    assert '<html lang="en">' in en.text
    assert "This unsubscribe link is not valid" in en.text
    assert en.headers["content-type"] == "text/html; charset=utf-8"
    assert en.headers["x-frame-options"] == "DENY"


async def test_marketing_text_carries_the_opt_out_link(
    conn: Connection, clock: FakeClock, client: Client, make_dispatcher: Make
) -> None:
    customer = await _consenting_customer(conn, name="Анна")
    await enqueue(
        conn,
        [
            Message(
                key="promo:1",
                channel=Channel.SMS,
                recipient=PHONE,
                category=Category.MARKETING,
                template="campaign",
                locale="ru",
                params={"text": "{name}, скидки!", "name": "Анна"},
                customer_id=customer,
            )
        ],
        clock.now(),
    )
    await make_dispatcher().run_once()
    [message] = (await client.get("/dev/inbox", params={"to": PHONE})).json()
    assert message["text"].startswith("Анна, скидки!")
    assert "http://127.0.0.1:8000/u/" in message["text"]


async def test_a_worker_whose_rounds_all_fail_stops_showing_progress(fresh_database: str, clock: FakeClock) -> None:
    """The heartbeat (and so /ready) follows the worker's progress: a round that fails, even with the
    database up (here the outbox table is gone), does not count, so a worker failing forever goes stale
    instead of looking alive."""
    connection = await asyncpg.connect(fresh_database)
    try:
        await SCHEMA.migrate(connection)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=4)
    try:
        dev = DevProvider(pool)
        lanes = {Channel.SMS: Lane(dev, rate_per_second=1_000, concurrency=1, breaker=CircuitBreaker(3, 30.0))}
        dispatcher = Dispatcher(
            pool,
            lanes,
            clock=clock,
            opt_out=OptOutLinks(secret="test-secret", public_base="http://127.0.0.1:8000"),
            config=WorkerConfig(poll_seconds=0.05, loops=1),
        )
        running = asyncio.create_task(dispatcher.run())
        await asyncio.sleep(0.3)
        healthy = dispatcher.last_progress()
        await asyncio.sleep(0.2)
        assert dispatcher.last_progress() > healthy  # rounds that work move it on
        await pool.execute("ALTER TABLE outbox RENAME TO outbox_gone")
        await asyncio.sleep(0.3)  # a round in flight may still finish
        failing = dispatcher.last_progress()
        await asyncio.sleep(0.5)
        assert dispatcher.last_progress() == failing
        dispatcher.stop()
        await asyncio.wait_for(running, timeout=10)
    finally:
        await pool.close()

"""Campaigns in the console, in a real browser: a marketer composes a campaign in Russian and English
watching the SMS part counter, aims it at a saved segment less another, schedules it with a control
group; the worker sends it, and the results page sets the recipients' purchases against the control's."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec
import pytest
from playwright.async_api import Page, expect

from analytics import segments
from analytics.segments import SegmentInput
from analytics.segments_daily import run_daily
from kartka.clock import FakeClock
from kartka.db import Pool
from kartka.resilience import CircuitBreaker
from kartka.staff import Role
from notifications.model import Channel, Outbound, Outcome, SendResult
from notifications.preferences import OptOutLinks
from notifications.providers.dev import DevProvider
from notifications.worker import Dispatcher, Lane, WorkerConfig
from tests.analytics.data import customer, order
from tests.api.console.conftest import htmx_ready, look, sign_in_as, staff
from wallet.program import DEFAULT_PROGRAM

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("console-campaigns")]

RU = "Скидки до 30% в эти выходные! Ждём вас, {name}, в нашем магазине на Немиге с 9 до 21."
EN = "Hi {name}, 30% off this weekend at our store on Nemiga!"


class RefusingViber:
    """A Viber provider that refuses every message (a number not on Viber): the failures of the report."""

    name = "refusing-viber"
    channels = frozenset({Channel.VIBER})
    max_batch = 100

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        return [SendResult(id=m.id, outcome=Outcome.FAILED, error="not on viber") for m in messages]

    async def aclose(self) -> None:
        return None


def _dispatcher(pool: Pool, clock: FakeClock) -> Dispatcher:
    lanes = {
        Channel.SMS: Lane(DevProvider(pool), rate_per_second=100_000, concurrency=4, breaker=CircuitBreaker(3, 30.0)),
        Channel.VIBER: Lane(RefusingViber(), rate_per_second=100_000, concurrency=4, breaker=CircuitBreaker(3, 30.0)),
    }
    return Dispatcher(
        pool,
        lanes,
        clock=clock,
        opt_out=OptOutLinks(secret="test-secret", public_base="http://127.0.0.1:8000"),
        config=WorkerConfig(),
        program=DEFAULT_PROGRAM,
    )


async def _audience(pool: Pool, now: datetime) -> None:
    """Twenty shoppers of store 1 who agreed to marketing (four of them on Viber only), three of store 2
    and one who did not agree; two saved segments: everyone, and store 2."""
    async with pool.acquire() as conn, conn.transaction():
        for i in range(20):
            shopper = await customer(conn, now, consent=True, home_store="s1")
            if i % 5 == 0:
                await conn.execute(
                    "UPDATE notification_preferences SET channels = '{viber}' WHERE customer_id = $1", shopper
                )
        for _ in range(3):
            await customer(conn, now, consent=True, home_store="s2")
        await customer(conn, now, home_store="s1")
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is not None
    async with pool.acquire() as conn:
        for segment_id, title, rule in (("everyone", "Everyone", {}), ("store-2", "Store 2", {"home_stores": ["s2"]})):
            data = msgspec.convert({"title": title, "rule": rule}, SegmentInput)
            await segments.put(conn, segment_id, data, program=DEFAULT_PROGRAM, now=now, actor="test")


async def test_a_marketer_composes_schedules_and_reads_a_campaign_against_its_control_group(
    page: Page, pool: Pool, clock: FakeClock
) -> None:
    now = clock.now()
    await _audience(pool, now)
    await staff(pool, "mila", Role.MARKETER)
    await sign_in_as(page, "mila", "/console/campaigns")
    await expect(page.get_by_text("No campaigns yet.")).to_be_visible()

    # Composing: the part counter follows each text (UCS-2 for Cyrillic, GSM-7 for plain Latin).
    await page.get_by_role("link", name="New campaign").click()
    await htmx_ready(page, "#text_ru")
    ru_counter, en_counter = page.locator("#parts-ru"), page.locator("#parts-en")
    await expect(ru_counter).to_have_text("GSM-7: 0 characters, 1 SMS part(s) (up to 160 per part)")
    await page.get_by_label("Campaign name").fill("Weekend sale")
    await page.get_by_label("Text in Russian").fill(RU)
    parts = math.ceil(len(RU) / 67)
    await expect(ru_counter).to_have_text(f"UCS-2: {len(RU)} characters, {parts} SMS part(s) (up to 67 per part)")
    await page.get_by_label("Text in English (optional)").fill(EN)
    # In GSM-7 the braces of {name} are escape pairs: two septets each.
    await expect(en_counter).to_have_text(f"GSM-7: {len(EN) + 2} characters, 1 SMS part(s) (up to 160 per part)")
    await page.get_by_label("Segment").select_option("everyone")
    await page.get_by_label("Store 2").check()
    start = datetime(2026, 3, 3, 12, 0, tzinfo=DEFAULT_PROGRAM.zone)
    assert start > now
    await page.get_by_label("Start sending").fill("2026-03-03T12:00")
    await page.get_by_label("Control group, %").fill("60")
    await look(page, "campaign-compose")
    await page.get_by_role("button", name="Schedule the campaign").click()
    # Refused by the campaign's own checks (at most half held out); the form keeps what was typed.
    await expect(page.get_by_role("alert")).to_have_text("Control group: 0 to 50% of the recipients.")
    await expect(page.get_by_label("Text in Russian")).to_have_value(RU)
    await expect(page.get_by_label("Store 2")).to_be_checked()
    await page.get_by_label("Control group, %").fill("50")
    await page.get_by_role("button", name="Schedule the campaign").click()
    await expect(page).to_have_url(re.compile(r"/console/campaigns/\d+$"))
    await expect(page.get_by_role("status")).to_have_text("Campaign “Weekend sale” is scheduled.")
    await expect(page.get_by_role("heading", name="Weekend sale")).to_contain_text("preparing")
    campaign_id = int(page.url.rsplit("/", 1)[1])

    # The worker enqueues it: store 1's twenty, half of them held out; it waits for its start.
    dispatcher = _dispatcher(pool, clock)
    await dispatcher.enqueue_campaigns()
    async with pool.acquire() as conn:
        control = {r["customer_id"] for r in await conn.fetch("SELECT customer_id FROM campaign_holdouts")}
        treated = {r["customer_id"] for r in await conn.fetch("SELECT customer_id FROM outbox")}
        on_viber = {
            r["customer_id"]
            for r in await conn.fetch("SELECT customer_id FROM notification_preferences WHERE channels = '{viber}'")
        }
    assert len(control | treated) == 20
    assert control
    assert treated
    await page.reload()
    await expect(page.get_by_role("heading", name="Weekend sale")).to_contain_text("scheduled")

    # It is sent at its start: SMS delivered, Viber refused.
    clock.set(start + timedelta(minutes=1))
    while await dispatcher.run_once():
        pass
    failed = len(treated & on_viber)
    here = f"/console/campaigns/{campaign_id}"
    await sign_in_as(page, "mila", here)  # the next day: signed out after a while idle
    await expect(page.locator("#sent")).to_have_text(str(len(treated) - failed))
    await expect(page.locator("#delivered")).to_have_text(str(len(treated) - failed))
    await expect(page.locator("#failed")).to_have_text(str(failed))

    # Purchases within the window: two recipients (one twice) and one of the control group.
    first, second = sorted(treated)[:2]
    async with pool.acquire() as conn:
        await order(conn, first, start + timedelta(days=1), 2_000)
        await order(conn, first, start + timedelta(days=2), 1_000)
        await order(conn, second, start + timedelta(days=3), 3_000)
        await order(conn, sorted(control)[0], start + timedelta(days=4), 4_000)
    clock.set(start + timedelta(days=20))
    await sign_in_as(page, "mila", here)
    results = page.get_by_role("table", name="The campaign's recipients against the control group")
    await expect(results.get_by_role("row", name=re.compile(r"^Shoppers in the group"))).to_have_text(
        re.compile(rf"{len(treated)}\s*{len(control)}")
    )
    await expect(results.get_by_role("row", name=re.compile(r"^Bought"))).to_have_text(re.compile(r"Bought\s*2\s*1"))
    await expect(results.get_by_role("row", name=re.compile(r"^Purchases"))).to_have_text(
        re.compile(r"Purchases\s*3\s*1")
    )
    await expect(page.get_by_text("the figures are final")).to_be_visible()
    await look(page, "campaign-results")

    await page.locator("#main").get_by_role("link", name="Campaigns", exact=True).click()
    row = page.get_by_role("row", name=re.compile("Weekend sale sent"))
    await expect(row.get_by_role("link", name="Weekend sale")).to_have_attribute(
        "href", f"/console/campaigns/{campaign_id}"
    )
    await look(page, "campaigns")

    # The list goes back a page at a time.
    async with pool.acquire() as conn:
        columns = [
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'campaigns' AND column_name <> 'id' ORDER BY ordinal_position"
            )
        ]
        listed = ", ".join(columns)
        await conn.execute(  # 20 more like it: the first page is full, Weekend sale is on the second
            f"INSERT INTO campaigns ({listed}) SELECT {listed} FROM campaigns, generate_series(1, 20) WHERE id = $1",
            campaign_id,
        )
    await page.goto(f"{page.url.split('/console')[0]}/console/campaigns")
    await expect(page.get_by_role("link", name="Weekend sale")).to_have_count(20)
    await page.get_by_role("link", name="Older campaigns").click()
    await expect(page.get_by_role("link", name="Weekend sale")).to_have_count(1)
    await expect(page.get_by_role("link", name="Older campaigns")).to_have_count(0)
    await page.get_by_role("link", name="Newest").click()
    await expect(page.get_by_role("link", name="Weekend sale")).to_have_count(20)

"""Segments in the console, in a real browser: a marketer builds a rule and watches its size follow it
(with the rule's errors shown beside it), saves it, pages through its shoppers and downloads them; the
RFM grid counts the scored shoppers per recency and frequency, and a cell opens as a segment."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.async_api import Page, expect

from analytics.segments_daily import run_daily
from kartka.clock import FakeClock
from kartka.db import Pool
from kartka.staff import Role
from tests.analytics.data import customer, order
from tests.api.console.conftest import htmx_ready, look, sign_in_as, staff
from wallet.program import DEFAULT_PROGRAM

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("console-segments")]


async def _shoppers(pool: Pool, clock: FakeClock) -> None:
    """Thirty shoppers who bought 1-4 times, the first three for small sums, scored by the daily job."""
    now = clock.now()
    async with pool.acquire() as conn, conn.transaction():
        for i in range(30):
            shopper = await customer(conn, now, consent=True, home_store="s1")
            for j in range(1 + i % 4):
                await order(conn, shopper, now - timedelta(days=3 + i * 5 + j), 100 if i < 3 else 2_000 + 100 * i)
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is not None


async def test_a_marketer_builds_saves_and_opens_segments_and_the_rfm_grid(
    page: Page, pool: Pool, clock: FakeClock
) -> None:
    await _shoppers(pool, clock)
    await staff(pool, "mila", Role.MARKETER)
    await sign_in_as(page, "mila", "/console/segments")
    await expect(page.get_by_text("No saved segments yet.")).to_be_visible()

    # The builder: an empty rule is everyone; the size follows the rule as it is typed.
    await page.get_by_role("link", name="New segment").click()
    await htmx_ready(page, ".builder-fields")
    size = page.locator("#size")
    await expect(size).to_have_text("30")
    await page.locator("#spend_365d_min").fill("10")
    await expect(size).to_have_text("27")
    # Only the size is read out as it changes, not the sample table under it.
    said = page.locator("#preview-said")
    await expect(said).to_have_attribute("aria-live", "polite")
    await expect(said).to_have_text("27 shoppers now")
    assert await page.locator("#preview").get_attribute("aria-live") is None
    # What the console cannot read, and what the rule's own checks refuse, are shown beside the size.
    await page.locator("#orders_365d_min").fill("many")
    await expect(page.locator("#preview").get_by_role("alert")).to_have_text("“Purchases”: type a number.")
    await page.locator("#orders_365d_min").fill("3")
    await page.locator("#orders_365d_max").fill("2")
    await expect(page.locator("#preview").get_by_role("alert")).to_contain_text("min must not exceed max")
    await page.locator("#orders_365d_max").fill("")
    await expect(size).to_have_text("13")  # of the 27, those with 3 or 4 purchases
    await page.locator("#orders_365d_min").fill("")
    await expect(size).to_have_text("27")
    await look(page, "segment-builder")

    await page.get_by_label("Title").fill("Big spenders")
    await page.get_by_label("Code").fill("big-spenders")
    await page.get_by_role("button", name="Save").click()
    await expect(page).to_have_url(re.compile(r"/console/segments/big-spenders$"))
    await expect(page.get_by_role("status")).to_have_text("Segment “Big spenders” saved: 27 shoppers.")
    await expect(page.locator("tbody tr")).to_have_count(20)
    await look(page, "segment")
    await page.get_by_role("link", name="Next page").click()
    await expect(page.locator("tbody tr")).to_have_count(7)
    csv = await page.request.get("/console/segments/big-spenders/export.csv")
    assert csv.ok
    lines = (await csv.text()).splitlines()
    assert lines[0].startswith("customer_id,phone,name")
    assert len(lines) == 28

    # Changing it keeps its code; the list shows its size.
    await page.goto("/console/segments/big-spenders/edit")
    await expect(page.locator("#spend_365d_min")).to_have_value("10.00")
    await expect(page.locator("#size")).to_have_text("27")
    await page.goto("/console/segments")
    await expect(page.get_by_role("row", name=re.compile("Big spenders big-spenders 27"))).to_be_visible()
    await look(page, "segments")

    # The RFM grid: every cell says its count; a cell opens its shoppers as a segment.
    async with pool.acquire() as conn:
        cells = {
            (row["r"], row["f"]): row["n"]
            for row in await conn.fetch(
                "SELECT rfm_r AS r, rfm_f AS f, count(*) AS n FROM customer_facts GROUP BY 1, 2"
            )
        }
    assert sum(cells.values()) == 30
    await page.get_by_role("link", name="RFM grid").click()
    await expect(page.get_by_role("heading", name="RFM grid")).to_be_visible()
    grid = page.get_by_role("table", name="Shoppers by recency (R) and frequency (F)")
    for r in range(1, 6):
        for f in range(1, 6):
            count = cells.get((r, f), 0)
            await expect(grid.get_by_role("link", name=re.compile(rf"^R{r}, F{f}: {count} shoppers"))).to_be_visible()
    await look(page, "rfm-grid")
    (r, f), count = max(cells.items(), key=lambda cell: cell[1])
    await grid.get_by_role("link", name=re.compile(rf"^R{r}, F{f}:")).click()
    await expect(page.locator("#size")).to_have_text(str(count))
    await expect(page.locator("#rfm_r_min")).to_have_value(str(r))
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text(f"Segment “RFM R{r} F{f}” saved: {count} shoppers.")

    await page.goto("/console/segments/rfm?lang=ru")
    await expect(page.get_by_role("heading", name="RFM-сетка")).to_be_visible()

"""The dashboard in a real browser, on a small hand-built month, and the store-manager role it serves.

February 2026 (Minsk time, every purchase at noon), through the tills' API:

    store-1, with a card        store-1, no card      store-2
    Feb 03  A 2000  A's first   Feb 03  R1 1000      Feb 12  C 3000 (C's first)
    Feb 03  B 1500  B's first                        Feb 12  R2  500, no card
    Feb 10  A 1000  repeat

    store-1: 3 of 4 receipts with a card -> 75 % (on Feb 03, 2 of 3: 66.67 %, and of revenue 3500/4500:
             77.78 %); average check with a card (2000+1500+1000)/3 = 15.00,
             without 10.00; repeat share 1/3 -> 33.33 %
    from Feb 10: store-1 has A's 1000 alone -> 100 %
    the chain: 4 of 6 -> 66.67 %; store-2: 1 of 2 -> 50 %
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from analytics import kpis_rollup
from kartka.clock import FakeClock
from kartka.db import Pool
from kartka.keys import Scope
from kartka.staff import Role
from tests.api.console.conftest import PASSWORD, look, sign_in_as, staff
from tests.helpers import Keys
from tests.served import Served

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("console-dashboard")]


def noon(day: int) -> str:
    return datetime(2026, 2, day, 9, 0, tzinfo=UTC).isoformat()  # 12:00 in Minsk


async def _post(api: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    answer = await api.post(path, json=body, headers=headers | {"Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code in (200, 201), answer.text
    result: dict[str, Any] = answer.json()
    return result


async def month(served: Served, keys: Keys, clock: FakeClock, pool: Pool) -> None:
    clock.set(datetime(2026, 2, 25, 12, 0, tzinfo=UTC))
    one, two = await keys.headers(Scope.POS), await keys.headers(Scope.POS, store="store-2")
    admin = await keys.headers(Scope.ADMIN)
    async with httpx.AsyncClient(base_url=served.base) as api:
        for code in ("store-1", "store-2"):
            store = {"name": f"Shop {code[-1]}", "timezone": "Europe/Minsk"}
            assert (await api.put(f"/v1/admin/stores/{code}", json=store, headers=admin)).is_success

        async def card(phone: str, till: dict[str, str]) -> str:
            number: str = (await _post(api, "/v1/pos/customers", {"phone": phone}, till))["card"]["number"]
            return number

        async def order(number: str, day: int, price: int, till: dict[str, str]) -> None:
            lines = [{"sku": "sku-1", "qty": 1, "unit_price": price}]
            body = {"order_id": f"o-{uuid.uuid4().hex[:10]}", "card": number, "lines": lines, "purchased_at": noon(day)}
            await _post(api, "/v1/pos/orders", body, till)

        async def receipt(day: int, total: int, till: dict[str, str]) -> None:
            body = {"receipt_id": f"r-{uuid.uuid4().hex[:10]}", "total": total, "purchased_at": noon(day)}
            await _post(api, "/v1/pos/receipts", body, till)

        a, b, c = await card("+375291000001", one), await card("+375291000002", one), await card("+375291000003", two)
        await order(a, 3, 2000, one)
        await order(b, 3, 1500, one)
        await order(a, 10, 1000, one)
        await order(c, 12, 3000, two)
        await receipt(3, 1000, one)
        await receipt(12, 500, two)
    await kpis_rollup.run(pool, "Europe/Minsk")


async def show(page: Page, first: date, last: date, store: str) -> None:
    await page.get_by_label("From").fill(first.isoformat())
    await page.get_by_label("To", exact=True).fill(last.isoformat())
    await page.get_by_label("Store", exact=True).select_option(store)
    await page.get_by_role("button", name="Show").click()


async def test_a_marketer_reads_the_month_by_store_and_period(
    page: Page, served: Served, keys: Keys, clock: FakeClock, pool: Pool
) -> None:
    await month(served, keys, clock, pool)
    await staff(pool, "mila", Role.MARKETER)
    await sign_in_as(page, "mila")
    await page.get_by_role("navigation").get_by_role("link", name="Dashboard").click()
    await expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    # It opens on the last 30 days, today (25 February) included, for the whole chain.
    await expect(page.get_by_label("From")).to_have_value("2026-01-27")
    await expect(page.get_by_label("To", exact=True)).to_have_value("2026-02-25")

    await show(page, date(2026, 2, 1), date(2026, 2, 28), "store-1")
    identified = page.get_by_test_id("identified_receipts")
    await expect(identified).to_contain_text("75%")
    await expect(identified).to_contain_text("3 / 4")
    await expect(page.get_by_test_id("check_with_card")).to_contain_text("15\u00a0BYN")
    await expect(page.get_by_test_id("check_without_card")).to_contain_text("10\u00a0BYN")
    await expect(page.get_by_test_id("repeat_share")).to_contain_text("33.33%")
    # Every chart has its title on the picture and its numbers in a table.
    figure = page.get_by_role("figure", name="Share of purchases with a card")
    await expect(figure.get_by_role("img", name=re.compile("Share of purchases with a card"))).to_be_visible()
    await look(page, "dashboard")
    await figure.get_by_text("As a table").click()
    await expect(figure.get_by_role("row", name="3 Feb 2026 66.67% 77.78%")).to_be_visible()
    await expect(figure.get_by_role("row", name="10 Feb 2026 100% 100%")).to_be_visible()
    await expect(page.get_by_role("figure", name="Points liability")).to_have_count(0)  # the chain's, not a store's

    await show(page, date(2026, 2, 10), date(2026, 2, 28), "store-1")
    await expect(page.get_by_test_id("identified_receipts")).to_contain_text("100%")
    await show(page, date(2026, 2, 1), date(2026, 2, 28), "")
    await expect(page.get_by_test_id("identified_receipts")).to_contain_text("66.67%")
    await expect(page.get_by_role("figure", name="Points liability")).to_be_visible()

    # A long period is charted by week (a point a day would blur), still with the whole period's figures.
    await show(page, date(2025, 9, 1), date(2026, 2, 28), "store-1")
    await expect(page.get_by_role("heading", name="By week")).to_be_visible()
    await expect(page.get_by_test_id("identified_receipts")).to_contain_text("75%")

    # A period without a purchase says so rather than drawing empty frames.
    await show(page, date(2025, 6, 1), date(2025, 6, 30), "")
    await expect(page.get_by_role("status")).to_have_text("No purchases in this period.")
    await expect(page.get_by_test_id("identified_receipts")).to_contain_text("—")
    await expect(page.get_by_role("figure", name="Share of purchases with a card")).to_contain_text("No data")
    await show(page, date(2026, 2, 28), date(2026, 2, 1), "")
    await expect(page.get_by_role("alert")).to_contain_text("`to` must be after `from`")

    await page.goto("/console/dashboard?from=2026-02-01&to=2026-02-28&store=store-2&lang=ru")
    await expect(page.get_by_role("heading", name="Показатели", level=1)).to_be_visible()
    await expect(page.get_by_test_id("identified_receipts")).to_contain_text("50\u00a0%")


async def test_a_store_manager_sees_their_store_only(
    page: Page, served: Served, keys: Keys, clock: FakeClock, pool: Pool
) -> None:
    await month(served, keys, clock, pool)
    await staff(pool, "anna", Role.ADMIN)
    await staff(pool, "sasha", Role.STORE_MANAGER)
    await sign_in_as(page, "anna", "/console/staff")
    await page.get_by_label("store-2 · Shop 2").check()
    await page.get_by_role("button", name="Save stores: sasha").click()
    await expect(page.get_by_role("status")).to_have_text("Stores of sasha: store-2.")
    await expect(page.get_by_label("store-2 · Shop 2")).to_be_checked()
    await look(page, "staff-stores")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You have signed out.")

    await sign_in_as(page, "sasha", "/console/dashboard?from=2026-02-01&to=2026-02-28")
    await expect(page.get_by_label("Store", exact=True).locator("option")).to_have_text(["store-2"])
    await expect(page.get_by_test_id("identified_receipts")).to_contain_text("50%")
    await expect(page.get_by_test_id("identified_receipts")).to_contain_text("1 / 2")
    async with page.expect_response(re.compile(r"store=store-1")) as answer:
        await page.goto("/console/dashboard?from=2026-02-01&to=2026-02-28&store=store-1")
    assert (await answer.value).status == 403
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    # She helps shoppers at the counter like support, and leaves the stores and staff to admins.
    nav = page.get_by_role("navigation")
    await expect(nav.get_by_role("link")).to_have_text(["Home", "Dashboard", "Shoppers", "Promotions"])

    # The admin API holds her to the same stores.
    async with httpx.AsyncClient(base_url=served.base) as api:
        login = await api.post("/v1/admin/login", json={"username": "sasha", "password": PASSWORD})
        assert login.status_code == 200, login.text
        token = {"Authorization": f"Bearer {login.json()['access_token']}"}
        period = {"from": "2026-02-01", "to": "2026-03-01"}
        mine = await api.get("/v1/admin/reports/kpis", params=period | {"store": "store-2"}, headers=token)
        assert mine.status_code == 200, mine.text
        assert mine.json()["rows"][0]["identified_share_receipts"] == 0.5
        for params in (period | {"store": "store-1"}, period, period | {"group_by": "store"}):
            other = await api.get("/v1/admin/reports/kpis", params=params, headers=token)
            assert other.status_code == 403, other.text
            assert other.json()["code"] == "store-forbidden"
        promotions = await api.get("/v1/admin/reports/promotions", params=period | {"store": "store-1"}, headers=token)
        assert promotions.status_code == 403
        segments = await api.get("/v1/admin/reports/segments", headers=token)
        assert segments.status_code == 403

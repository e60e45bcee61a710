"""The staff console's basics in a real browser: signing in and out, languages, idle sessions, roles,
shoppers and their cards, stores and staff."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from kartka.clock import FakeClock
from kartka.db import Pool
from kartka.keys import Scope
from kartka.staff import Role
from tests.api.console.conftest import PASSWORD, htmx_ready, look, sign_in_as, staff
from tests.helpers import Keys, sign_in
from tests.served import Served

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("console-basics")]


async def test_a_signed_out_visitor_signs_in_and_out(page: Page, context: BrowserContext, pool: Pool) -> None:
    await staff(pool, "olga", Role.SUPPORT)
    await page.goto("/console")
    await expect(page).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole"))
    assert await page.locator("input[type=hidden][name*=csrf]").count() == 1
    await look(page, "sign-in")

    await page.get_by_label("Username").fill("olga")
    await page.get_by_label("Password").fill("wrong password, surely")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")

    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Home")).to_be_visible()
    cookie = next(c for c in await context.cookies() if c["name"] == "kartka_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    await look(page, "home")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You have signed out.")
    await page.goto("/console/customers")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))
    # The old cookie, replayed, names a session that has ended.
    await context.add_cookies(
        [{"name": cookie["name"], "value": cookie["value"], "domain": cookie["domain"], "path": "/console"}]
    )
    await page.goto("/console")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))


async def test_the_console_speaks_russian(page: Page, pool: Pool) -> None:
    await staff(pool, "admin", Role.ADMIN)
    await page.goto("/console/sign-in?lang=ru")
    await expect(page.get_by_role("heading", name="Вход для сотрудников")).to_be_visible()
    await page.get_by_label("Имя пользователя").fill("admin")
    await page.get_by_label("Пароль").fill(PASSWORD)
    await page.get_by_role("button", name="Войти").click()
    await expect(page.get_by_role("link", name="Сотрудники", exact=True)).to_be_visible()
    assert await page.get_attribute("html", "lang") == "ru"


async def test_idle_sessions_end(page: Page, pool: Pool, clock: FakeClock) -> None:
    await staff(pool, "olga", Role.SUPPORT)
    await sign_in_as(page, "olga")
    clock.advance(timedelta(minutes=29))
    await page.goto("/console/customers")
    await expect(page.get_by_role("heading", name="Shoppers")).to_be_visible()
    clock.advance(timedelta(minutes=31))
    await page.goto("/console/customers")
    await expect(page.get_by_role("status")).to_contain_text("signed out after a while")


async def test_roles_decide_what_a_person_sees(page: Page, context: BrowserContext, pool: Pool) -> None:
    await staff(pool, "masha", Role.MARKETER)
    await sign_in_as(page, "masha")
    nav = page.get_by_role("navigation")
    await expect(nav.get_by_role("link", name="Shoppers")).to_have_count(0)
    await expect(nav.get_by_role("link", name="Staff")).to_have_count(0)
    for path in ("/console/customers", "/console/staff", "/console/stores"):
        response = await page.goto(path)
        assert response is not None, path
        assert response.status == 403, path
        await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await look(page, "forbidden")
    await context.clear_cookies()

    await staff(pool, "olga", Role.SUPPORT)
    await sign_in_as(page, "olga")
    await expect(page.get_by_role("navigation").get_by_role("link", name="Shoppers")).to_be_visible()
    response = await page.goto("/console/staff")
    assert response is not None
    assert response.status == 403


async def test_support_finds_a_shopper_by_phone_and_grants_points(
    page: Page, served: Served, pool: Pool, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=served.base) as api:
        shopper = await sign_in(api, pool, "+375291234567")
        await staff(pool, "olga", Role.SUPPORT)
        await sign_in_as(page, "olga")

        await page.get_by_role("navigation").get_by_role("link", name="Shoppers").click()
        await expect(page.get_by_role("heading", name="Shoppers", level=1)).to_be_visible()  # (home has a search too)
        await htmx_ready(page, "#q")
        await page.get_by_label("Phone, card number or name").fill("+375 29 123-45-67")
        results = page.locator("#results")
        await expect(results.get_by_role("row")).to_have_count(2)  # htmx brought the results as she typed
        await look(page, "customers")
        await results.get_by_role("link").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("+375291234567")
        await expect(page.get_by_test_id("available")).to_have_text("0")

        await page.get_by_label("Points", exact=True).fill("12,50")
        await page.get_by_label("Expire after, days").fill("7")
        await page.get_by_label("Reason").fill("Apology for a broken till")
        await page.get_by_role("button", name="Grant", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Granted 12.50 points")
        await expect(page.get_by_test_id("available")).to_have_text("12.50")
        await expect(page.get_by_role("cell", name="staff bonus")).to_be_visible()
        await look(page, "customer")

        me = await api.get("/v1/me", headers=shopper["headers"])
        assert me.status_code == 200, me.text
        assert me.json()["balance"]["available"] == 1250
        entry = await pool.fetchrow("SELECT reason, actor FROM ledger_entries WHERE kind = 'grant'")
        assert entry is not None
        assert entry["reason"] == "Apology for a broken till"
        assert entry["actor"].startswith("staff:")

        # A long history comes a page at a time; htmx adds the next page under the first.
        admin = await keys.headers(Scope.ADMIN)
        customer_id = await pool.fetchval("SELECT id FROM customers")
        for n in range(20):
            more = {"points": 100 + n, "expires_in_days": 30, "reason": f"batch {n}"}
            assert (await api.post(f"/v1/admin/customers/{customer_id}/grants", json=more, headers=admin)).is_success
        await page.reload()
        rows = page.locator("section[aria-labelledby=history-h] tbody tr:not(#history-more)")
        await expect(rows).to_have_count(20)
        await page.get_by_role("link", name="Show more").click()
        await expect(rows).to_have_count(21)
        await expect(rows.last).to_contain_text("Apology for a broken till")
        await expect(page.get_by_role("link", name="Show more")).to_have_count(0)


async def test_a_bad_grant_or_a_forged_form_changes_nothing(page: Page, served: Served, pool: Pool) -> None:
    async with httpx.AsyncClient(base_url=served.base) as api:
        await sign_in(api, pool, "+375291234568")
    customer_id = await pool.fetchval("SELECT id FROM customers")
    await staff(pool, "olga", Role.SUPPORT)
    await sign_in_as(page, "olga", f"/console/customers/{customer_id}")
    await page.get_by_label("Points", exact=True).fill("12,505")
    await page.get_by_label("Reason").fill("too precise")
    await page.get_by_role("button", name="Grant", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("at most two decimals")
    await expect(page.get_by_label("Points", exact=True)).to_have_value("12,505")  # what she typed stays

    await page.get_by_label("Points", exact=True).fill("10")
    await page.locator("form[action$='/grant'] input[name=csrf_token]").evaluate("e => e.value = 'forged'")
    async with page.expect_response(re.compile(r"/grant$")) as answer:
        await page.get_by_role("button", name="Grant", exact=True).click()
    assert (await answer.value).status == 403
    await expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    assert await pool.fetchval("SELECT count(*) FROM ledger_entries") == 0


async def test_support_attaches_resends_replaces_and_blocks_cards(
    page: Page, served: Served, pool: Pool, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=served.base) as api:
        await sign_in(api, pool, "+375291234570")
        first = await pool.fetchval("SELECT number FROM cards")
        pos = await keys.headers(Scope.POS)
        anonymous = await api.post("/v1/pos/cards/anonymous", headers=pos)
        assert anonymous.status_code == 201, anonymous.text
        no_name = anonymous.json()["card"]["number"]
    customer_id = await pool.fetchval("SELECT customer_id FROM cards WHERE number = $1", first)
    await staff(pool, "olga", Role.SUPPORT)
    await sign_in_as(page, "olga", f"/console/customers/{customer_id}")

    await page.get_by_label("No-name card number (13 digits)").fill(no_name)
    await page.get_by_role("button", name="Attach").click()
    await expect(page.get_by_role("status")).to_have_text(f"Card {no_name} is attached.")
    await expect(page.get_by_role("cell", name="replaced")).to_be_visible()
    assert await pool.fetchval("SELECT replaced_by FROM cards WHERE number = $1", no_name) == first

    await page.get_by_role("button", name="Send the link").click()
    await expect(page.get_by_role("status")).to_contain_text(f"The link to card {first}")
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE template = 'card_link'") == 2

    await page.get_by_role("button", name="Replace").click()  # not confirmed: the browser asks first
    assert await pool.fetchval("SELECT status FROM cards WHERE number = $1", first) == "active"
    await page.get_by_label("Yes, issue a new card").check()
    await page.get_by_role("button", name="Replace").click()
    await expect(page.get_by_role("status")).to_contain_text(f"the old one, {first}, is blocked")
    second = await pool.fetchval("SELECT number FROM cards WHERE status = 'active'")
    await expect(page.get_by_text(second).first).to_be_visible()

    await page.get_by_label("Yes, I checked: block this card").check()
    await page.get_by_role("button", name="Block").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Card {second} is blocked")
    assert await pool.fetchval("SELECT count(*) FROM cards WHERE status = 'active'") == 0


async def test_an_admin_keeps_stores_and_staff(page: Page, pool: Pool) -> None:
    await staff(pool, "admin", Role.ADMIN)
    await sign_in_as(page, "admin")
    await page.get_by_role("navigation").get_by_role("link", name="Stores").click()
    await page.get_by_label("Store code").fill("minsk-1")
    await page.get_by_label("Name").fill("Minsk, Nezavisimosti 1")
    await page.get_by_label("Time zone").fill("Europe/Minsk")
    await page.get_by_label("Latitude").fill("53,9")
    await page.get_by_label("Longitude").fill("27.5667")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Store minsk-1 saved.")
    await expect(page.get_by_role("cell", name="Minsk, Nezavisimosti 1")).to_be_visible()
    row: Any = await pool.fetchrow("SELECT timezone, latitude, longitude FROM stores WHERE code = 'minsk-1'")
    assert (row["timezone"], str(row["latitude"]), str(row["longitude"])) == ("Europe/Minsk", "53.900000", "27.566700")
    await page.get_by_label("Time zone").fill("Mars/Olympus")
    await page.get_by_label("Store code").fill("mars")
    await page.get_by_label("Name").fill("Mars")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("unknown time zone")
    await look(page, "stores")

    await page.get_by_role("navigation").get_by_role("link", name="Staff").click()
    await page.get_by_label("Username").fill("new.agent")
    await page.get_by_label("Role").select_option("support")
    await page.get_by_label("Password (12 characters or more)").fill(PASSWORD)
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("status")).to_have_text("Staff member new.agent created.")
    await page.get_by_role("button", name="Disable: new.agent").click()
    await expect(page.get_by_role("status")).to_contain_text("new.agent is disabled")
    assert await pool.fetchval("SELECT disabled_at IS NOT NULL FROM staff WHERE username = 'new.agent'")
    await look(page, "staff")

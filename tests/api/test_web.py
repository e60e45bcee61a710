"""The QR-poster page: a shopper joins from a phone's browser; strangers cannot turn it into an SMS pump."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.state import services_of
from boot.web import create_app
from kartka.db import Connection, Pool
from kartka.logs import LogFormat, formatter
from kartka.settings import Settings

Client = AsyncTestClient[Litestar]


@pytest.fixture(autouse=True)
async def store(pool: Pool) -> None:
    """The store whose poster the tests' shoppers scan (a poster for an unknown store gets no form)."""
    await pool.execute("INSERT INTO stores (code, name, timezone) VALUES ('minsk-1', 'Немига', 'Europe/Minsk')")


async def token(client: Client, page: str = "/join") -> str:
    """Open the page as a browser does (which sets the form's cookie) and read the form's token."""
    response = await client.get(page)
    assert response.status_code == 200, response.text
    found = re.search(r'name="csrf" value="([^"]+)"', response.text)
    assert found is not None, response.text
    return found.group(1)


async def join(client: Client, phone: str, **fields: str) -> Any:
    form = {"phone": phone, "consent": "yes", "csrf": await token(client)} | fields
    return await client.post("/join", data=form)


async def test_join_page_in_russian_and_english(client: Client) -> None:
    ru = await client.get("/join?store=minsk-1")
    assert ru.status_code == 200
    assert "text/html" in ru.headers["content-type"]
    assert "Получить карту" in ru.text
    assert 'name="store" value="minsk-1"' in ru.text
    cookie = ru.headers["set-cookie"].lower()
    assert "kartka_join=" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    en = await client.get("/join", headers={"accept-language": "en-GB,en;q=0.9"})
    assert "Get my card" in en.text


async def test_join_registers_with_qr_poster_source_and_store(client: Client, conn: Connection) -> None:
    fields = {"name": "Ира", "store": "minsk-1", "lang": "ru"}
    response = await join(client, "8 029 555 44 33", **fields)
    assert response.status_code == 200, response.text
    assert "Готово" in response.text
    assert "+375295554433" in response.text
    row = await conn.fetchrow(
        "SELECT c.phone, c.name, r.source, r.store FROM customers c JOIN registrations r ON r.customer_id = c.id"
    )
    assert row is not None
    assert dict(row) == {"phone": "+375295554433", "name": "Ира", "source": "qr_poster", "store": "minsk-1"}
    # Joining again answers the same way: the page does not tell who is already a customer.
    again = await join(client, "8 029 555 44 33", **fields)
    assert again.text == response.text
    assert await conn.fetchval("SELECT count(*) FROM cards") == 1


async def test_join_needs_consent_and_a_phone(client: Client, conn: Connection) -> None:
    no_consent = await join(client, "+375295554433", consent="", lang="en")
    assert no_consent.status_code == 422
    assert "accept the program rules" in no_consent.text
    bad_phone = await join(client, "12", name="<b>x</b>")
    assert bad_phone.status_code == 422
    assert "Проверьте номер" in bad_phone.text
    assert "<b>x</b>" not in bad_phone.text  # echoed input is escaped
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


# -- cross-site posts --------------------------------------------------------------------------------


async def test_a_post_without_the_pages_token_or_cookie_is_refused(settings: Settings, conn: Connection) -> None:
    form = {"phone": "+375295554433", "consent": "yes", "lang": "en"}
    async with AsyncTestClient(create_app(settings)) as client:
        bare = await client.post("/join", data=form)  # a script's or another site's post: no token, no cookie
        assert bare.status_code == 403
        assert "expired" in bare.text
        assert 'value="+375295554433"' in bare.text  # the shopper's typing is kept: one more tap sends it
        forged = await client.post("/join", data=form | {"csrf": "1700000000.AAAA"})
        assert forged.status_code == 403
        good = await token(client)
    async with AsyncTestClient(create_app(settings)) as other:  # a valid token, but another browser's cookie
        await other.get("/join")
        assert (await other.post("/join", data=form | {"csrf": good})).status_code == 403
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},  # a browser that does not send Sec-Fetch-Site
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another party
        {"Origin": "null"},  # a sandboxed frame or a privacy-stripped cross-site post
    ],
)
async def test_a_cross_site_post_is_refused_even_with_a_good_token(
    client: Client, conn: Connection, headers: dict[str, str]
) -> None:
    form = {"phone": "+375295554433", "consent": "yes", "csrf": await token(client)}
    refused = await client.post("/join", data=form, headers=headers)
    assert refused.status_code == 403
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_a_same_origin_browser_post_is_accepted(client: Client, settings: Settings) -> None:
    headers = {"Origin": settings.public_base, "Sec-Fetch-Site": "same-origin"}
    form = {"phone": "+375295554433", "consent": "yes", "csrf": await token(client)}
    assert (await client.post("/join", data=form, headers=headers)).status_code == 200
    # The page as served under its own host name (before KARTKA_PUBLIC_URL is set) is same-origin too.
    form["csrf"] = await token(client)
    own = {"Origin": "http://testserver.local", "Sec-Fetch-Site": "same-origin"}
    assert (await client.post("/join", data=form, headers=own)).status_code == 200


# -- limits and budgets ------------------------------------------------------------------------------


async def test_the_join_limit_per_address_is_shared_by_every_app_instance(settings: Settings, pool: Pool) -> None:
    """Three app instances (as three replicas or server processes) on one database: one address gets
    the limit once in all, not once per instance."""
    limited = msgspec.structs.replace(settings, join_per_ip_per_hour=5)
    async with (
        AsyncTestClient(create_app(limited)) as a,
        AsyncTestClient(create_app(limited)) as b,
        AsyncTestClient(create_app(limited)) as c,
    ):
        replicas = [a, b, c]
        tokens = [await token(replica) for replica in replicas]
        statuses = []
        for n in range(15):
            replica = n % 3
            form = {"phone": f"+3752955510{n:02d}", "consent": "yes", "csrf": tokens[replica]}
            statuses.append((await replicas[replica].post("/join", data=form)).status_code)
        assert statuses.count(200) == 5, statuses
        assert statuses[:5] == [200] * 5
        assert (await a.get("/join")).status_code == 200  # reading the page is not limited
    assert await pool.fetchval("SELECT count(*) FROM customers") == 5


async def test_a_shopper_past_a_limit_gets_a_page_in_their_language_with_retry_after(settings: Settings) -> None:
    limited = msgspec.structs.replace(settings, join_per_ip_per_hour=1)
    async with AsyncTestClient(create_app(limited)) as client:
        assert (await join(client, "+375295550001")).status_code == 200
        ru = await join(client, "+375295550002", store="minsk-1")
        assert ru.status_code == 429
        assert ru.headers["content-type"].startswith("text/html")
        assert 0 < int(ru.headers["retry-after"]) <= 3600
        assert "Слишком много попыток" in ru.text
        assert "через 60 мин." in ru.text
        assert 'href="/join?lang=ru&store=minsk-1"' in ru.text
        en = await join(client, "+375295550003", lang="en")
        assert en.status_code == 429
        assert en.headers["content-type"].startswith("text/html")
        assert "Too many attempts" in en.text
        assert "try again in 60 min." in en.text
        by_header = await client.post(
            "/join",
            data={"phone": "+375295550004", "consent": "yes", "csrf": await token(client)},
            headers={"accept-language": "en-US,en;q=0.8"},
        )
        assert "Too many attempts" in by_header.text


class Lines(logging.Handler):
    """Warnings as the JSON log format writes them (the real formatter)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(formatter(LogFormat.JSON))
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(json.loads(self.format(record)))

    @property
    def lines(self) -> list[str]:
        return [r["message"] for r in self.records]


async def test_texts_strangers_cause_are_held_to_hourly_budgets(settings: Settings, pool: Pool) -> None:
    """Join cards and sign-in codes share the budgets: 2 texts to any one foreign country, 5 in all (the
    home country, BY, is bounded by the total alone; Russia has its own budget of 1)."""
    budgets = msgspec.structs.replace(
        settings,
        sms_budget_per_hour=5,
        sms_budget_per_country_per_hour=2,
        sms_budget_countries="RU=1",
        otp_per_ip_per_hour=100,
    )
    app = create_app(budgets)
    logged = Lines()
    logging.getLogger("kartka.ratelimit").addHandler(logged)
    async with AsyncTestClient(app) as client:
        poland = ["+48512345601", "+48512345602", "+48512345603"]
        assert (await join(client, poland[0])).status_code == 200
        assert (await client.post("/v1/auth/otp", json={"phone": poland[1]})).status_code == 202
        third = await client.post("/v1/auth/otp", json={"phone": poland[2]})
        assert third.status_code == 429
        assert third.json()["code"] == "sms-budget"
        assert 0 < int(third.headers["retry-after"]) <= 3600
        # Someone should look: the refusal is logged and counted, with the figures as fields of their own.
        assert logged.lines == [
            "SMS budget spent (country PL, 2 an hour): 1 texts refused by this process so far (this one to PL)"
        ]
        assert (await client.post("/v1/auth/otp", json={"phone": "+79161234501"})).status_code == 202
        assert (await client.post("/v1/auth/otp", json={"phone": "+79161234502"})).status_code == 429
        # Two texts left in all: the home country takes them, then nobody gets one.
        assert (await join(client, "+375295550001")).status_code == 200
        assert (await client.post("/v1/auth/otp", json={"phone": "+375295550002"})).status_code == 202
        busy = await join(client, "+375295550003", lang="en")
        assert busy.status_code == 429
        assert "cannot send text messages right now" in busy.text
        assert "Retry-After" in busy.headers
        assert (await join(client, "+375295550004")).status_code == 429
        # A customer's phone gets the same answer as a new one: the page tells no stranger who is a customer.
        assert (await join(client, "+375295550001")).status_code == 429
        assert services_of(app.state).texts.refused == {"country PL": 1, "country RU": 1, "total": 3}
    logging.getLogger("kartka.ratelimit").removeHandler(logged)
    fields = ("sms_budget", "country", "budget_per_hour", "refused")
    assert [tuple(r[f] for f in fields) for r in logged.records] == [  # the 1st of each; the 2nd, 3rd are not
        ("country", "PL", 2, 1),
        ("country", "RU", 1, 1),
        ("total", "BY", 5, 1),
    ]
    # Nothing half-done: the refused joins made no customer, the refused codes no outbox rows.
    assert await pool.fetchval("SELECT count(*) FROM customers") == 2
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE template = 'otp'") == 3


async def test_concurrent_sends_take_the_last_of_a_budget_once(settings: Settings, pool: Pool) -> None:
    budgets = msgspec.structs.replace(settings, sms_budget_per_hour=3, otp_per_ip_per_hour=100)
    async with AsyncTestClient(create_app(budgets)) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/auth/otp", json={"phone": f"+3752955520{n:02d}"}) for n in range(8))
        )
    assert sorted(a.status_code for a in answers) == [202] * 3 + [429] * 5
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE template = 'otp'") == 3


# -- the page itself ---------------------------------------------------------------------------------


async def test_the_page_sends_one_charset_and_the_security_headers(client: Client) -> None:
    page = await client.get("/join")
    assert page.headers["content-type"] == "text/html; charset=utf-8"  # was "...; charset=utf-8; charset=utf-8"
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "form-action 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert 'href="?lang=en"' in page.text  # the language switch, from the one base layout


async def test_a_poster_for_an_unknown_store_gets_a_404_page_not_a_form(client: Client, conn: Connection) -> None:
    ru = await client.get("/join?store=nowhere-9")
    assert ru.status_code == 404
    assert ru.headers["content-type"] == "text/html; charset=utf-8"
    assert "Магазин не найден" in ru.text
    assert 'name="csrf"' not in ru.text
    assert 'href="/join?lang=ru"' in ru.text  # a way on: the form without a store
    en = await client.get("/join?store=nowhere-9&lang=en")
    assert en.status_code == 404
    assert "Store not found" in en.text
    # A post naming an unknown store registers nobody either.
    posted = await client.post(
        "/join", data={"phone": "+375295554433", "consent": "yes", "csrf": await token(client), "store": "nowhere-9"}
    )
    assert posted.status_code == 404
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_what_the_shopper_typed_is_escaped_by_the_template(client: Client) -> None:
    typed = '"><script>alert(1)</script>'
    page = await join(client, "12", name=typed)
    assert page.status_code == 422
    assert "<script>" not in page.text
    assert "&#34;&gt;&lt;script&gt;" in page.text


async def test_a_form_error_speaks_the_pages_language(client: Client, conn: Connection) -> None:
    """The domain's own message ("a name has at most 200 characters") is English; the page explains."""
    long_name = await join(client, "+375295554433", name="Я" * 201)
    assert long_name.status_code == 422
    assert "Проверьте имя" in long_name.text
    assert "at most" not in long_name.text
    english = await join(client, "+375295554433", name="x" * 201, lang="en")
    assert "Please check the name" in english.text
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0

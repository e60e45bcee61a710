"""The QR-poster page: a shopper joins from a phone's browser."""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from kartka.db import Connection
from kartka.settings import Settings

Client = AsyncTestClient[Litestar]


async def test_join_page_in_russian_and_english(client: Client) -> None:
    ru = await client.get("/join?store=minsk-1")
    assert ru.status_code == 200
    assert "text/html" in ru.headers["content-type"]
    assert "Получить карту" in ru.text
    assert 'name="store" value="minsk-1"' in ru.text
    en = await client.get("/join", headers={"accept-language": "en-GB,en;q=0.9"})
    assert "Get my card" in en.text


async def test_join_registers_with_qr_poster_source_and_store(client: Client, conn: Connection) -> None:
    form = {"phone": "8 029 555 44 33", "name": "Ира", "consent": "yes", "store": "minsk-1", "lang": "ru"}
    response = await client.post("/join", data=form)
    assert response.status_code == 200, response.text
    assert "Готово" in response.text
    assert "+375295554433" in response.text
    row = await conn.fetchrow(
        "SELECT c.phone, c.name, r.source, r.store FROM customers c JOIN registrations r ON r.customer_id = c.id"
    )
    assert row is not None
    assert dict(row) == {"phone": "+375295554433", "name": "Ира", "source": "qr_poster", "store": "minsk-1"}
    # Joining again answers the same way: the page does not tell who is already a customer.
    again = await client.post("/join", data=form)
    assert again.text == response.text
    assert await conn.fetchval("SELECT count(*) FROM cards") == 1


async def test_join_needs_consent_and_a_phone(client: Client, conn: Connection) -> None:
    no_consent = await client.post("/join", data={"phone": "+375295554433", "lang": "en"})
    assert no_consent.status_code == 422
    assert "accept the program rules" in no_consent.text
    bad_phone = await client.post("/join", data={"phone": "12", "consent": "yes", "name": "<b>x</b>"})
    assert bad_phone.status_code == 422
    assert "Проверьте номер" in bad_phone.text
    assert "<b>x</b>" not in bad_phone.text  # echoed input is escaped
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_join_is_rate_limited_per_client(settings: Settings) -> None:
    limited = msgspec.structs.replace(settings, join_rate_per_minute=3)
    async with AsyncTestClient(create_app(limited)) as client:
        statuses = [
            (await client.post("/join", data={"phone": f"+37529555000{i}", "consent": "yes"})).status_code
            for i in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]
        assert (await client.get("/join")).status_code == 200  # reading the page is not limited

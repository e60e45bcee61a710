"""The card page the registration SMS links to: QR, number, balance, tier, the wallet buttons."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import resvg_py
import zxingcpp
from litestar import Litestar
from litestar.testing import AsyncTestClient
from PIL import Image

from kartka.db import Connection, Pool
from tests.helpers import sign_in

Client = AsyncTestClient[Litestar]
PHONE = "+375291234567"


async def registered(client: Client, pos: dict[str, str], conn: Connection) -> tuple[str, str]:
    """A till registration: the card number and the page token its SMS carries."""
    card = (await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)).json()["card"]["number"]
    url = await conn.fetchval("SELECT params->>'url' FROM outbox WHERE template = 'card_link'")
    return card, url.rsplit("/c/", 1)[1]


def qr_of(page: str) -> str:
    svg = re.search(r"<svg.*?</svg>", page, re.DOTALL)
    assert svg is not None
    png = bytes(resvg_py.svg_to_bytes(svg_string=svg[0], width=600))
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(decoded) == 1
    text: str = decoded[0].text
    return text


async def test_the_page_shows_the_card_and_its_wallet_buttons(
    client: Client, pos: dict[str, str], conn: Connection
) -> None:
    card, token = await registered(client, pos, conn)
    response = await client.get(f"/c/{token}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in response.headers["x-robots-tag"]
    page = response.text
    assert '<html lang="ru">' in page
    assert qr_of(page) == card  # the QR the till scans
    assert f"{card[0]} {card[1:7]} {card[7:]}" in page
    assert "Доступно" in page
    assert "0 баллов" in page
    assert "Standart" in page
    assert f'href="/c/{token}/pass.pkpass"' in page
    assert f'href="/c/{token}/google"' in page
    english = await client.get(f"/c/{token}", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in english.text
    assert "Add to Apple Wallet" in english.text
    assert (
        '<html lang="ru">'
        in (await client.get(f"/c/{token}", params={"lang": "ru"}, headers={"Accept-Language": "en"})).text
    )


async def test_the_buttons_give_the_pass_and_the_google_link(
    client: Client, pos: dict[str, str], conn: Connection
) -> None:
    card, token = await registered(client, pos, conn)
    apple = await client.get(f"/c/{token}/pass.pkpass")
    assert apple.status_code == 200
    assert apple.headers["content-type"] == "application/vnd.apple.pkpass"
    with zipfile.ZipFile(io.BytesIO(apple.content)) as pkpass:
        assert "signature" in pkpass.namelist()
    google = await client.get(f"/c/{token}/google", follow_redirects=False)
    assert google.status_code == 303
    assert google.headers["location"].startswith("https://pay.google.com/gp/v/save/")
    assert google.headers["referrer-policy"] == "no-referrer"
    assert await conn.fetchval("SELECT google_linked_at FROM passes WHERE serial_number = $1", card) is not None


async def test_an_unknown_or_rotated_link_finds_nothing(
    client: Client, pool: Pool, pos: dict[str, str], conn: Connection
) -> None:
    _, token = await registered(client, pos, conn)
    for bad in ("0" * 32, "nope", "../../etc/passwd"):
        response = await client.get(f"/c/{bad}")
        assert response.status_code == 404
        assert "<svg" not in response.text
    assert (await client.get("/c/" + "0" * 32 + "/pass.pkpass")).status_code == 404
    signed = await sign_in(client, pool, PHONE)
    current = await client.get("/v1/me/card/page-link", headers=signed["headers"])
    assert current.json()["url"].endswith(f"/c/{token}")
    rotated = await client.post("/v1/me/card/page-link", headers=signed["headers"])
    assert rotated.status_code == 201
    new_token = rotated.json()["url"].rsplit("/c/", 1)[1]
    assert new_token != token
    assert (await client.get(f"/c/{token}")).status_code == 404
    assert (await client.get(f"/c/{new_token}")).status_code == 200


async def test_a_replaced_card_page_says_so(client: Client, pos: dict[str, str], conn: Connection, keys: Any) -> None:
    from kartka.keys import Scope  # noqa: PLC0415

    card, token = await registered(client, pos, conn)
    await client.post(f"/v1/admin/cards/{card}/replace", headers=await keys.headers(Scope.ADMIN))
    page = (await client.get(f"/c/{token}")).text
    assert "больше не действует" in page
    assert "<svg" not in page


async def test_the_logo_is_served_for_google(client: Client) -> None:
    logo = await client.get("/assets/logo@3x.png")
    assert logo.status_code == 200
    assert logo.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(logo.content)).size == (480, 150)
    assert (await client.get("/assets/secret.pem")).status_code == 404


async def test_an_unknown_link_promises_no_card_and_the_page_cannot_be_framed(client: Client) -> None:
    """A mistyped link is not a replaced card: it must not say that a new card is on its way."""
    ru = await client.get("/c/" + "0" * 32)
    assert ru.status_code == 404
    assert "карты нет" in ru.text
    assert "придёт" not in ru.text
    en = await client.get("/c/" + "0" * 32, headers={"Accept-Language": "en"})
    assert "no card behind this link" in en.text
    assert "comes by SMS" not in en.text
    assert ru.headers["content-type"] == "text/html; charset=utf-8"
    assert ru.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in ru.headers["content-security-policy"]
    assert "form-action 'none'" in ru.headers["content-security-policy"]

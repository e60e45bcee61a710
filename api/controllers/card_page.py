"""The card page behind the link the registration SMS carries: ``/c/{token}``.

A mobile-first page in Russian or English with the card's QR code (inline SVG, so it works offline
once loaded), the number, the balance and the tier, and the "Add to Apple Wallet" / "Add to Google
Wallet" buttons. The token is 128 random bits, rotated by the shopper (``POST /v1/me/card/page-link``)
or when the card closes. The page sends no Referer, so following a button does not hand the token to
Google or Apple (the passes themselves carry the link on their back, for the shopper), and nothing on
it is cached or indexed.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from string import Template
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, PathParameter, QueryParameter
from litestar.response import Redirect

from api.request import preferred_language
from api.state import provide_conn, provide_tx, services_of
from kartka.db import Connection
from kartka.errors import NotFound
from wallet.barcodes import Symbology, svg_inline
from wallet.models import BalanceView, CardStatus, TierView
from wallet.passes.apple import DEFAULT_ASSETS, IMAGES
from wallet.passes.service import PKPASS_MEDIA_TYPE, PageCard
from wallet.passes.setup import ASSETS_PATH
from wallet.program import Program
from wallet.texts import format_date, format_points, points

PageToken = Annotated[str, PathParameter(max_length=64)]
_TOKEN: Final = re.compile(r"^[0-9a-f]{32}$")
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}

_TEXT: Final[dict[str, dict[str, str]]] = {
    "ru": {
        "title": "Карта лояльности",
        "show": "Покажите QR-код на кассе — баллы начислятся и спишутся по этой карте.",
        "available": "Доступно",
        "pending": "Ожидают начисления",
        "pending_from": "с",
        "expiring": "Скоро сгорят",
        "expiring_on": "до",
        "tier": "Уровень",
        "to_next": "До уровня {tier}: ещё {amount}",
        "apple": "Добавить в Apple Wallet",
        "google": "Добавить в Google Wallet",
        "wallet_note": "В кошельке телефона карта обновляется сама: баланс и уровень всегда актуальны.",
        "inactive": "Эта карта больше не действует. Новая карта придёт в SMS или в приложении.",
        "other": "English",
    },
    "en": {
        "title": "Loyalty card",
        "show": "Show the QR code at the till: points are earned and spent on this card.",
        "available": "Available",
        "pending": "Pending",
        "pending_from": "from",
        "expiring": "Expiring soon",
        "expiring_on": "on",
        "tier": "Tier",
        "to_next": "To {tier}: {amount} more",
        "apple": "Add to Apple Wallet",
        "google": "Add to Google Wallet",
        "wallet_note": "In your phone's wallet the card updates itself: balance and tier stay current.",
        "inactive": "This card is no longer valid. Your new card comes by SMS or in the app.",
        "other": "Русский",
    },
}

_PAGE: Final = Template("""<!doctype html>
<html lang="$lang"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow"><meta name="referrer" content="no-referrer">
<title>$title</title>
<style>
 body{font-family:system-ui,-apple-system,sans-serif;margin:0;background:#f4f1ea;color:#1d1d1b}
 main{max-width:26rem;margin:0 auto;padding:1.25rem}
 .lang{float:right;color:#105e46} h1{font-size:1.4rem;margin:.2rem 0 1rem}
 .card{background:#105e46;color:#fff;border-radius:1rem;padding:1.25rem;box-shadow:0 .4rem 1rem #0002}
 .qr{background:#fff;border-radius:.75rem;padding:.75rem;margin:0 auto;max-width:15rem}
 .qr svg{display:block;width:100%;height:auto}
 .number{font:600 1.3rem ui-monospace,monospace;letter-spacing:.08em;text-align:center;margin:.8rem 0 0}
 .figures{display:grid;grid-template-columns:1fr 1fr;gap:.75rem;margin:1rem 0}
 .figure{background:#fff;border-radius:.75rem;padding:.75rem}
 .figure b{display:block;font-size:1.35rem} .figure small{color:#555}
 .wallet{display:block;text-align:center;text-decoration:none;font-size:1.05rem;padding:.85rem;
  border-radius:.6rem;margin:.6rem 0;color:#fff}
 .apple{background:#000} .google{background:#1a73e8}
 .note{color:#555;font-size:.9rem}
</style></head>
<body><main><a class="lang" href="?lang=$other_lang">$other</a><h1>$title</h1>$body</main></body></html>""")


def _figures(balance: BalanceView, tier: TierView, program: Program, language: str) -> list[tuple[str, str, str]]:
    """(label, value, note) for each figure the page shows."""
    text = _TEXT[language]

    def day(moment: datetime | None, prefix: str) -> str:
        return f"{prefix} {format_date(moment.astimezone(program.zone).date(), language)}" if moment else ""

    figures = [(text["available"], points(balance.available, language), "")]
    if balance.pending:
        figures.append(
            (text["pending"], points(balance.pending, language), day(balance.next_available_at, text["pending_from"]))
        )
    if balance.expiring_soon.points:
        expiring = balance.expiring_soon
        figures.append((text["expiring"], points(expiring.points, language), day(expiring.at, text["expiring_on"])))
    progress = ""
    if tier.next is not None and tier.to_next is not None:
        amount = f"{format_points(tier.to_next, language)} {program.currency}"
        progress = text["to_next"].format(tier=tier.next.name, amount=amount)
    figures.append((text["tier"], tier.name, progress))
    return figures


def _group(number: str) -> str:
    """``2000000000017`` as printed under an EAN-13: ``2 000000 000017``."""
    return f"{number[0]} {number[1:7]} {number[7:]}" if len(number) == 13 else number


async def _active_card(request: Request[Any, Any, State], conn: Connection, token: str) -> PageCard:
    """The card behind the link, for its wallet buttons: only while it is the shopper's card."""
    card = await services_of(request.app.state).passes.page_card(conn, token)
    if card is None or card.status != CardStatus.ACTIVE:
        raise NotFound("there is no valid card behind this link (it may have been renewed)", field="token")
    return card


def _html(body: str, lang: str, status: int = 200) -> Response[str]:
    text = _TEXT[lang]
    other = "en" if lang == "ru" else "ru"
    page = _PAGE.substitute(
        lang=lang, title=html.escape(text["title"]), other_lang=other, other=text["other"], body=body
    )
    return Response(page, status_code=status, media_type="text/html; charset=utf-8", headers=_HEADERS)


class CardPageController(Controller):
    path = "/c"
    include_in_schema = False
    dependencies = {"conn": Provide(provide_conn), "tx": Provide(provide_tx)}  # noqa: RUF012

    @get("/{token:str}", media_type="text/html")
    async def page(
        self,
        token: PageToken,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        lang: Annotated[str | None, QueryParameter(required=False, max_length=5)] = None,
    ) -> Response[str]:
        services = services_of(request.app.state)
        card = await services.passes.page_card(conn, token)
        if card is None:
            language = preferred_language(request, lang) or services.program.language
            return _html(f"<p>{html.escape(_TEXT[language]['inactive'])}</p>", language, 404)
        language = preferred_language(request, lang) or card.language or services.program.language
        text = _TEXT[language]
        if card.status != CardStatus.ACTIVE:
            return _html(f"<p>{html.escape(text['inactive'])}</p>", language)
        who = await services.customers.identify_customer(conn, card.customer_id, services.clock.now())
        cells = "".join(
            f'<div class="figure"><small>{html.escape(label)}</small><b>{html.escape(value)}</b>'
            f"<small>{html.escape(note)}</small></div>"
            for label, value, note in _figures(who.balance, who.tier, services.program, language)
        )
        buttons = ""
        if services.passes.setup.apple is not None:
            buttons += f'<a class="wallet apple" href="/c/{token}/pass.pkpass">{html.escape(text["apple"])}</a>'
        if services.passes.setup.google is not None:
            buttons += f'<a class="wallet google" href="/c/{token}/google">{html.escape(text["google"])}</a>'
        note = f'<p class="note">{html.escape(text["wallet_note"])}</p>' if buttons else ""
        body = (
            f'<div class="card"><div class="qr">{svg_inline(card.number, Symbology.QR)}</div>'
            f'<p class="number">{_group(card.number)}</p></div>'
            f'<p class="note">{html.escape(text["show"])}</p><div class="figures">{cells}</div>{buttons}{note}'
        )
        return _html(body, language)

    @get("/{token:str}/pass.pkpass", media_type=PKPASS_MEDIA_TYPE)
    async def apple_pass(
        self, token: PageToken, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Response[bytes]:
        services = services_of(request.app.state)
        card = await _active_card(request, tx, token)
        body, _ = await services.passes.apple_pass(tx, card.number, services.clock.now())
        return Response(
            body,
            media_type=PKPASS_MEDIA_TYPE,
            headers=_HEADERS | {"Content-Disposition": 'attachment; filename="kartka.pkpass"'},
        )

    @get("/{token:str}/google", status_code=303)
    async def google_pass(
        self, token: PageToken, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Redirect:
        services = services_of(request.app.state)
        card = await _active_card(request, tx, token)
        url = await services.passes.google_save_url(tx, card.number, services.clock.now())
        return Redirect(url, status_code=303, headers=_HEADERS)


class PassAssetsController(Controller):
    """The pass images, public: Google Wallet fetches the logo from here."""

    path = ASSETS_PATH
    include_in_schema = False

    @get("/{name:str}", media_type="image/png")
    async def image(self, name: FromPath[str]) -> Response[bytes]:
        if name not in IMAGES:
            raise NotFound(f"no image {name!r}", field="name")
        return Response(
            (DEFAULT_ASSETS / name).read_bytes(),
            media_type="image/png",
            headers={"Cache-Control": "public, max-age=86400"},
        )

"""The card page behind the link the registration SMS carries: ``/c/{token}``.

A mobile-first page in Russian or English with the card's QR code (inline SVG, so it works offline
once loaded), the number, the balance and the tier, and the "Add to Apple Wallet" / "Add to Google
Wallet" buttons. The token is 128 random bits, rotated by the shopper (``POST /v1/me/card/page-link``)
or when the card closes. The page sends no Referer, so following a button does not hand the token to
Google or Apple (the passes themselves carry the link on their back, for the shopper), and nothing on
it is cached or indexed.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, PathParameter, QueryParameter
from litestar.response import Redirect, Template
from markupsafe import Markup

from api.pages import page_language, render, security_headers
from api.state import provide_conn, provide_tx, services_of
from kartka.db import Connection
from kartka.errors import NotFound
from kartka.texts import format_date, format_points, points, text
from wallet.barcodes import Symbology, svg_inline
from wallet.models import BalanceView, CardStatus, TierView
from wallet.passes.apple import DEFAULT_ASSETS, IMAGES
from wallet.passes.service import PKPASS_MEDIA_TYPE, PageCard
from wallet.passes.setup import ASSETS_PATH
from wallet.program import Program

PageToken = Annotated[str, PathParameter(max_length=64)]
_TOKEN: Final = re.compile(r"^[0-9a-f]{32}$")
_HEADERS: Final = security_headers(forms=False)


class Figure(msgspec.Struct, frozen=True):
    label: str
    value: str
    note: str = ""


def _figures(balance: BalanceView, tier: TierView, program: Program, language: str) -> list[Figure]:
    """The balance, what is pending and expiring, and the tier with the way to the next."""

    def day(moment: datetime | None, key: str) -> str:
        return text(language, key, date=format_date(moment.astimezone(program.zone).date(), language)) if moment else ""

    figures = [Figure(text(language, "page.card.available"), points(balance.available, language))]
    if balance.pending:
        figures.append(
            Figure(
                text(language, "page.card.pending"),
                points(balance.pending, language),
                day(balance.next_available_at, "page.card.pending_from"),
            )
        )
    if balance.expiring_soon.points:
        expiring = balance.expiring_soon
        figures.append(
            Figure(
                text(language, "page.card.expiring"),
                points(expiring.points, language),
                day(expiring.at, "page.card.expiring_on"),
            )
        )
    progress = ""
    if tier.next is not None and tier.to_next is not None:
        amount = format_points(tier.to_next, language)
        progress = text(language, "page.card.to_next", tier=tier.next.name, amount=amount, currency=program.currency)
    figures.append(Figure(text(language, "page.card.tier"), tier.name, progress))
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
    ) -> Template:
        services = services_of(request.app.state)
        card = await services.passes.page_card(conn, token)
        if card is None:  # a mistyped or rotated link: nothing says a card is on its way
            language = page_language(request, lang, services.program.language)
            return render("card.html", language, {"message": "page.card.unknown"}, status=404)
        language = page_language(request, lang, card.language, services.program.language)
        if card.status != CardStatus.ACTIVE:
            return render("card.html", language, {"message": "page.card.inactive"})
        who = await services.customers.identify_customer(conn, card.customer_id, services.clock.now())
        context = {
            "message": None,
            "token": token,
            # Our own SVG (wallet.barcodes), drawn from the card number: markup to keep, not text to escape.
            "qr": Markup(svg_inline(card.number, Symbology.QR)),  # noqa: S704
            "number": _group(card.number),
            "figures": _figures(who.balance, who.tier, services.program, language),
            "apple": services.passes.setup.apple is not None,
            "google": services.passes.setup.google is not None,
        }
        return render("card.html", language, context)

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

"""The shopper's app: their profile, card, balance and history, notification choices and devices.

Every endpoint takes the access token from ``POST /v1/auth/token`` and acts on its own customer only.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import SHOPPER_SCHEME, require_shopper, shopper_of
from api.controllers.images import barcode_response
from api.errors import problems
from api.state import provide_conn, provide_tx, services_of
from kartka.db import Connection
from notifications.devices import Device, DeviceInput, forget_device, register_device
from notifications.preferences import Preferences, get_preferences, set_preferences
from wallet import account, ledger
from wallet.account import Me, ProfileUpdate
from wallet.barcodes import ImageType, Symbology
from wallet.ledger import TransactionPage
from wallet.passes.service import PKPASS_MEDIA_TYPE
from wallet.qrtokens import QrToken


class SaveLink(msgspec.Struct, frozen=True):
    save_url: str


class PageLink(msgspec.Struct, frozen=True):
    url: str


class MeController(Controller):
    path = "/v1/me"
    tags = ["app"]  # noqa: RUF012
    before_request = require_shopper
    security = [{SHOPPER_SCHEME: []}]  # noqa: RUF012
    dependencies = {"tx": Provide(provide_tx), "conn": Provide(provide_conn)}  # noqa: RUF012

    @get(
        "/",
        operation_id="appMe",
        summary="The shopper: profile, card, tier and balance (the same figures the till sees)",
        responses=problems(401, 404),
    )
    async def me(self, conn: NamedDependency[Connection], request: Request[Any, Any, State]) -> Me:
        services = services_of(request.app.state)
        return await account.me(conn, services.customers, shopper_of(request).subject, services.clock.now())

    @patch(
        "/",
        operation_id="appUpdateMe",
        summary="Change name, e-mail, birthday (the birthday bonus uses it) or language",
        description="Fields left out stay as they are; `null` clears name, e-mail or birthday.",
        responses=problems(401, 404, 422),
    )
    async def update(
        self, data: JSONBody[ProfileUpdate], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Me:
        services = services_of(request.app.state)
        customer = shopper_of(request).subject
        return await account.update_profile(tx, services.customers, customer, data, services.clock.now())

    @delete(
        "/",
        operation_id="appCloseAccount",
        summary="Close the account: personal data erased, remaining points forfeited, card and passes voided",
        status_code=204,
        responses=problems(401),
    )
    async def close(self, tx: NamedDependency[Connection], request: Request[Any, Any, State]) -> None:
        services = services_of(request.app.state)
        await account.close_account(tx, services.customers, shopper_of(request).subject, services.clock.now())

    @get(
        "/transactions",
        operation_id="appTransactions",
        summary="The points history, newest first: kind, points, order, when points become available or expire",
        responses=problems(401, 422),
    )
    async def transactions(
        self,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> TransactionPage:
        return await ledger.transactions(conn, shopper_of(request).subject, cursor=cursor, limit=limit)

    @get(
        "/card/qr-token",
        operation_id="appQrToken",
        summary="A short-lived signed code for the in-app QR; tills accept it wherever they accept a scan",
        responses=problems(401, 404),
    )
    async def qr_token(self, conn: NamedDependency[Connection], request: Request[Any, Any, State]) -> Response[QrToken]:
        services = services_of(request.app.state)
        now = services.clock.now()
        who = await services.customers.identify_customer(conn, shopper_of(request).subject, now)
        return Response(services.qr_tokens.issue(who.card.number, now), headers={"Cache-Control": "no-store"})

    @get(
        "/card/barcode",
        operation_id="appCardBarcode",
        summary="The card as an image for the till's scanner: QR, Code128, EAN-13 or PDF417, PNG or SVG",
        description="Cacheable: the ETag changes only with the card number (a replaced card), so a "
        "conditional request (`If-None-Match`) is answered 304.",
        media_type="image/*",  # image/png or image/svg+xml, as `type` asks
        response_headers=[ResponseHeader(name="ETag", description="The image's entity tag", documentation_only=True)],
        responses=problems(401, 404)
        | {304: ResponseSpec(data_container=None, description="If-None-Match names this image: keep yours")},
    )
    async def barcode(
        self,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        symbology: Annotated[Symbology, QueryParameter(name="format")] = Symbology.QR,
        image_type: Annotated[ImageType, QueryParameter(name="type")] = ImageType.PNG,
    ) -> Response[bytes]:
        services = services_of(request.app.state)
        who = await services.customers.identify_customer(conn, shopper_of(request).subject, services.clock.now())
        return barcode_response(request, who.card.number, symbology, image_type)

    @get(
        "/card/apple-pass",
        operation_id="appApplePass",
        summary="The card as an Apple Wallet pass (.pkpass) that updates itself when balance or tier change",
        media_type=PKPASS_MEDIA_TYPE,
        responses=problems(401, 404),
    )
    async def apple_pass(self, tx: NamedDependency[Connection], request: Request[Any, Any, State]) -> Response[bytes]:
        services = services_of(request.app.state)
        now = services.clock.now()
        who = await services.customers.identify_customer(tx, shopper_of(request).subject, now)
        body, _ = await services.passes.apple_pass(tx, who.card.number, now)
        return Response(
            body,
            media_type=PKPASS_MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="kartka.pkpass"', "Cache-Control": "no-store"},
        )

    @get(
        "/card/google-pass",
        operation_id="appGooglePass",
        summary='An "Add to Google Wallet" link; the saved card is then kept up to date',
        description="The card's object is inserted through Google's API first and the link only names it "
        "(well under 2,000 characters). 503 `google-wallet-unavailable` with `Retry-After` when Google "
        "does not answer in time.",
        responses=problems(401, 404, 503),
    )
    async def google_pass(self, tx: NamedDependency[Connection], request: Request[Any, Any, State]) -> SaveLink:
        services = services_of(request.app.state)
        now = services.clock.now()
        who = await services.customers.identify_customer(tx, shopper_of(request).subject, now)
        return SaveLink(save_url=await services.passes.google_save_url(tx, who.card.number, now))

    @get(
        "/card/page-link",
        operation_id="appCardPageLink",
        summary="The card page's address (the link the registration SMS carried)",
        responses=problems(401, 404),
    )
    async def page_link(self, conn: NamedDependency[Connection], request: Request[Any, Any, State]) -> PageLink:
        services = services_of(request.app.state)
        return PageLink(url=await services.passes.page_link(conn, shopper_of(request).subject))

    @post(
        "/card/page-link",
        operation_id="appRotateCardPageLink",
        summary="Give the card page a new address; the old link stops working at once",
        description="The wallet pass handed out so far is retired as well (void on the phones holding "
        "it, never updated again); the next download makes a new pass with a new serial and token.",
        status_code=201,
        responses=problems(401, 404),
    )
    async def rotate_page_link(self, tx: NamedDependency[Connection], request: Request[Any, Any, State]) -> PageLink:
        services = services_of(request.app.state)
        return PageLink(
            url=await services.passes.rotate_page_link(tx, shopper_of(request).subject, services.clock.now())
        )

    @get(
        "/preferences",
        operation_id="appGetPreferences",
        summary="Notification choices: channels in order of preference, marketing consent, quiet hours",
        responses=problems(401),
    )
    async def preferences(self, conn: NamedDependency[Connection], request: Request[Any, Any, State]) -> Preferences:
        services = services_of(request.app.state)
        return await get_preferences(conn, shopper_of(request).subject, services.program)

    @put(
        "/preferences",
        operation_id="appPutPreferences",
        summary="Replace the notification choices (marketing is opt-in)",
        responses=problems(401, 422),
    )
    async def put_preferences(
        self, data: JSONBody[Preferences], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Preferences:
        services = services_of(request.app.state)
        return await set_preferences(tx, shopper_of(request).subject, data, services.clock.now())

    @post(
        "/devices",
        operation_id="appRegisterDevice",
        summary="Register this phone for app push: the APNs (ios) or FCM (android) token",
        description="201 for a new device, 200 when it was registered already.",
        status_code=201,
        responses=problems(401, 422),
    )
    async def add_device(
        self, data: JSONBody[DeviceInput], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Response[Device]:
        services = services_of(request.app.state)
        device, new = await register_device(tx, shopper_of(request).subject, data, services.clock.now())
        return Response(device, status_code=201 if new else 200)

    @delete(
        "/devices/{token:str}",
        operation_id="appForgetDevice",
        summary="Stop app push to this phone",
        status_code=204,
        responses=problems(401, 404),
    )
    async def remove_device(
        self, token: FromPath[str], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> None:
        await forget_device(tx, shopper_of(request).subject, token)

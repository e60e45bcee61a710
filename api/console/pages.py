"""The staff console's pages (``/console``): server-rendered with Jinja, htmx for partial updates.

Thin like every controller: read the form, check the session and its form token, call the service the
admin API calls, render. A domain error is shown on the page it came from, in the person's language
where the console knows the case, else with the service's own message; after a change the browser is
sent back to the page (post, redirect, get) with a one-time notice.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from api.console.kit import (
    app_services,
    back_with_notice,
    current_staff,
    is_htmx,
    language,
    render,
    safe_next,
    sessions_of,
    signed_in,
    stale_form,
    status_of,
    transaction,
    wants_partial,
    whole_number,
)
from api.console.session import PATH, StaffSession
from api.console.texts import text
from api.request import client_address
from api.state import Services
from kartka.db import Connection
from kartka.errors import DomainError, RateLimited
from kartka.staff import (
    Permission,
    Role,
    WrongCredentials,
    create_staff,
    disable_staff,
    list_staff,
    staff_stores,
    unlock_staff,
)
from kartka.texts import format_points
from kartka.tokens import Audience, end_session
from notifications.history import messages_for
from wallet import ledger, support
from wallet.customers import Origin
from wallet.errors import CustomerNotFound
from wallet.grants import GrantInput, grant
from wallet.models import Source
from wallet.money import parse_points
from wallet.stores import Location, StoreInput, list_stores, put_store

_HISTORY_PAGE: Final = 20
#: What the grant form suggests: quick-expiring goodwill points (seed 003), changed as needed.
GRANT_DAYS: Final = 30


# -- sign-in ------------------------------------------------------------------------------------


class SignInForm(msgspec.Struct):
    username: str = ""
    password: str = ""
    csrf_token: str = ""
    next: str = ""


class ConsoleSignInController(Controller):
    path = f"{PATH}/sign-in"
    include_in_schema = False

    def _form(
        self, request: Request[Any, Any, Any], *, status: int = 200, error: str | None = None, username: str = ""
    ) -> Template:
        sessions = sessions_of(request)
        nonce, cookie = sessions.login_nonce(request)
        why = request.query_params.get("why")
        notice = {"idle": "signin.idle", "out": "signin.signed_out"}.get(why or "")
        return render(
            request,
            "console/signin.html",
            status=status,
            cookies=[cookie],
            signin_csrf=sessions.login_csrf(nonce),
            error=error,
            notice=notice,
            username=username,
            next=safe_next(request.query_params.get("next")),
        )

    @get("/", media_type="text/html")
    async def page(self, request: Request[Any, Any, State]) -> Template:
        return self._form(request)

    @post("/", media_type="text/html", status_code=200)
    async def sign_in(self, request: Request[Any, Any, State], data: URLEncodedBody[SignInForm]) -> Response[Any]:
        sessions = sessions_of(request)
        services = app_services(request)
        lang = language(request)
        if not sessions.accepts(request, data.csrf_token, None):
            return self._form(request, status=403, error=text(lang, "signin.stale"), username=data.username)
        try:
            signed = await services.staff_signin.login(
                data.username[:64], data.password[:1024], client=client_address(request)
            )
        except WrongCredentials:
            return self._form(request, status=401, error=text(lang, "signin.wrong"), username=data.username)
        except RateLimited as exc:
            minutes = max(1, math.ceil(exc.retry_after / 60))
            response = self._form(
                request, status=429, error=text(lang, "signin.limited", minutes=minutes), username=data.username
            )
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        claims = services.tokens.verify(signed.access_token, Audience.STAFF)
        session = StaffSession(
            session=claims.session,
            staff=claims.subject,
            username=signed.username,
            role=signed.role,
            seen=int(services.clock.now().timestamp()),
        )
        target = safe_next(data.next)
        return Redirect(target, status_code=303, cookies=[sessions.cookie(session)])


class SignOutForm(msgspec.Struct):
    csrf_token: str = ""


class ConsoleController(Controller):
    path = PATH
    include_in_schema = False
    before_request = signed_in()

    @get("/", media_type="text/html")
    async def home(self, request: Request[Any, Any, State]) -> Template:
        return render(request, "console/home.html")

    @post("/sign-out", media_type="text/html", status_code=200)
    async def sign_out(self, request: Request[Any, Any, State], data: URLEncodedBody[SignOutForm]) -> Response[Any]:
        session = current_staff(request)
        sessions = sessions_of(request)
        if not sessions.accepts(request, data.csrf_token, session):
            return stale_form(request)
        async with transaction(request) as tx:
            await end_session(tx, session.session, app_services(request).clock.now(), "signed out of the console")
        target = f"{PATH}/sign-in?why=out"
        if is_htmx(request):
            return Response(b"", headers={"HX-Redirect": target}, cookies=[sessions.gone()])
        return Redirect(target, status_code=303, cookies=[sessions.gone()])


# -- shoppers -----------------------------------------------------------------------------------


class GrantForm(msgspec.Struct):
    points: str = ""
    expires_in_days: str = ""
    reason: str = ""
    csrf_token: str = ""


class CardForm(msgspec.Struct):
    card: str = ""
    confirm: str = ""
    csrf_token: str = ""


class AttachForm(msgspec.Struct):
    number: str = ""
    csrf_token: str = ""


CustomerId = FromPath[UUID]


class ConsoleCustomerController(Controller):
    path = f"{PATH}/customers"
    include_in_schema = False
    before_request = signed_in(Permission.CARDS)

    @get("/", media_type="text/html")
    async def search(
        self,
        request: Request[Any, Any, State],
        q: Annotated[str, QueryParameter(max_length=200)] = "",
    ) -> Template:
        services = app_services(request)
        async with services.pool.acquire() as conn:
            matches = await support.find_customers(conn, services.customers, q)
        # htmx asks for the results only while the person types; the whole page otherwise.
        name = "console/customer_results.html" if wants_partial(request, "results") else "console/customers.html"
        return render(request, name, q=q.strip(), matches=matches)

    async def _page(
        self,
        request: Request[Any, Any, State],
        customer_id: UUID,
        *,
        status: int = 200,
        error: str | None = None,
        form: dict[str, str] | None = None,
        before: str | None = None,
    ) -> Response[Any]:
        services = app_services(request)
        now = services.clock.now()
        try:
            async with services.pool.acquire() as conn:
                file = await support.shopper_file(conn, services.customers, customer_id, now)
                history = await ledger.transactions(conn, customer_id, cursor=before, limit=_HISTORY_PAGE)
                messages = await messages_for(conn, customer_id)
        except CustomerNotFound as exc:
            merged = exc.extra.get("merged_into")
            if merged:
                return Redirect(f"{PATH}/customers/{merged}", status_code=303)
            return render(request, "console/message.html", status=404, title="notfound.title", body=None)
        if before is not None and wants_partial(request, "history-more"):
            return render(request, "console/history_rows.html", history=history, customer=file)
        session = current_staff(request)
        return render(
            request,
            "console/customer.html",
            status=status,
            customer=file,
            history=history,
            messages=messages,
            error=error,
            form=form or {},
            may_grant=session.may(Permission.GRANT_POINTS),
            may_cards=session.may(Permission.CARDS),
            grant_days=GRANT_DAYS,
        )

    @get("/{customer_id:uuid}", media_type="text/html")
    async def show(
        self,
        customer_id: CustomerId,
        request: Request[Any, Any, State],
        before: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> Response[Any]:
        return await self._page(request, customer_id, before=before)

    async def _act(
        self,
        request: Request[Any, Any, State],
        customer_id: UUID,
        token: str,
        form: dict[str, str],
        action: Callable[[Connection], Awaitable[str]],
    ) -> Response[Any]:
        """Check the form token, run ``action`` in one transaction, and go back to the shopper's page
        with its notice, or show the page again with the error (nothing of the action is kept)."""
        if not sessions_of(request).accepts(request, token, current_staff(request)):
            return stale_form(request)
        try:
            async with transaction(request) as tx:
                notice = await action(tx)
        except _FormError as exc:
            return await self._page(request, customer_id, status=422, error=exc.message, form=form)
        except DomainError as exc:
            message = text(language(request), "error", message=exc.message)
            return await self._page(request, customer_id, status=status_of(exc), error=message, form=form)
        return back_with_notice(request, f"{PATH}/customers/{customer_id}", notice)

    @post(
        "/{customer_id:uuid}/grant",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.GRANT_POINTS),
    )
    async def grant(
        self, customer_id: CustomerId, request: Request[Any, Any, State], data: URLEncodedBody[GrantForm]
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)
        session = current_staff(request)

        async def action(tx: Connection) -> str:
            try:
                points = parse_points(data.points)
            except ValueError:
                raise _FormError(text(lang, "grant.bad_points")) from None
            days = whole_number(data.expires_in_days)
            if days is None:
                raise _FormError(text(lang, "grant.bad_days"))
            try:
                wanted = msgspec.convert({"points": points, "expires_in_days": days, "reason": data.reason}, GrantInput)
            except msgspec.ValidationError as exc:
                raise _FormError(text(lang, "error", message=str(exc))) from None
            done = await grant(
                tx,
                services.program,
                services.clock,
                services.customers.events,
                customer_id,
                wanted,
                actor=f"staff:{session.staff}",
            )
            return text(
                lang, "grant.done", points=format_points(done.points, lang), when=_date(done.expires_at, services)
            )

        form = {"points": data.points, "expires_in_days": data.expires_in_days, "reason": data.reason}
        return await self._act(request, customer_id, data.csrf_token, form, action)

    @post("/{customer_id:uuid}/block", media_type="text/html", status_code=200)
    async def block(
        self, customer_id: CustomerId, request: Request[Any, Any, State], data: URLEncodedBody[CardForm]
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)

        async def action(tx: Connection) -> str:
            if data.confirm != "yes":
                raise _FormError(text(lang, "confirm_needed"))
            await _own_card(tx, services, customer_id, data.card)
            card = await services.customers.block_card(tx, data.card, now=services.clock.now())
            return text(lang, "block.done", card=card.number)

        return await self._act(request, customer_id, data.csrf_token, {}, action)

    @post("/{customer_id:uuid}/replace", media_type="text/html", status_code=200)
    async def replace(
        self, customer_id: CustomerId, request: Request[Any, Any, State], data: URLEncodedBody[CardForm]
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)

        async def action(tx: Connection) -> str:
            if data.confirm != "yes":
                raise _FormError(text(lang, "confirm_needed"))
            await _own_card(tx, services, customer_id, data.card)
            done = await services.customers.replace_card(tx, data.card, now=services.clock.now())
            return text(lang, "replace.done", card=done.card.number, old=done.replaced_card.number)

        return await self._act(request, customer_id, data.csrf_token, {}, action)

    @post("/{customer_id:uuid}/resend", media_type="text/html", status_code=200)
    async def resend(
        self, customer_id: CustomerId, request: Request[Any, Any, State], data: URLEncodedBody[CardForm]
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)

        async def action(tx: Connection) -> str:
            number = await support.resend_card_link(tx, services.customers, customer_id, services.clock.now())
            return text(lang, "resend.done", card=number)

        return await self._act(request, customer_id, data.csrf_token, {}, action)

    @post("/{customer_id:uuid}/attach", media_type="text/html", status_code=200)
    async def attach(
        self, customer_id: CustomerId, request: Request[Any, Any, State], data: URLEncodedBody[AttachForm]
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)
        session = current_staff(request)

        async def action(tx: Connection) -> str:
            customer = await services.customers.get_customer(tx, customer_id)
            if customer.phone is None:
                raise _FormError(text(lang, "error", message="this shopper has no phone to attach a card to"))
            done = await services.customers.attach_card(
                tx,
                number=data.number,
                phone=customer.phone,
                origin=Origin(source=Source.MANUAL, actor=f"staff:{session.staff}"),
                now=services.clock.now(),
            )
            return text(lang, "attach.done", card=done.replaced_card.number if done.replaced_card else done.card.number)

        return await self._act(request, customer_id, data.csrf_token, {"number": data.number}, action)


class _FormError(Exception):
    """Input the console itself could not read (before any service was asked)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _own_card(tx: Connection, services: Services, customer_id: UUID, number: str) -> None:
    """The card a form names must be this shopper's: a stale page must not act on someone else's card."""
    customer, _ = await services.customers.resolve(tx, number) if number else (None, None)
    if customer is None or customer.id != customer_id:
        raise CustomerNotFound(f"card {number} is not this shopper's card", field="card")


def _date(moment: datetime, services: Services) -> str:
    return moment.astimezone(services.program.zone).strftime("%d.%m.%Y")


# -- stores and staff (admin) -------------------------------------------------------------------


class StoreForm(msgspec.Struct):
    code: str = ""
    name: str = ""
    timezone: str = ""
    latitude: str = ""
    longitude: str = ""
    csrf_token: str = ""


class ConsoleStoreController(Controller):
    path = f"{PATH}/stores"
    include_in_schema = False
    before_request = signed_in(Permission.STORES)

    async def _page(
        self, request: Request[Any, Any, State], *, status: int = 200, error: str | None = None, form: Any = None
    ) -> Template:
        async with app_services(request).pool.acquire() as conn:
            stores = await list_stores(conn)
        return render(request, "console/stores.html", status=status, stores=stores, error=error, form=form)

    @get("/", media_type="text/html")
    async def index(self, request: Request[Any, Any, State]) -> Template:
        return await self._page(request)

    @post("/", media_type="text/html", status_code=200)
    async def save(self, request: Request[Any, Any, State], data: URLEncodedBody[StoreForm]) -> Response[Any]:
        lang = language(request)
        if not sessions_of(request).accepts(request, data.csrf_token, current_staff(request)):
            return stale_form(request)
        location: Location | None = None
        try:
            if data.latitude.strip() or data.longitude.strip():
                location = Location(
                    Decimal(data.latitude.strip().replace(",", ".")), Decimal(data.longitude.strip().replace(",", "."))
                )
            store = StoreInput(name=data.name, timezone=data.timezone.strip(), location=location)
            store = msgspec.convert(msgspec.to_builtins(store), StoreInput)
        except (InvalidOperation, ValueError, msgspec.ValidationError):
            return await self._page(request, status=422, error=text(lang, "stores.bad_location"), form=data)
        try:
            async with transaction(request) as tx:
                saved = await put_store(tx, store.at(data.code.strip()))
        except DomainError as exc:
            return await self._page(
                request, status=status_of(exc), error=text(lang, "error", message=exc.message), form=data
            )
        return back_with_notice(request, f"{PATH}/stores", text(lang, "stores.done", code=saved.code))


class NewStaffForm(msgspec.Struct):
    username: str = ""
    role: str = ""
    password: str = ""
    csrf_token: str = ""


class StaffActionForm(msgspec.Struct):
    csrf_token: str = ""


class ConsoleStaffController(Controller):
    path = f"{PATH}/staff"
    include_in_schema = False
    before_request = signed_in(Permission.STAFF)

    async def _page(
        self, request: Request[Any, Any, State], *, status: int = 200, error: str | None = None, form: Any = None
    ) -> Template:
        async with app_services(request).pool.acquire() as conn:
            accounts = await list_staff(conn)
            stores, assigned = await list_stores(conn), await staff_stores(conn)
        return render(
            request,
            "console/staff.html",
            status=status,
            accounts=accounts,
            roles=list(Role),
            error=error,
            form=form,
            stores=stores,
            assigned=assigned,
        )

    @get("/", media_type="text/html")
    async def index(self, request: Request[Any, Any, State]) -> Template:
        return await self._page(request)

    async def _change(
        self,
        request: Request[Any, Any, State],
        token: str,
        change: Callable[[Connection], Awaitable[str]],
        form: Any = None,
    ) -> Response[Any]:
        lang = language(request)
        if not sessions_of(request).accepts(request, token, current_staff(request)):
            return stale_form(request)
        try:
            async with transaction(request) as tx:
                notice = await change(tx)
        except DomainError as exc:
            return await self._page(
                request, status=status_of(exc), error=text(lang, "error", message=exc.message), form=form
            )
        return back_with_notice(request, f"{PATH}/staff", notice)

    @post("/", media_type="text/html", status_code=200)
    async def create(self, request: Request[Any, Any, State], data: URLEncodedBody[NewStaffForm]) -> Response[Any]:
        services = app_services(request)
        lang = language(request)

        async def change(tx: Connection) -> str:
            try:
                role = Role(data.role)
            except ValueError:
                raise _RoleError(f"unknown role {data.role!r}") from None
            account = await create_staff(
                tx, services.staff_signin.passwords, username=data.username, role=role, password=data.password
            )
            return text(lang, "staff.created", username=account.username)

        form = {"username": data.username, "role": data.role}
        return await self._change(request, data.csrf_token, change, form)

    @post("/{username:str}/disable", media_type="text/html", status_code=200)
    async def disable(
        self, username: FromPath[str], request: Request[Any, Any, State], data: URLEncodedBody[StaffActionForm]
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)

        async def change(tx: Connection) -> str:
            account = await disable_staff(tx, username[:64], services.clock.now())
            return text(lang, "staff.disabled_done", username=account.username)

        return await self._change(request, data.csrf_token, change)

    @post("/{username:str}/unlock", media_type="text/html", status_code=200)
    async def unlock(
        self, username: FromPath[str], request: Request[Any, Any, State], data: URLEncodedBody[StaffActionForm]
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)

        async def change(tx: Connection) -> str:
            account = await unlock_staff(tx, username[:64], services.clock.now())
            return text(lang, "staff.unlocked", username=account.username)

        return await self._change(request, data.csrf_token, change)


class _RoleError(DomainError):
    kind = "invalid"


# The console's areas in modules of their own build on this module's helpers, so they come after them
# (import this module, or the app, before theirs).
from api.console.campaigns import ConsoleCampaignController  # noqa: E402
from api.console.dashboard import ConsoleDashboardController, ConsoleStaffStoresController  # noqa: E402
from api.console.promotions import ConsolePromotionController  # noqa: E402
from api.console.segments import ConsoleSegmentController  # noqa: E402

CONSOLE_CONTROLLERS: Final = [
    ConsoleSignInController,
    ConsoleController,
    ConsoleCustomerController,
    ConsoleStoreController,
    ConsoleStaffController,
    ConsoleStaffStoresController,
    ConsoleDashboardController,
    ConsolePromotionController,
    ConsoleSegmentController,
    ConsoleCampaignController,
]

"""The staff console's pages (``/console``): server-rendered with Jinja, htmx for partial updates.

Thin like every controller: read the form, check the session and its form token, call the service the
admin API calls, render. A domain error is shown on the page it came from, in the person's language
where the console knows the case, else with the service's own message; after a change the browser is
sent back to the page (post, redirect, get) with a one-time notice.
"""

from __future__ import annotations

import contextlib
import math
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from api.console.session import COOKIE, LANG_COOKIE, PATH, ConsoleSessions, StaffSession
from api.console.texts import LANGUAGES, text
from api.request import client_address, preferred_language
from api.state import Services, services_of
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
from kartka.texts import format_percent, format_points
from kartka.tokens import Audience, Claims, SubjectKind, end_session
from notifications.history import messages_for
from wallet import ledger, support
from wallet.customers import Origin
from wallet.errors import CustomerNotFound
from wallet.grants import GrantInput, grant
from wallet.models import Source
from wallet.money import parse_points
from wallet.stores import Location, StoreInput, list_stores, put_store

STAFF: Final = "kartka.console.staff"
FLASH_COOKIE: Final = "kartka_console_flash"
_HISTORY_PAGE: Final = 20
#: What the grant form suggests: quick-expiring goodwill points (seed 003), changed as needed.
GRANT_DAYS: Final = 30


def sessions_of(request: Request[Any, Any, Any]) -> ConsoleSessions:
    sessions: ConsoleSessions = request.app.state.console_sessions
    return sessions


def _services(request: Request[Any, Any, Any]) -> Services:
    return services_of(request.app.state)


def language(request: Request[Any, Any, Any]) -> str:
    """``?lang=`` (remembered in a cookie), else the cookie, else Accept-Language, else Russian."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return str(asked)
    kept = request.cookies.get(LANG_COOKIE)
    if kept in LANGUAGES:
        return str(kept)
    return preferred_language(request) or "ru"


def _staff(request: Request[Any, Any, Any]) -> StaffSession:
    session: StaffSession = request.scope["state"][STAFF]
    return session


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def _partial(request: Request[Any, Any, Any], target: str) -> bool:
    """Whether htmx asks for one part of a page (``hx-target``) rather than the page (boosted links)."""
    return _is_htmx(request) and request.headers.get("hx-target") == target


def _safe_next(target: str | None) -> str:
    """Only our own console pages: never another site (``//host``) after signing in."""
    if target and target.startswith(PATH) and not target.startswith("//") and "\\" not in target:
        return target
    return PATH


def _to_signin(request: Request[Any, Any, Any], reason: str | None) -> Response[Any]:
    # Back to the page after signing in; a form's action is no page to go back to (a GET would 405).
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": here if request.method == "GET" else PATH}
    if reason:
        query["why"] = reason
    target = f"{PATH}/sign-in?{urllib.parse.urlencode(query)}"
    gone = sessions_of(request).gone()
    if _is_htmx(request):  # a partial update cannot show a sign-in form in place: htmx navigates
        return Response(b"", status_code=200, headers={"HX-Redirect": target}, cookies=[gone])
    return Redirect(target, status_code=303, cookies=[gone])


class signed_in:  # noqa: N801 - reads as a declaration: before_request = signed_in(Permission.CARDS)
    """A ``before_request`` hook: a live, recently active console session (else the sign-in form) whose
    role has ``permission`` or one of ``more`` (else a 403 page)."""

    def __init__(self, permission: Permission | None = None, *more: Permission) -> None:
        self.permission = permission
        self.more = more

    async def __call__(self, request: Request[Any, Any, Any]) -> Response[Any] | None:
        sessions = sessions_of(request)
        services = _services(request)
        now = services.clock.now()
        session = sessions.decode(request.cookies.get(COOKIE))
        if session is None:
            return _to_signin(request, None)
        if sessions.idle(session, now):
            return _to_signin(request, "idle")
        claims = Claims(
            subject=session.staff,
            session=session.session,
            audience=Audience.STAFF,
            kind=SubjectKind.STAFF,
            role=session.role.value,
            expires_at=now,
        )
        if not await services.tokens.session_alive(services.pool, claims):
            return _to_signin(request, None)
        request.scope["state"][STAFF] = session
        if self.permission is not None and not any(session.may(p) for p in (self.permission, *self.more)):
            return render(request, "console/message.html", status=403, title="forbidden.title", body="forbidden.text")
        return None


def _nav(session: StaffSession | None) -> list[tuple[str, str]]:
    if session is None:
        return []
    items = [("nav.home", PATH)]
    if session.may(Permission.REPORTS) or session.may(Permission.STORE_REPORTS):
        items.append(("nav.dashboard", f"{PATH}/dashboard"))
    if session.may(Permission.CARDS):
        items.append(("nav.customers", f"{PATH}/customers"))
    if session.may(Permission.PROMOTIONS_READ):
        items.append(("nav.promotions", f"{PATH}/promotions"))
    if session.may(Permission.CAMPAIGNS):
        items += [("nav.segments", f"{PATH}/segments"), ("nav.campaigns", f"{PATH}/campaigns")]
    if session.may(Permission.STORES):
        items.append(("nav.stores", f"{PATH}/stores"))
    if session.may(Permission.STAFF):
        items.append(("nav.staff", f"{PATH}/staff"))
    return items


def render(
    request: Request[Any, Any, Any],
    name: str,
    *,
    status: int = 200,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Template:
    """A page in the person's language, with what every page needs (who is signed in, the form token,
    the sections they may open) and the session cookie's last-seen time moved on."""
    lang = language(request)
    session: StaffSession | None = request.scope["state"].get(STAFF)
    sessions = sessions_of(request)
    services = _services(request)
    program = services.program
    now = services.clock.now()
    out = list(cookies or [])
    if request.query_params.get("lang") in LANGUAGES:
        out.append(Cookie(key=LANG_COOKIE, value=lang, path=PATH, samesite="strict", secure=sessions.secure))
    if session is not None and sessions.stale(session, now):
        out.append(sessions.cookie(msgspec.structs.replace(session, seen=int(now.timestamp()))))
    flash = request.cookies.get(FLASH_COOKIE)
    if flash:
        out.append(Cookie(key=FLASH_COOKIE, value="", path=PATH, max_age=0, samesite="strict", secure=sessions.secure))

    def t(key: str, **values: object) -> str:
        return text(lang, key, **values)

    def when(moment: datetime | None, *, date_only: bool = False) -> str:
        if moment is None:
            return "—"
        local = moment.astimezone(program.zone)
        return local.strftime("%d.%m.%Y" if date_only else "%d.%m.%Y %H:%M")

    def amount(minor: int) -> str:
        return format_points(minor, lang)

    def money(minor: int) -> str:
        return f"{format_points(minor, lang)}\u00a0{program.currency}"

    def percent(share: float) -> str:
        """A share (0–1) as the language writes a percentage ("12,3 %" in Russian)."""
        number = format_percent(round(share * 10_000), lang)
        return f"{number}\u00a0%" if lang == "ru" else f"{number}%"

    def here(**params: str) -> str:
        """This page's address with ``params`` changed (the language switch keeps the search)."""
        query = dict(request.query_params)
        query.update(params)
        return f"{request.url.path}?{urllib.parse.urlencode(query)}"

    return Template(
        template_name=name,
        context={
            "lang": lang,
            "other_lang": "en" if lang == "ru" else "ru",
            "t": t,
            "when": when,
            "amount": amount,
            "money": money,
            "percent": percent,
            "here": here,
            "staff": session,
            "csrf": sessions.csrf(session) if session is not None else "",
            "nav": _nav(session),
            "path": request.url.path,
            "flash": urllib.parse.unquote(flash) if flash else None,
            **context,
        },
        status_code=status,
        cookies=out,
        headers={"Cache-Control": "no-store"},
    )


def _done(request: Request[Any, Any, Any], target: str, message: str) -> Response[Any]:
    """After a change: back to the page, with a one-time notice (a short cookie the page shows once)."""
    sessions = sessions_of(request)
    flash = Cookie(
        key=FLASH_COOKIE,
        value=urllib.parse.quote(message),
        path=PATH,
        max_age=60,
        httponly=True,
        samesite="strict",
        secure=sessions.secure,
    )
    return Redirect(target, status_code=303, cookies=[flash])


def _stale_form(request: Request[Any, Any, Any]) -> Template:
    return render(request, "console/message.html", status=403, title="stale.title", body="stale.text")


@contextlib.asynccontextmanager
async def _transaction(request: Request[Any, Any, Any]) -> AsyncIterator[Connection]:
    async with _services(request).pool.acquire() as conn, conn.transaction():
        yield conn


_STATUS: Final = {"invalid": 422, "not-found": 404, "conflict": 409, "forbidden": 403, "rate-limited": 429}


def _status(exc: DomainError) -> int:
    """The HTTP status the admin API answers for the same error (a page still, not a problem)."""
    return _STATUS.get(exc.kind, 422)


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
            next=_safe_next(request.query_params.get("next")),
        )

    @get("/", media_type="text/html")
    async def page(self, request: Request[Any, Any, State]) -> Template:
        return self._form(request)

    @post("/", media_type="text/html", status_code=200)
    async def sign_in(self, request: Request[Any, Any, State], data: URLEncodedBody[SignInForm]) -> Response[Any]:
        sessions = sessions_of(request)
        services = _services(request)
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
        target = _safe_next(data.next)
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
        session = _staff(request)
        sessions = sessions_of(request)
        if not sessions.accepts(request, data.csrf_token, session):
            return _stale_form(request)
        async with _transaction(request) as tx:
            await end_session(tx, session.session, _services(request).clock.now(), "signed out of the console")
        target = f"{PATH}/sign-in?why=out"
        if _is_htmx(request):
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
        services = _services(request)
        async with services.pool.acquire() as conn:
            matches = await support.find_customers(conn, services.customers, q)
        # htmx asks for the results only while the person types; the whole page otherwise.
        name = "console/customer_results.html" if _partial(request, "results") else "console/customers.html"
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
        services = _services(request)
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
        if before is not None and _partial(request, "history-more"):
            return render(request, "console/history_rows.html", history=history, customer=file)
        session = _staff(request)
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
        if not sessions_of(request).accepts(request, token, _staff(request)):
            return _stale_form(request)
        try:
            async with _transaction(request) as tx:
                notice = await action(tx)
        except _FormError as exc:
            return await self._page(request, customer_id, status=422, error=exc.message, form=form)
        except DomainError as exc:
            message = text(language(request), "error", message=exc.message)
            return await self._page(request, customer_id, status=_status(exc), error=message, form=form)
        return _done(request, f"{PATH}/customers/{customer_id}", notice)

    @post(
        "/{customer_id:uuid}/grant",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.GRANT_POINTS),
    )
    async def grant(
        self, customer_id: CustomerId, request: Request[Any, Any, State], data: URLEncodedBody[GrantForm]
    ) -> Response[Any]:
        services = _services(request)
        lang = language(request)
        session = _staff(request)

        async def action(tx: Connection) -> str:
            try:
                points = parse_points(data.points)
            except ValueError:
                raise _FormError(text(lang, "grant.bad_points")) from None
            days = data.expires_in_days.strip()
            if not days.isdigit():
                raise _FormError(text(lang, "grant.bad_days"))
            try:
                wanted = msgspec.convert(
                    {"points": points, "expires_in_days": int(days), "reason": data.reason}, GrantInput
                )
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
        services = _services(request)
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
        services = _services(request)
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
        services = _services(request)
        lang = language(request)

        async def action(tx: Connection) -> str:
            number = await support.resend_card_link(tx, services.customers, customer_id, services.clock.now())
            return text(lang, "resend.done", card=number)

        return await self._act(request, customer_id, data.csrf_token, {}, action)

    @post("/{customer_id:uuid}/attach", media_type="text/html", status_code=200)
    async def attach(
        self, customer_id: CustomerId, request: Request[Any, Any, State], data: URLEncodedBody[AttachForm]
    ) -> Response[Any]:
        services = _services(request)
        lang = language(request)
        session = _staff(request)

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


#: Where msgspec says a value failed: `` - at `$.field…` `` (a nested path, or a list index, after it).
_VALIDATION_AT: Final = re.compile(r" - at `\$\.?([a-z0-9_]*)[^`]*`")
#: msgspec's words for the checks the console's forms meet, in the person's language (else its own).
_VALIDATION_WORDS: Final = (
    (re.compile(r"^Expected `(?:int|float|number)` <= (\S+)$"), "valid.at_most"),
    (re.compile(r"^Expected `(?:int|float|number)` >= (\S+)$"), "valid.at_least"),
    (re.compile(r"^Expected `(?:int|float|number)(?: \| null)?`, got `\w+`$"), "valid.number"),
    (re.compile(r"^Expected `str` of length <= (\d+)$"), "valid.too_long"),
)


def explain_validation(lang: str, exc: msgspec.ValidationError) -> tuple[str, str]:
    """(the field at fault, what is wrong with it) from a domain struct's refusal, for a form to show
    beside that field; the common checks in the person's language."""
    found = _VALIDATION_AT.search(str(exc))
    message = _VALIDATION_AT.sub("", str(exc)).strip()
    for pattern, key in _VALIDATION_WORDS:
        matched = pattern.match(message)
        if matched:
            message = text(lang, key, n=matched.group(1)) if matched.groups() else text(lang, key)
            break
    return (found.group(1) if found else ""), message


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
        async with _services(request).pool.acquire() as conn:
            stores = await list_stores(conn)
        return render(request, "console/stores.html", status=status, stores=stores, error=error, form=form)

    @get("/", media_type="text/html")
    async def index(self, request: Request[Any, Any, State]) -> Template:
        return await self._page(request)

    @post("/", media_type="text/html", status_code=200)
    async def save(self, request: Request[Any, Any, State], data: URLEncodedBody[StoreForm]) -> Response[Any]:
        lang = language(request)
        if not sessions_of(request).accepts(request, data.csrf_token, _staff(request)):
            return _stale_form(request)
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
            async with _transaction(request) as tx:
                saved = await put_store(tx, store.at(data.code.strip()))
        except DomainError as exc:
            return await self._page(
                request, status=_status(exc), error=text(lang, "error", message=exc.message), form=data
            )
        return _done(request, f"{PATH}/stores", text(lang, "stores.done", code=saved.code))


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
        async with _services(request).pool.acquire() as conn:
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
        if not sessions_of(request).accepts(request, token, _staff(request)):
            return _stale_form(request)
        try:
            async with _transaction(request) as tx:
                notice = await change(tx)
        except DomainError as exc:
            return await self._page(
                request, status=_status(exc), error=text(lang, "error", message=exc.message), form=form
            )
        return _done(request, f"{PATH}/staff", notice)

    @post("/", media_type="text/html", status_code=200)
    async def create(self, request: Request[Any, Any, State], data: URLEncodedBody[NewStaffForm]) -> Response[Any]:
        services = _services(request)
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
        services = _services(request)
        lang = language(request)

        async def change(tx: Connection) -> str:
            account = await disable_staff(tx, username[:64], services.clock.now())
            return text(lang, "staff.disabled_done", username=account.username)

        return await self._change(request, data.csrf_token, change)

    @post("/{username:str}/unlock", media_type="text/html", status_code=200)
    async def unlock(
        self, username: FromPath[str], request: Request[Any, Any, State], data: URLEncodedBody[StaffActionForm]
    ) -> Response[Any]:
        services = _services(request)
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

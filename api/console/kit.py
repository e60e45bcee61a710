"""The staff console's toolkit: what every console page needs (the session and its permission check,
rendering in the person's language, the one-time notice after a change, a transaction, a domain error's
status, a domain refusal explained beside its field). The pages are in ``pages.py`` (sign-in, shoppers,
stores and staff) and in a module per section (promotions, segments, campaigns, dashboard)."""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from api.console.session import COOKIE, LANG_COOKIE, PATH, ConsoleSessions, StaffSession
from api.console.texts import LANGUAGES, text
from api.request import preferred_language
from api.state import Services, services_of
from kartka.bounds import INT64_MAX
from kartka.db import Connection
from kartka.errors import DomainError
from kartka.staff import Permission
from kartka.texts import format_percent, format_points
from kartka.tokens import Audience, Claims, SubjectKind

STAFF: Final = "kartka.console.staff"
FLASH_COOKIE: Final = "kartka_console_flash"


def sessions_of(request: Request[Any, Any, Any]) -> ConsoleSessions:
    sessions: ConsoleSessions = request.app.state.console_sessions
    return sessions


def app_services(request: Request[Any, Any, Any]) -> Services:
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


def current_staff(request: Request[Any, Any, Any]) -> StaffSession:
    session: StaffSession = request.scope["state"][STAFF]
    return session


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def wants_partial(request: Request[Any, Any, Any], target: str) -> bool:
    """Whether htmx asks for one part of a page (``hx-target``) rather than the page (boosted links)."""
    return is_htmx(request) and request.headers.get("hx-target") == target


def safe_next(target: str | None) -> str:
    """Only our own console pages: never another site (``//host``) after signing in."""
    if target and target.startswith(PATH) and not target.startswith("//") and "\\" not in target:
        return target
    return PATH


def to_signin(request: Request[Any, Any, Any], reason: str | None) -> Response[Any]:
    # Back to the page after signing in; a form's action is no page to go back to (a GET would 405).
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": here if request.method == "GET" else PATH}
    if reason:
        query["why"] = reason
    target = f"{PATH}/sign-in?{urllib.parse.urlencode(query)}"
    gone = sessions_of(request).gone()
    if is_htmx(request):  # a partial update cannot show a sign-in form in place: htmx navigates
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
        services = app_services(request)
        now = services.clock.now()
        session = sessions.decode(request.cookies.get(COOKIE))
        if session is None:
            return to_signin(request, None)
        if sessions.idle(session, now):
            return to_signin(request, "idle")
        claims = Claims(
            subject=session.staff,
            session=session.session,
            audience=Audience.STAFF,
            kind=SubjectKind.STAFF,
            role=session.role.value,
            expires_at=now,
        )
        if not await services.tokens.session_alive(services.pool, claims):
            return to_signin(request, None)
        request.scope["state"][STAFF] = session
        if self.permission is not None and not any(session.may(p) for p in (self.permission, *self.more)):
            return render(request, "console/message.html", status=403, title="forbidden.title", body="forbidden.text")
        return None


def nav_items(session: StaffSession | None) -> list[tuple[str, str]]:
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
    services = app_services(request)
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
            "nav": nav_items(session),
            "path": request.url.path,
            "flash": urllib.parse.unquote(flash) if flash else None,
            **context,
        },
        status_code=status,
        cookies=out,
        headers={"Cache-Control": "no-store"},
    )


def back_with_notice(request: Request[Any, Any, Any], target: str, message: str) -> Response[Any]:
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


def stale_form(request: Request[Any, Any, Any]) -> Template:
    return render(request, "console/message.html", status=403, title="stale.title", body="stale.text")


@contextlib.asynccontextmanager
async def transaction(request: Request[Any, Any, Any]) -> AsyncIterator[Connection]:
    async with app_services(request).pool.acquire() as conn, conn.transaction():
        yield conn


STATUS: Final = {"invalid": 422, "not-found": 404, "conflict": 409, "forbidden": 403, "rate-limited": 429}


def status_of(exc: DomainError) -> int:
    """The HTTP status the admin API answers for the same error (a page still, not a problem)."""
    return STATUS.get(exc.kind, 422)


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


def whole_number(text: str, *, at_most: int = INT64_MAX) -> int | None:
    """A form's or query's non-negative whole number in ASCII digits, or None (``str.isdigit`` also
    takes digits such as ``²`` that ``int`` refuses, and any length)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(at_most)):
        return None
    value = int(text)
    return value if value <= at_most else None

"""The page behind a store's QR poster: a shopper types a phone and gets a card (source ``qr_poster``).

The answer is the same whether the phone was new or known, so the page cannot be used to find out who
is a customer; it shows no card number either, since whoever types a phone need not own it. The card
itself reaches the phone's owner later, by SMS link (the notifications and card-page work).

A stranger's form that sends texts is worth abusing, so (besides ``wallet.join``'s limit per client
address and the SMS budget) posts must come from this page: a signed token in the form, bound to a
SameSite=Strict cookie set with it, and a cross-site ``Origin`` or ``Sec-Fetch-Site`` is refused. A
shopper who hits a limit gets a page in their language with ``Retry-After``, not a JSON problem.
"""

from __future__ import annotations

import base64
import hmac
import math
import re
import secrets
import time
import urllib.parse
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Template

from api.pages import page_language, render
from api.request import client_address
from api.state import services_of
from kartka.crypto import derive_key, keyed_hash
from kartka.errors import DomainError, RateLimited
from kartka.keys import CODE_PATTERN
from kartka.ratelimit import TextBudgetSpent
from kartka.settings import Settings
from kartka.texts import text
from wallet.errors import InvalidPhone


class JoinForm(msgspec.Struct):
    phone: str = ""
    name: str = ""
    consent: str = ""
    store: str = ""
    lang: str = ""  # the page's language; without it, Accept-Language decides as for the page
    csrf: str = ""


#: The join page's cookie: a random value the form's token is signed with.
COOKIE: Final = "kartka_join"
#: How long a form may stay open before it must be loaded again.
FORM_SECONDS: Final = 24 * 3600
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


class FormGuard:
    """Signed double-submit tokens: the form carries ``<issued>.<HMAC(cookie, issued)>``; a post is good
    when its token was signed for the cookie the browser sends back, within :data:`FORM_SECONDS`."""

    def __init__(self, settings: Settings) -> None:
        self._key = derive_key(settings.secret_key.reveal(), "join-form")
        self._secure = settings.public_url.startswith("https://")
        self._public_host = urllib.parse.urlsplit(settings.public_url).netloc

    def _mac(self, nonce: str, issued: int) -> str:
        return base64.urlsafe_b64encode(keyed_hash(self._key, nonce, str(issued))[:18]).decode()

    def issue(self, request: Request[Any, Any, Any]) -> tuple[str, Cookie]:
        nonce = request.cookies.get(COOKIE, "")
        if not _NONCE.match(nonce):
            nonce = secrets.token_urlsafe(18)
        issued = int(time.time())
        cookie = Cookie(
            key=COOKIE,
            value=nonce,
            path="/join",
            max_age=FORM_SECONDS,
            httponly=True,
            samesite="strict",
            secure=self._secure,
        )
        return f"{issued}.{self._mac(nonce, issued)}", cookie

    def accepts(self, request: Request[Any, Any, Any], token: str) -> bool:
        """Whether a post comes from our own page, in this browser, recently."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc not in (
            self._public_host,
            request.headers.get("host"),
        ):
            return False  # also "null": a sandboxed or privacy-stripped cross-site post
        nonce = request.cookies.get(COOKIE, "")
        issued_text, _, mac = token.partition(".")
        if not _NONCE.match(nonce) or not issued_text.isdigit():
            return False
        issued = int(issued_text)
        if not 0 <= time.time() - issued <= FORM_SECONDS:
            return False
        return hmac.compare_digest(mac, self._mac(nonce, issued))


#: The form's fields whose errors the page explains in the shopper's language (the domain's are English).
_ERRORS: Final = {"phone": "bad_phone", "name": "bad_name"}


def _guard(request: Request[Any, Any, Any]) -> FormGuard:
    guard: FormGuard = request.app.state.join_forms
    return guard


def _page(lang: str, store: str, kind: str, *, status: int = 200, **context: Any) -> Template:
    """``pages/join.html`` showing ``kind``: the form, done, a limit, an unknown store."""
    return render(
        "join.html",
        lang,
        {"kind": kind, "store": store, **context},
        status=status,
        forms=True,
        switch_params={"store": store} if store else None,
    )


def _form_page(
    request: Request[Any, Any, Any],
    lang: str,
    store: str,
    status: int = 200,
    *,
    phone: str = "",
    name: str = "",
    error: str = "",
) -> Template:
    """The form with a fresh token (and its cookie)."""
    token, cookie = _guard(request).issue(request)
    page = _page(lang, store, "form", status=status, csrf=token, phone=phone, name=name, error=error)
    page.cookies.append(cookie)
    return page


def _limited(lang: str, store: str, exc: RateLimited) -> Template:
    """429 as a page the shopper can read, with Retry-After for anything that retries by itself."""
    kind = "busy" if isinstance(exc, TextBudgetSpent) else "limited"
    page = _page(lang, store, kind, status=429, minutes=max(1, math.ceil(exc.retry_after / 60)))
    page.headers["Retry-After"] = str(exc.retry_after)
    return page


def _unknown_store(lang: str) -> Template:
    """A poster whose store the program does not know (mistyped, or closed): no form that would record it."""
    return _page(lang, "", "unknown_store", status=404)


class JoinController(Controller):
    path = "/join"
    tags = ["web"]  # noqa: RUF012
    include_in_schema = False

    @get("/", operation_id="webJoinPage", media_type="text/html")
    async def page(
        self,
        request: Request[Any, Any, Any],
        store: Annotated[str | None, QueryParameter(required=False, pattern=CODE_PATTERN)] = None,
        lang: Annotated[str | None, QueryParameter(required=False)] = None,
    ) -> Template:
        language = page_language(request, lang)
        if store and not await services_of(request.app.state).join.knows_store(store):
            return _unknown_store(language)
        return _form_page(request, language, store or "")

    @post("/", operation_id="webJoin", media_type="text/html", status_code=200)
    async def join(self, request: Request[Any, Any, Any], data: URLEncodedBody[JoinForm]) -> Template:
        services = services_of(request.app.state)
        lang = page_language(request, data.lang)
        store = data.store if re.fullmatch(CODE_PATTERN, data.store) else ""
        if not _guard(request).accepts(request, data.csrf):
            return _form_page(
                request, lang, store, 403, error=text(lang, "page.join.stale_form"), phone=data.phone, name=data.name
            )
        if data.consent != "yes":
            return _form_page(
                request,
                lang,
                store,
                422,
                error=text(lang, "page.join.consent_needed"),
                phone=data.phone,
                name=data.name,
            )
        if store and not await services.join.knows_store(store):
            return _unknown_store(lang)
        try:
            result = await services.join.join(
                data.phone, name=data.name or None, store=store or None, language=lang, client=client_address(request)
            )
        except RateLimited as exc:
            return _limited(lang, store, exc)
        except DomainError as exc:
            kind = "bad_phone" if isinstance(exc, InvalidPhone) else _ERRORS.get(exc.field or "", "bad_input")
            error = text(lang, "page.join." + kind)
            return _form_page(request, lang, store, 422, error=error, phone=data.phone, name=data.name)
        return _page(lang, store, "done", phone=result.customer.phone or "")

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
import html
import math
import re
import secrets
import time
import urllib.parse
from string import Template
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import QueryParameter, URLEncodedBody

from api.request import client_address, preferred_language
from api.state import services_of
from kartka.crypto import derive_key, keyed_hash
from kartka.errors import DomainError, RateLimited
from kartka.keys import CODE_PATTERN
from kartka.ratelimit import TextBudgetSpent
from kartka.settings import Settings
from wallet.errors import InvalidPhone

_TEXT: Final[dict[str, dict[str, str]]] = {
    "ru": {
        "title": "Карта лояльности",
        "lead": "Введите номер телефона — карта появится сразу, без пластика.",
        "phone": "Телефон",
        "name": "Имя (необязательно)",
        "consent": "Согласен(на) с правилами программы и обработкой персональных данных",
        "submit": "Получить карту",
        "done_title": "Готово!",
        "done": "Карта готова: ссылку на неё мы отправили на {phone}. На кассе назовите этот номер "
        "или покажите карту — по нему вас найдут и начислят баллы.",
        "consent_needed": "Нужно согласие с правилами программы.",
        "bad_phone": "Проверьте номер телефона, например: +375 29 123-45-67.",
        "stale_form": "Страница устарела: отправьте форму ещё раз.",
        "limited_title": "Слишком много попыток",
        "limited": "С этого адреса было слишком много запросов. Попробуйте снова через {minutes} мин.",
        "busy_title": "Попробуйте чуть позже",
        "busy": "Сейчас мы не можем отправить SMS. Попробуйте снова через {minutes} мин.",
        "again": "Вернуться к форме",
        "other": "English",
    },
    "en": {
        "title": "Loyalty card",
        "lead": "Enter your phone number and get your card at once, no plastic needed.",
        "phone": "Phone",
        "name": "Name (optional)",
        "consent": "I accept the program rules and the processing of my personal data",
        "submit": "Get my card",
        "done_title": "Done!",
        "done": "Your card is ready: we sent its link to {phone}. At the till, give this number or show the "
        "card: it finds your card and your points.",
        "consent_needed": "Please accept the program rules.",
        "bad_phone": "Please check the phone number, e.g. +375 29 123-45-67.",
        "stale_form": "This page has expired: please send the form again.",
        "limited_title": "Too many attempts",
        "limited": "Too many requests came from this address. Please try again in {minutes} min.",
        "busy_title": "Please try again a little later",
        "busy": "We cannot send text messages right now. Please try again in {minutes} min.",
        "again": "Back to the form",
        "other": "Русский",
    },
}

_PAGE = Template("""<!doctype html>
<html lang="$lang"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
 body{font-family:system-ui,-apple-system,sans-serif;margin:0;background:#f4f1ea;color:#1d1d1b}
 main{max-width:28rem;margin:0 auto;padding:1.5rem}
 h1{font-size:1.6rem} label{display:block;margin:1rem 0 .3rem}
 input[type=tel],input[type=text]{width:100%;box-sizing:border-box;font-size:1.2rem;padding:.7rem;
  border:1px solid #bbb;border-radius:.5rem}
 .consent{display:flex;gap:.5rem;align-items:flex-start;margin:1rem 0}
 button{width:100%;font-size:1.2rem;padding:.9rem;border:0;border-radius:.5rem;background:#2f6d3a;color:#fff}
 .error{color:#a00}.lang{float:right}
</style></head>
<body><main><a class="lang" href="$other_href">$other</a>$body</main></body></html>""")

_FORM = Template("""<h1>$title</h1><p>$lead</p>$error
<form method="post" action="/join">
 <input type="hidden" name="store" value="$store"><input type="hidden" name="lang" value="$lang">
 <input type="hidden" name="csrf" value="$csrf">
 <label for="phone">$phone_label</label>
 <input id="phone" name="phone" type="tel" autocomplete="tel" inputmode="tel" required value="$phone">
 <label for="name">$name_label</label>
 <input id="name" name="name" type="text" autocomplete="given-name" value="$name">
 <div class="consent"><input id="consent" name="consent" type="checkbox" value="yes" required>
 <label for="consent" style="margin:0">$consent</label></div>
 <button type="submit">$submit</button>
</form>""")


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


def _lang(request: Request[Any, Any, Any], explicit: str | None) -> str:
    return preferred_language(request, explicit) or "ru"


def _page(lang: str, store: str, body: str) -> Response[str]:
    other = "en" if lang == "ru" else "ru"
    href = f"/join?lang={other}" + (f"&store={html.escape(store)}" if store else "")
    content = _PAGE.substitute(
        lang=lang, title=_TEXT[lang]["title"], other=_TEXT[lang]["other"], other_href=href, body=body
    )
    return Response(content, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


def _form(lang: str, store: str, csrf: str, *, phone: str = "", name: str = "", error: str = "") -> str:
    text = _TEXT[lang]
    return _FORM.substitute(
        csrf=html.escape(csrf),
        title=html.escape(text["title"]),
        lead=html.escape(text["lead"]),
        error=f'<p class="error">{html.escape(error)}</p>' if error else "",
        store=html.escape(store),
        lang=lang,
        phone_label=text["phone"],
        phone=html.escape(phone),
        name_label=text["name"],
        name=html.escape(name),
        consent=html.escape(text["consent"]),
        submit=html.escape(text["submit"]),
    )


def _guard(request: Request[Any, Any, Any]) -> FormGuard:
    guard: FormGuard = request.app.state.join_forms
    return guard


def _form_page(
    request: Request[Any, Any, Any], lang: str, store: str, status: int = 200, **fields: str
) -> Response[str]:
    """The form with a fresh token (and its cookie)."""
    token, cookie = _guard(request).issue(request)
    response = _with_status(_page(lang, store, _form(lang, store, token, **fields)), status)
    response.cookies.append(cookie)
    return response


def _limited(lang: str, store: str, exc: RateLimited) -> Response[str]:
    """429 as a page the shopper can read, with Retry-After for anything that retries by itself."""
    text = _TEXT[lang]
    kind = "busy" if isinstance(exc, TextBudgetSpent) else "limited"
    minutes = max(1, math.ceil(exc.retry_after / 60))
    back = f"/join?lang={lang}" + (f"&store={html.escape(store)}" if store else "")
    body = (
        f"<h1>{html.escape(text[kind + '_title'])}</h1>"
        f"<p>{html.escape(text[kind].format(minutes=minutes))}</p>"
        f'<p><a href="{back}">{html.escape(text["again"])}</a></p>'
    )
    response = _with_status(_page(lang, store, body), 429)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


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
    ) -> Response[str]:
        return _form_page(request, _lang(request, lang), store or "")

    @post("/", operation_id="webJoin", media_type="text/html", status_code=200)
    async def join(self, request: Request[Any, Any, Any], data: URLEncodedBody[JoinForm]) -> Response[str]:
        services = services_of(request.app.state)
        lang = _lang(request, data.lang)
        store = data.store if re.fullmatch(CODE_PATTERN, data.store) else ""
        typed = {"phone": data.phone, "name": data.name}
        if not _guard(request).accepts(request, data.csrf):
            return _form_page(request, lang, store, 403, error=_TEXT[lang]["stale_form"], **typed)
        if data.consent != "yes":
            return _form_page(request, lang, store, 422, error=_TEXT[lang]["consent_needed"], **typed)
        try:
            result = await services.join.join(
                data.phone, name=data.name or None, store=store or None, language=lang, client=client_address(request)
            )
        except RateLimited as exc:
            return _limited(lang, store, exc)
        except DomainError as exc:
            error = _TEXT[lang]["bad_phone"] if isinstance(exc, InvalidPhone) else exc.message
            return _form_page(request, lang, store, 422, error=error, **typed)
        phone = html.escape(result.customer.phone or "")
        body = f"<h1>{_TEXT[lang]['done_title']}</h1><p>{html.escape(_TEXT[lang]['done']).format(phone=phone)}</p>"
        return _page(lang, store, body)


def _with_status(response: Response[str], status: int) -> Response[str]:
    response.status_code = status
    return response

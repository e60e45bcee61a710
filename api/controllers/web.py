"""The page behind a store's QR poster: a shopper types a phone and gets a card (source ``qr_poster``).

The answer is the same whether the phone was new or known, so the page cannot be used to find out who
is a customer; it shows no card number either, since whoever types a phone need not own it. The card
itself reaches the phone's owner later, by SMS link (the notifications and card-page work). Posting is
rate-limited per client address.
"""

from __future__ import annotations

import html
import re
from string import Template
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.params import QueryParameter, URLEncodedBody

from api.request import preferred_language
from api.state import provide_tx, services_of
from kartka.db import Connection
from kartka.errors import DomainError
from kartka.keys import CODE_PATTERN
from wallet.customers import Origin
from wallet.errors import InvalidPhone
from wallet.models import Source

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
    lang: str = "ru"


def _lang(request: Request[Any, Any, Any], explicit: str | None) -> str:
    return preferred_language(request, explicit) or "ru"


def _page(lang: str, store: str, body: str) -> Response[str]:
    other = "en" if lang == "ru" else "ru"
    href = f"/join?lang={other}" + (f"&store={html.escape(store)}" if store else "")
    content = _PAGE.substitute(
        lang=lang, title=_TEXT[lang]["title"], other=_TEXT[lang]["other"], other_href=href, body=body
    )
    return Response(content, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


def _form(lang: str, store: str, *, phone: str = "", name: str = "", error: str = "") -> str:
    text = _TEXT[lang]
    return _FORM.substitute(
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


def _only_posts(request: Request[Any, Any, Any]) -> bool:
    return request.method == "POST"


def join_rate_limit(per_minute: int) -> RateLimitConfig:
    """Per client address; behind a proxy run uvicorn with --proxy-headers so the address is the shopper's."""
    return RateLimitConfig(rate_limit=("minute", per_minute), check_throttle_handler=_only_posts)


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
        language = _lang(request, lang)
        return _page(language, store or "", _form(language, store or ""))

    @post(
        "/",
        operation_id="webJoin",
        media_type="text/html",
        status_code=200,
        dependencies={"tx": Provide(provide_tx)},
    )
    async def join(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[JoinForm],
        tx: NamedDependency[Connection],
    ) -> Response[str]:
        customers = services_of(request.app.state).customers
        lang = _lang(request, data.lang)
        store = data.store if re.fullmatch(CODE_PATTERN, data.store) else ""
        if data.consent != "yes":
            body = _form(lang, store, phone=data.phone, name=data.name, error=_TEXT[lang]["consent_needed"])
            return _with_status(_page(lang, store, body), 422)
        try:
            result = await customers.register(
                tx,
                phone=data.phone,
                name=data.name or None,
                origin=Origin(source=Source.QR_POSTER, store=store or None),
                language=lang,
            )
        except DomainError as exc:
            error = _TEXT[lang]["bad_phone"] if isinstance(exc, InvalidPhone) else exc.message
            body = _form(lang, store, phone=data.phone, name=data.name, error=error)
            return _with_status(_page(lang, store, body), 422)
        phone = html.escape(result.customer.phone or "")
        body = f"<h1>{_TEXT[lang]['done_title']}</h1><p>{html.escape(_TEXT[lang]['done']).format(phone=phone)}</p>"
        return _page(lang, store, body)


def _with_status(response: Response[str], status: int) -> Response[str]:
    response.status_code = status
    return response

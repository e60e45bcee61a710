"""The unsubscribe page every marketing message links to."""

from __future__ import annotations

import html
from string import Template
from typing import Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from api.request import preferred_language
from api.state import provide_tx, services_of
from kartka.db import Connection
from kartka.errors import InvalidInput
from notifications.preferences import set_marketing

_UNSUBSCRIBE: Final = Template("""<!doctype html>
<html lang="$lang"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>$title</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}
button{font-size:1.1rem;padding:.7rem 1.2rem;border-radius:.5rem;border:0;background:#1b5e20;color:#fff}</style>
</head><body><h1>$title</h1>$body</body></html>""")

_UNSUBSCRIBE_TEXT: Final = {
    "ru": {
        "title": "Рассылка Kartka",
        "ask": "Больше не присылать вам акции и предложения? Сообщения о баллах и покупках будут приходить.",
        "button": "Отписаться",
        "done": "Готово: рекламных сообщений больше не будет. Вернуть подписку можно в приложении.",
    },
    "en": {
        "title": "Kartka offers",
        "ask": "Stop sending you offers? Messages about your points and purchases still come.",
        "button": "Unsubscribe",
        "done": "Done: no more offers. You can subscribe again in the app.",
    },
}


def _unsubscribe_page(lang: str, body: str, status: int = 200) -> Response[str]:
    text = _UNSUBSCRIBE_TEXT[lang]
    content = _UNSUBSCRIBE.substitute(lang=lang, title=html.escape(text["title"]), body=body)
    return Response(
        content, status_code=status, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


class UnsubscribeController(Controller):
    """The link in every marketing message. GET only asks (link previews and scanners fetch links);
    the button POSTs, which records the opt-out."""

    path = "/u"
    include_in_schema = False

    @get("/{token:str}", media_type="text/html")
    async def ask(self, token: FromPath[str], request: Request[Any, Any, State]) -> Response[str]:
        services = services_of(request.app.state)
        lang = preferred_language(request) or "ru"
        try:
            services.opt_out.customer(token)
        except InvalidInput as exc:
            return _unsubscribe_page(lang, f"<p>{html.escape(exc.message)}</p>", 404)
        text = _UNSUBSCRIBE_TEXT[lang]
        form = f'<p>{html.escape(text["ask"])}</p><form method="post"><button>{text["button"]}</button></form>'
        return _unsubscribe_page(lang, form)

    @post("/{token:str}", media_type="text/html", status_code=200, dependencies={"tx": Provide(provide_tx)})
    async def confirm(
        self, token: FromPath[str], request: Request[Any, Any, State], tx: NamedDependency[Connection]
    ) -> Response[str]:
        services = services_of(request.app.state)
        lang = preferred_language(request) or "ru"
        try:
            customer_id = services.opt_out.customer(token)
        except InvalidInput as exc:
            return _unsubscribe_page(lang, f"<p>{html.escape(exc.message)}</p>", 404)
        if await tx.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id) is None:
            return _unsubscribe_page(lang, "<p>?</p>", 404)
        await set_marketing(tx, customer_id, False, services.program, services.clock.now())
        return _unsubscribe_page(lang, f"<p>{html.escape(_UNSUBSCRIBE_TEXT[lang]['done'])}</p>")

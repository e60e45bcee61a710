"""The unsubscribe page every marketing message links to."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from api.pages import page_language, render
from api.state import provide_tx, services_of
from kartka.db import Connection
from kartka.errors import InvalidInput
from notifications.preferences import set_marketing


def _page(request: Request[Any, Any, State], kind: str, lang: str | None, status: int = 200) -> Template:
    """``ask``, ``done`` or ``invalid``, in the page's language (the ``lang`` query, Accept-Language,
    else the program's); the form posts back to the same address, ``lang`` included."""
    services = services_of(request.app.state)
    language = page_language(request, lang, services.program.language)
    brand = services.settings.pass_organization
    return render("unsubscribe.html", language, {"kind": kind, "brand": brand}, status=status, forms=True)


class UnsubscribeController(Controller):
    """The link in every marketing message. GET only asks (link previews and scanners fetch links);
    the button POSTs, which records the opt-out."""

    path = "/u"
    include_in_schema = False

    @get("/{token:str}", media_type="text/html")
    async def ask(
        self,
        token: FromPath[str],
        request: Request[Any, Any, State],
        lang: Annotated[str | None, QueryParameter(required=False, max_length=5)] = None,
    ) -> Template:
        try:
            services_of(request.app.state).opt_out.customer(token)
        except InvalidInput:
            return _page(request, "invalid", lang, 404)
        return _page(request, "ask", lang)

    @post("/{token:str}", media_type="text/html", status_code=200, dependencies={"tx": Provide(provide_tx)})
    async def confirm(
        self,
        token: FromPath[str],
        request: Request[Any, Any, State],
        tx: NamedDependency[Connection],
        lang: Annotated[str | None, QueryParameter(required=False, max_length=5)] = None,
    ) -> Template:
        services = services_of(request.app.state)
        try:
            customer_id = services.opt_out.customer(token)
        except InvalidInput:
            return _page(request, "invalid", lang, 404)
        if await tx.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id) is None:
            return _page(request, "invalid", lang, 404)  # a closed account's link
        await set_marketing(tx, customer_id, False, services.program, services.clock.now())
        return _page(request, "done", lang)

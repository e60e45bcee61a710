"""Server-rendered pages: the one template configuration, the one rule for a page's language and the
headers every page sends.

Templates live in ``api/templates`` (the shopper's pages in ``pages/``, the staff console in
``console/``) and are rendered by Jinja with autoescape on, so a value is escaped unless a template
says otherwise. Their words come from the text catalog (:mod:`kartka.texts`): a template calls
``t("page.join.title")`` in the page's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from api.request import preferred_language
from kartka import texts

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The app's one template configuration (every page and the console render through it)."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def security_headers(*, forms: bool) -> dict[str, str]:
    """What every page sends: not framed (clickjacking), no Referer (the card page's URL is a bearer
    token), not cached or indexed, and a CSP that allows only the page's own inline CSS and images."""
    form_action = "'self'" if forms else "'none'"
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex, nofollow",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"base-uri 'none'; form-action {form_action}; frame-ancestors 'none'",
    }


def page_language(request: Request[Any, Any, Any], explicit: str | None = None, *fallbacks: str | None) -> str:
    """The language a page speaks: ``explicit`` (the ``lang`` query or form field: what the language
    switch and the join form send), else the first of the catalog's in Accept-Language, else the first
    of ``fallbacks`` the catalog has (the card's, the program's), else the catalog's default.

    No cookie: the choice travels in the links and the form, so a shared phone or a link passed on
    opens in the language asked for, and no page keeps state about its reader."""
    catalog = texts.catalog()
    for choice in (preferred_language(request, explicit), *fallbacks):
        if choice in catalog.languages:
            return choice
    return catalog.default


def render(
    template: str,
    language: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    forms: bool = False,
    switch_params: Mapping[str, str] | None = None,
) -> Template:
    """``pages/<template>`` in ``language``, with the security headers (``forms``: it posts to itself);
    ``switch_params`` are what the language switch's links carry besides ``lang``."""

    def t(key: str, /, **params: Any) -> str:
        return texts.text(language, key, **params)

    catalog = texts.catalog()
    switch = [
        {"lang": other, "name": texts.text(other, "language.name")} for other in catalog.languages if other != language
    ]
    return Template(
        template_name=f"pages/{template}",
        context={"lang": language, "t": t, "switch": switch, "switch_params": switch_params or {}, **context},
        status_code=status,
        media_type="text/html",
        headers=security_headers(forms=forms),
    )

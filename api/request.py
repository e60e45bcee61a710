"""What handlers read off a request besides its body: the client's address and language."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from litestar import Request

from kartka.netaddr import ClientAddresses

#: Where :class:`ClientAddresses` lives in the app's state (set by the app factory).
CLIENT_ADDRESSES: Final = "client_addresses"


def client_address(request: Request[Any, Any, Any]) -> str:
    """The caller's address as every per-address limit counts it (see :class:`kartka.netaddr.ClientAddresses`)."""
    addresses: ClientAddresses = getattr(request.app.state, CLIENT_ADDRESSES, None) or ClientAddresses()
    client = request.scope.get("client")
    return addresses.of(str(client[0]) if client else None, request.headers.getall("x-forwarded-for", []))


def preferred_language(request: Request[Any, Any, Any], explicit: str | None = None) -> str | None:
    """``ru`` or ``en``: ``explicit`` when it is one of them, else the first of those in Accept-Language."""
    if explicit in ("ru", "en"):
        return explicit
    for part in request.headers.get("accept-language", "").split(","):
        language = part.split(";", 1)[0].strip().lower()[:2]
        if language in ("ru", "en"):
            return language
    return None


#: Paths that carry a secret: the card page's token and the unsubscribe link's.
_SECRET_PATHS: Final = re.compile(r"(/(?:c|u)/)[^/?#\s]+")


def redact_path(path: str) -> str:
    """``/c/<token>/pass.pkpass`` -> ``/c/…/pass.pkpass``: what logs may say about a request's path."""
    return _SECRET_PATHS.sub(r"\1…", path)


class RedactSecrets(logging.Filter):
    """Keeps the card-page and unsubscribe tokens out of the access log (uvicorn logs every path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_path(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True

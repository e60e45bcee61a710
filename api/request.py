"""What handlers read off a request besides its body: the client's address and language."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from litestar import Request

from kartka import texts
from kartka.logtext import clip
from kartka.netaddr import ClientAddresses

#: Where :class:`ClientAddresses` lives in the app's state (set by the app factory).
CLIENT_ADDRESSES: Final = "client_addresses"


def client_address(request: Request[Any, Any, Any]) -> str:
    """The caller's address as every per-address limit counts it (see :class:`kartka.netaddr.ClientAddresses`)."""
    addresses: ClientAddresses = getattr(request.app.state, CLIENT_ADDRESSES, None) or ClientAddresses()
    client = request.scope.get("client")
    return addresses.of(str(client[0]) if client else None, request.headers.getall("x-forwarded-for", []))


def preferred_language(request: Request[Any, Any, Any], explicit: str | None = None) -> str | None:
    """A language the text catalog has (``ru``, ``en``): ``explicit`` when it is one of them, else the
    first of those in Accept-Language, in the order given (q-values aside)."""
    catalog = texts.catalog()
    if explicit in catalog.languages:
        return explicit
    for part in request.headers.get("accept-language", "").split(","):
        language = catalog.supported(part.split(";", 1)[0].strip())
        if language is not None:
            return language
    return None


#: Path segments that are secrets: the card page's token and the unsubscribe link's, a PassKit device
#: id (all that the serial listing asks for) and an app push token (``DELETE /v1/me/devices/{token}``).
_SECRET_PATHS: Final = re.compile(r"(/(?:c|u|devices)/)[^/?#]+")


def redact_path(path: str) -> str:
    """``/c/<token>/pass.pkpass`` -> ``/c/…/pass.pkpass``: what logs may say about a request's path
    (uvicorn logs it percent-decoded: the log formatters, :mod:`kartka.logs`, escape what the client put
    in it)."""
    return clip(_SECRET_PATHS.sub(r"\1…", path), limit=2_000)


class RedactSecrets(logging.Filter):
    """Keeps secrets in paths out of the access log (uvicorn logs every path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_path(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True

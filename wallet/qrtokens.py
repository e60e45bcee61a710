"""The short-lived signed QR the app shows instead of the plain card number.

A screenshot of the plain card QR works forever for whoever has it; this token works for a minute
(``KARTKA_QR_TOKEN_SECONDS``). It reads ``KQ1.<card number>.<expiry, Unix seconds>.<MAC>`` with a
truncated HMAC-SHA256 in unpadded base32, so it uses only characters a QR code packs in its compact
alphanumeric mode (digits, capitals and '.'). Tills pass it wherever they pass a scanned code
(identify, calculate, commit); an expired or forged one is refused with 422, saying which.
"""

from __future__ import annotations

import base64
import hmac
import re
from datetime import UTC, datetime
from typing import Final

import msgspec

from kartka.crypto import keyed_hash, verification_keys
from kartka.errors import InvalidInput

PREFIX: Final = "KQ1."
_MAC_BYTES: Final = 16
_SHAPE: Final = re.compile(r"^KQ1\.([0-9]{13})\.([0-9]{1,12})\.([A-Z2-7]{26})$")


class QrTokenExpired(InvalidInput):
    code = "qr-token-expired"


class QrTokenInvalid(InvalidInput):
    code = "qr-token-invalid"


class QrToken(msgspec.Struct, frozen=True):
    token: str
    expires_at: datetime
    expires_in: int


class QrTokens:
    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl = ttl_seconds

    def _mac(self, card: str, expires: int, key: bytes | None = None) -> str:
        digest = keyed_hash(self._key if key is None else key, card, str(expires))[:_MAC_BYTES]
        return base64.b32encode(digest).decode().rstrip("=")

    def issue(self, card_number: str, now: datetime) -> QrToken:
        expires = int(now.timestamp()) + self.ttl
        token = f"{PREFIX}{card_number}.{expires}.{self._mac(card_number, expires)}"
        return QrToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC), expires_in=self.ttl)

    def card_number(self, token: str, now: datetime, *, field: str = "code") -> str:
        """The card a genuine, unexpired token names; 422 (expired or invalid) otherwise."""
        match = _SHAPE.match(token.strip())
        if match is None:
            raise QrTokenInvalid("this app QR code is not one Kartka made", field=field)
        card, expires, mac = match[1], int(match[2]), match[3]
        # A code shown just before an upgrade of the key derivation (kartka.crypto) still counts.
        if not any(hmac.compare_digest(mac, self._mac(card, expires, key)) for key in verification_keys(self._key)):
            raise QrTokenInvalid("this app QR code is not one Kartka made", field=field)
        if expires <= now.timestamp():
            raise QrTokenExpired(
                "this app QR code has expired: ask the shopper to open the card again (it renews every minute)",
                field=field,
            )
        return card


def looks_like_token(text: str) -> bool:
    return text.lstrip().startswith(PREFIX)

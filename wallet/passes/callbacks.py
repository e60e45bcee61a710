"""Google Wallet's save and delete callbacks, verified as Google signs them, kept as install history.

Google calls the class's callback URL (``POST /v1/webhooks/google-wallet``) when a shopper saves or
deletes a pass. The body is signed with the ``ECv2SigningOnly`` protocol of Google's payment-data
cryptography (what Tink's ``PaymentMethodTokenRecipient`` checks):

1. Google's root signing keys (ECDSA P-256, published at :data:`GOOGLE_ROOT_KEYS_URL`; configurable, so
   tests sign with a root of their own) sign an intermediate signing key: the signed bytes are
   length-prefixed ``"GooglePayPasses"``, ``"ECv2SigningOnly"`` and the ``signedKey`` JSON text.
2. The intermediate key carries its own expiry (``keyExpiration``, milliseconds); an expired one is refused.
3. The intermediate key signs the message: length-prefixed ``"GooglePayPasses"``, the issuer id (the
   recipient), ``"ECv2SigningOnly"`` and the ``signedMessage`` JSON text.

Each length prefix is four bytes, little-endian. Signatures are DER ECDSA with SHA-256, in base64. The
message names the class and object (both under this issuer), the event (``save`` or ``del``), when it
expires (``expTimeMillis``) and a nonce: Google may deliver an event twice, and the nonce makes the
second delivery change nothing. The cryptography is ``cryptography``'s; this module only assembles the
bytes the protocol signs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

import httpx
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kartka.db import Connection
from kartka.errors import InvalidInput, Unauthenticated, Unavailable

#: Where Google publishes the root signing keys of Google Wallet callbacks.
GOOGLE_ROOT_KEYS_URL: Final = "https://pay.google.com/gp/m/issuer/keys"
SENDER_ID: Final = "GooglePayPasses"
PROTOCOL: Final = "ECv2SigningOnly"
#: How long fetched root keys are used before they are fetched again (Google announces new ones ahead).
ROOT_KEYS_TTL: Final = timedelta(hours=1)
#: How much our clock may differ from Google's when expiries are compared.
CLOCK_LEEWAY: Final = timedelta(minutes=5)

_ECDSA: Final = ec.ECDSA(hashes.SHA256())


class CallbackRejected(Unauthenticated):
    """The body is not a callback Google signed for this issuer (or its signature has expired)."""

    code = "google-callback-rejected"
    challenge = 'ECv2SigningOnly realm="google-wallet-callbacks"'  # the signature is in the body


class _RootKeyEntry(msgspec.Struct, frozen=True):
    keyValue: str  # noqa: N815 - Google's field names
    protocolVersion: str  # noqa: N815
    keyExpiration: str | None = None  # noqa: N815


class _RootKeysDocument(msgspec.Struct, frozen=True):
    keys: list[_RootKeyEntry]


class RootKey(msgspec.Struct, frozen=True):
    key: ec.EllipticCurvePublicKey
    expires_at: datetime | None
    """``None``: no expiry given."""


class IntermediateSigningKey(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    signedKey: Annotated[str, msgspec.Meta(max_length=4096)]  # noqa: N815
    signatures: Annotated[list[Annotated[str, msgspec.Meta(max_length=512)]], msgspec.Meta(max_length=3)]
    """Google signs with a key or two at a time; a body carrying thousands is no callback (and each costs
    an ECDSA verification on the event loop)."""


class Envelope(msgspec.Struct, frozen=True):
    """A callback as it arrives, before anything in it is trusted."""

    protocolVersion: str  # noqa: N815
    signature: str
    intermediateSigningKey: IntermediateSigningKey  # noqa: N815
    signedMessage: str  # noqa: N815


class _SignedKey(msgspec.Struct, frozen=True):
    keyValue: str  # noqa: N815
    keyExpiration: str  # noqa: N815


class CallbackMessage(msgspec.Struct, frozen=True, rename="camel"):
    """What Google tells: this object of this class was saved (``save``) or deleted (``del``)."""

    class_id: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    object_id: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    event_type: Literal["save", "del"]
    exp_time_millis: int
    nonce: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    count: int | None = None


def _millis(value: str | int) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def _public_key(b64: str, what: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(base64.b64decode(b64, validate=True))
    except (ValueError, binascii.Error):
        raise CallbackRejected(f"the {what} is not a base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CallbackRejected(f"the {what} is not an ECDSA P-256 key")
    return key


def parse_root_keys(document: bytes) -> list[RootKey]:
    """The ``ECv2SigningOnly`` keys of Google's root-keys document (``{"keys": [{"keyValue", ...}]}``)."""
    try:
        parsed = msgspec.json.decode(document, type=_RootKeysDocument)
        return [
            RootKey(
                key=_public_key(entry.keyValue, "root signing key"),
                expires_at=_millis(entry.keyExpiration) if entry.keyExpiration else None,
            )
            for entry in parsed.keys
            if entry.protocolVersion == PROTOCOL
        ]
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, CallbackRejected) as exc:
        raise ValueError(f"not a document of Google's root signing keys: {exc}") from None


def _length_value(*parts: str) -> bytes:
    """The protocol's signed bytes: each part as a 4-byte little-endian length and its UTF-8 bytes."""
    out = bytearray()
    for part in parts:
        data = part.encode()
        out += len(data).to_bytes(4, "little") + data
    return bytes(out)


def _verifies(key: ec.EllipticCurvePublicKey, signature_b64: str, data: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), data, _ECDSA)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def read_envelope(body: bytes) -> Envelope:
    """The parts of a signed callback (nothing verified yet); :class:`CallbackRejected` for anything else,
    before Google's keys are needed."""
    try:
        envelope = msgspec.json.decode(body, type=Envelope)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise CallbackRejected("the body is not a signed Google Wallet callback") from None
    if envelope.protocolVersion != PROTOCOL:
        raise CallbackRejected(f"protocolVersion must be {PROTOCOL}, not {envelope.protocolVersion!r}")
    return envelope


def verify_callback(
    body: bytes | Envelope, *, roots: Sequence[RootKey], issuer_id: str, now: datetime
) -> CallbackMessage:
    """The message of a callback Google signed for ``issuer_id``; :class:`CallbackRejected` otherwise."""
    envelope = body if isinstance(body, Envelope) else read_envelope(body)

    intermediate = envelope.intermediateSigningKey
    signed_key = _length_value(SENDER_ID, PROTOCOL, intermediate.signedKey)
    live_roots = [r.key for r in roots if r.expires_at is None or r.expires_at > now - CLOCK_LEEWAY]
    if not any(_verifies(root, sig, signed_key) for root in live_roots for sig in intermediate.signatures):
        raise CallbackRejected("the intermediate signing key is not signed by any of Google's root keys")
    try:
        key_info = msgspec.json.decode(intermediate.signedKey, type=_SignedKey)
        key_expires = _millis(key_info.keyExpiration)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, OverflowError):
        raise CallbackRejected("the intermediate signing key is malformed") from None
    if key_expires <= now - CLOCK_LEEWAY:
        raise CallbackRejected(f"the intermediate signing key expired at {key_expires.isoformat()}")
    key = _public_key(key_info.keyValue, "intermediate signing key")

    if not _verifies(key, envelope.signature, _length_value(SENDER_ID, issuer_id, PROTOCOL, envelope.signedMessage)):
        raise CallbackRejected("the message's signature does not verify for this issuer")
    try:
        message = msgspec.json.decode(envelope.signedMessage, type=CallbackMessage)
        expires = _millis(message.exp_time_millis)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"the signed message is not a save or delete callback: {exc}") from None
    if expires <= now - CLOCK_LEEWAY:
        raise CallbackRejected(f"the message expired at {expires.isoformat()}")
    prefix = f"{issuer_id}."
    if not (message.class_id.startswith(prefix) and message.object_id.startswith(prefix)):
        raise CallbackRejected("the class or object is not this issuer's")
    return message


class GoogleRootKeys:
    """Google's root signing keys, fetched from ``url`` and used for :data:`ROOT_KEYS_TTL`. When Google
    does not answer, keys fetched before are used for up to a day; without any, callbacks get a 503
    (Google delivers them again later)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._keys: list[RootKey] = []
        self._fetched_at: datetime | None = None

    async def keys(self, now: datetime) -> list[RootKey]:
        if self._fetched_at is not None and now - self._fetched_at < ROOT_KEYS_TTL:
            return self._keys
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url)
                response.raise_for_status()
            self._keys, self._fetched_at = parse_root_keys(response.content), now
        except (httpx.HTTPError, ValueError) as exc:
            if self._fetched_at is not None and now - self._fetched_at < timedelta(days=1):
                return self._keys
            raise Unavailable(f"Google's root signing keys cannot be fetched ({exc})", retry_after=60) from None
        return self._keys


async def record_event(conn: Connection, message: CallbackMessage, issuer_id: str, now: datetime) -> bool:
    """Keep a verified save or delete; ``False`` when this nonce was recorded before (a redelivery).
    The object names a pass by its serial (``<issuer>.<serial>``, ``wallet.passes.google.object_id``)."""
    serial = message.object_id.removeprefix(f"{issuer_id}.")
    recorded = await conn.fetchval(
        """
        INSERT INTO google_wallet_events (nonce, event_type, class_id, object_id, serial_number, received_at)
        SELECT $1, $2, $3, $4, (SELECT serial_number FROM passes WHERE serial_number = $5), $6
        ON CONFLICT (nonce) DO NOTHING
        RETURNING true
        """,
        message.nonce,
        message.event_type,
        message.class_id,
        message.object_id,
        serial,
        now,
    )
    return bool(recorded)

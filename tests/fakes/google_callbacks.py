"""A fake of Google's side of Wallet callbacks: a root signing key of its own, published as Google
publishes its root keys (``GET /gp/m/issuer/keys``), and callbacks signed the way Google signs them
(ECv2SigningOnly): the root key signs an intermediate key with an expiry, which signs the message.

The signed bytes are built here independently of the code under test: each part prefixed with its length
as four little-endian bytes (Tink's ``PaymentMethodTokenUtil.toLengthValue``)."""

from __future__ import annotations

import base64
import json
import struct
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakes.server import Receive, Scope, Send, ThreadedServer, answer

KEYS_PATH = "/gp/m/issuer/keys"
DAY_MS = 86_400_000


def _b64_spki(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _signed_bytes(*parts: str) -> bytes:
    return b"".join(struct.pack("<I", len(p.encode())) + p.encode() for p in parts)


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


class FakeGoogleCallbacks(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.root = ec.generate_private_key(ec.SECP256R1())
        self.root_expires_ms: int | None = None
        self.fetches = 0

    @property
    def keys_url(self) -> str:
        return self.url + KEYS_PATH

    def keys_document(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"keyValue": _b64_spki(self.root), "protocolVersion": "ECv2SigningOnly"}
        if self.root_expires_ms is not None:
            entry["keyExpiration"] = str(self.root_expires_ms)
        # An ECv1 key beside it, as Google's document has: not for this protocol.
        other = ec.generate_private_key(ec.SECP256R1())
        return {"keys": [entry, {"keyValue": _b64_spki(other), "protocolVersion": "ECv1"}]}

    def callback(
        self,
        *,
        issuer: str,
        object_id: str,
        event: str = "save",
        now_ms: int,
        nonce: str | None = None,
        key_expires_ms: int | None = None,
        message_expires_ms: int | None = None,
        root: ec.EllipticCurvePrivateKey | None = None,
        recipient: str | None = None,
        class_id: str | None = None,
    ) -> bytes:
        """A callback body as Google sends it; the keyword arguments make it wrong in one way at a time."""
        intermediate = ec.generate_private_key(ec.SECP256R1())
        signed_key = json.dumps(
            {
                "keyValue": _b64_spki(intermediate),
                "keyExpiration": str(key_expires_ms if key_expires_ms is not None else now_ms + DAY_MS),
            },
            separators=(",", ":"),
        )
        message = json.dumps(
            {
                "classId": class_id or f"{issuer}.loyalty",
                "objectId": object_id,
                "eventType": event,
                "expTimeMillis": message_expires_ms if message_expires_ms is not None else now_ms + 60_000,
                "count": 1,
                "nonce": nonce or str(uuid.uuid4()),
            },
            separators=(",", ":"),
        )
        key_signature = _sign(root or self.root, _signed_bytes("GooglePayPasses", "ECv2SigningOnly", signed_key))
        body = {
            "signature": _sign(
                intermediate, _signed_bytes("GooglePayPasses", recipient or issuer, "ECv2SigningOnly", message)
            ),
            "intermediateSigningKey": {
                "signedKey": signed_key,
                "signatures": [key_signature],
            },
            "protocolVersion": "ECv2SigningOnly",
            "signedMessage": message,
        }
        return json.dumps(body).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and scope["path"] == KEYS_PATH:
            self.fetches += 1
            await answer(send, 200, json.dumps(self.keys_document()).encode(), {"content-type": "application/json"})
            return
        await answer(send, 404, b"{}", {"content-type": "application/json"})

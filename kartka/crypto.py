"""Keys derived from the one service secret, one per purpose.

Everything the service signs or hashes with a key (access tokens, sign-in codes, in-app QR tokens,
rate-limit buckets, opt-out links) uses its own key derived from ``KARTKA_SECRET_KEY``, so a value
made for one purpose can never be replayed as another, and one setting rotates them all.

Derivation is HKDF-SHA256 (RFC 5869, ``cryptography``'s implementation) with the purpose as ``info``.
Before it, keys were ``sha256("kartka-{purpose}:" + secret)`` (version 1). Values signed with a
version-1 key may still be out there when a deployment upgrades: opt-out links in messages sent weeks
ago, and for a few minutes access tokens, sign-in codes and QR codes. So a derived key carries the
version-1 key of the same purpose in :attr:`DerivedKey.previous`, and verifiers accept either
(:func:`verification_keys`); everything new is made with the HKDF key. Rate-limit buckets are named
with the new key only: their windows start afresh once, at the upgrade.

Private keys read from files (the wallets' signing keys, service accounts, the APNs key) go through
:func:`load_private_key`, which parses each distinct key once per process.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO_PREFIX: Final = b"kartka/v2/"


class DerivedKey(bytes):
    """A 256-bit key for one purpose, with the keys earlier derivations gave that purpose (still accepted
    when verifying, never used to sign)."""

    previous: tuple[bytes, ...]

    def __new__(cls, key: bytes, previous: tuple[bytes, ...] = ()) -> DerivedKey:
        self = super().__new__(cls, key)
        self.previous = previous
        return self


def derive_key(secret: str, purpose: str) -> DerivedKey:
    """The key for ``purpose`` (a short fixed label such as ``"jwt"`` or ``"otp"``): HKDF-SHA256 of the
    secret with ``info`` = ``kartka/v2/{purpose}``, remembering the version-1 key for verification."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO_PREFIX + purpose.encode())
    return DerivedKey(hkdf.derive(secret.encode()), previous=(legacy_key(secret, purpose),))


def legacy_key(secret: str, purpose: str) -> bytes:
    """The version-1 key (``sha256("kartka-{purpose}:" + secret)``): verification of old values only."""
    return hashlib.sha256(f"kartka-{purpose}:".encode() + secret.encode()).digest()


def verification_keys(key: bytes) -> tuple[bytes, ...]:
    """The keys a value signed for this key's purpose may carry: the current one first."""
    return (key, *(key.previous if isinstance(key, DerivedKey) else ()))


def keyed_hash(key: bytes, *parts: str) -> bytes:
    """HMAC-SHA256 of the parts, joined unambiguously (a part may contain any character but NUL)."""
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).digest()


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKeyTypes:
    """A PEM (``-----BEGIN``) or DER private key, parsed once per distinct key and password: parsing an
    RSA key checks it (tens of milliseconds), and every start of the services reads the same keys, the
    API's and the worker's alike. Raises as ``cryptography`` does (ValueError, TypeError); a failure is
    not remembered. Key objects are immutable, so sharing one is safe."""
    return _load_private_key(bytes(data), password)


@functools.lru_cache(maxsize=64)
def _load_private_key(data: bytes, password: bytes | None) -> PrivateKeyTypes:
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, password)
    return serialization.load_der_private_key(data, password)

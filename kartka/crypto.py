"""Keys derived from the one service secret, one per purpose.

Everything the service signs or hashes with a key (access tokens, sign-in codes, in-app QR tokens,
rate-limit buckets, opt-out links) uses its own key derived from ``KARTKA_SECRET_KEY``, so a value
made for one purpose can never be replayed as another, and one setting rotates them all.
"""

from __future__ import annotations

import hashlib
import hmac


def derive_key(secret: str, purpose: str) -> bytes:
    """A 256-bit key for ``purpose`` (a short fixed label such as ``"jwt"`` or ``"otp"``)."""
    return hashlib.sha256(f"kartka-{purpose}:".encode() + secret.encode()).digest()


def keyed_hash(key: bytes, *parts: str) -> bytes:
    """HMAC-SHA256 of the parts, joined unambiguously (a part may contain any character but NUL)."""
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).digest()

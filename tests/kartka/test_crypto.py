"""Keys per purpose by HKDF, and values made under the version-1 derivation still verify after an upgrade."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from kartka.clock import FakeClock
from kartka.crypto import derive_key, legacy_key, load_private_key, verification_keys
from kartka.errors import InvalidInput, Unauthenticated
from kartka.tokens import ALGORITHM, Audience, Tokens
from notifications.preferences import OptOutLinks
from wallet.qrtokens import QrTokenInvalid, QrTokens

SECRET = "a-service-secret-of-some-length-0123456789"


def _rfc5869(secret: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 written out from RFC 5869 (no salt: a zero-filled one; 32 bytes: one block)."""
    prk = hmac.new(b"\0" * 32, secret, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=64), st.sampled_from(["jwt", "otp", "qr", "rate", "opt-out", "join-form"]))
def test_the_key_is_hkdf_of_the_secret_with_the_purpose_as_info(secret: str, purpose: str) -> None:
    key = derive_key(secret, purpose)
    assert bytes(key) == _rfc5869(secret.encode(), b"kartka/v2/" + purpose.encode())
    assert verification_keys(key) == (bytes(key), hashlib.sha256(f"kartka-{purpose}:{secret}".encode()).digest())


def test_purposes_and_versions_never_share_a_key() -> None:
    keys = [bytes(derive_key(SECRET, p)) for p in ("jwt", "otp", "qr", "rate", "opt-out")]
    keys += [legacy_key(SECRET, p) for p in ("jwt", "otp", "qr", "rate", "opt-out")]
    assert len(set(keys)) == len(keys)


def test_an_opt_out_link_sent_before_the_upgrade_still_unsubscribes() -> None:
    customer = uuid.uuid4()
    links = OptOutLinks(secret=SECRET, public_base="https://k.example")
    old = OptOutLinks(secret=SECRET, public_base="https://k.example")
    old._key = legacy_key(SECRET, "opt-out")  # what the previous release signed with
    assert links.token(customer) != old.token(customer)
    assert links.customer(old.token(customer)) == customer
    assert links.customer(links.token(customer)) == customer
    other_purpose = OptOutLinks(secret=SECRET, public_base="https://k.example")
    other_purpose._key = legacy_key(SECRET, "qr")
    with pytest.raises(InvalidInput):
        links.customer(other_purpose.token(customer))


def test_an_access_token_signed_with_the_version_1_key_verifies_and_a_foreign_one_does_not() -> None:
    clock = FakeClock()
    tokens = Tokens(key=derive_key(SECRET, "jwt"), issuer="kartka", access_seconds=600, refresh_days=30, clock=clock)
    now = int(clock.now().timestamp())
    claims = {
        "iss": "kartka",
        "aud": Audience.APP.value,
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    old = jwt.encode(claims, legacy_key(SECRET, "jwt"), algorithm=ALGORITHM)
    assert str(tokens.verify(old, Audience.APP).subject) == claims["sub"]
    new = jwt.encode(claims, bytes(derive_key(SECRET, "jwt")), algorithm=ALGORITHM)
    assert str(tokens.verify(new, Audience.APP).subject) == claims["sub"]
    for key in (legacy_key(SECRET, "otp"), legacy_key("another-secret-entirely-0123456789", "jwt")):
        with pytest.raises(Unauthenticated):
            tokens.verify(jwt.encode(claims, key, algorithm=ALGORITHM), Audience.APP)


def test_an_app_qr_code_shown_across_the_upgrade_is_accepted() -> None:
    clock = FakeClock()
    old = QrTokens(legacy_key(SECRET, "qr"), 60).issue("2000000000015", clock.now()).token
    tokens = QrTokens(derive_key(SECRET, "qr"), 60)
    assert tokens.card_number(old, clock.now()) == "2000000000015"
    forged = QrTokens(legacy_key(SECRET, "jwt"), 60).issue("2000000000015", clock.now()).token
    with pytest.raises(QrTokenInvalid):
        tokens.card_number(forged, clock.now())


def test_a_private_key_is_parsed_once_and_read_as_pem_or_der_with_its_password() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    first = load_private_key(pem)
    assert load_private_key(pem) is first  # every start of the services reads the same file again
    assert first.private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    assert load_private_key(der, b"secret").private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        load_private_key(der)  # encrypted: the password is part of what is asked
    with pytest.raises(ValueError, match="password"):
        load_private_key(der, b"wrong")
    with pytest.raises(ValueError, match="PEM"):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")

"""Google Wallet callbacks verified as Google signs them (ECv2SigningOnly), off the database: a root key
the test makes signs an intermediate key with an expiry, which signs the message for this issuer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakes.google_callbacks import DAY_MS, FakeGoogleCallbacks
from wallet.passes.callbacks import CallbackRejected, RootKey, parse_root_keys, verify_callback

ISSUER = "3388000000012345678"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.fixture(scope="module")
def google() -> FakeGoogleCallbacks:
    return FakeGoogleCallbacks()  # signs only: no server started


def roots(google: FakeGoogleCallbacks) -> list[RootKey]:
    return parse_root_keys(json.dumps(google.keys_document()).encode())


def test_a_save_google_signed_for_this_issuer_verifies(google: FakeGoogleCallbacks) -> None:
    body = google.callback(issuer=ISSUER, object_id=f"{ISSUER}.2000000000015", now_ms=NOW_MS, nonce="n-1")
    message = verify_callback(body, roots=roots(google), issuer_id=ISSUER, now=NOW)
    assert (message.event_type, message.object_id, message.class_id, message.nonce) == (
        "save",
        f"{ISSUER}.2000000000015",
        f"{ISSUER}.loyalty",
        "n-1",
    )
    deleted = google.callback(issuer=ISSUER, object_id=f"{ISSUER}.2000000000015", event="del", now_ms=NOW_MS)
    assert verify_callback(deleted, roots=roots(google), issuer_id=ISSUER, now=NOW).event_type == "del"


def test_only_keys_of_this_protocol_are_taken_from_googles_document(google: FakeGoogleCallbacks) -> None:
    assert len(roots(google)) == 1
    with pytest.raises(ValueError, match="root signing keys"):
        parse_root_keys(b'{"keys": [{"keyValue": "bm90IGEga2V5", "protocolVersion": "ECv2SigningOnly"}]}')


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"root": ec.generate_private_key(ec.SECP256R1())}, "not signed by any of Google's root keys"),
        ({"key_expires_ms": NOW_MS - 10 * 60_000}, "intermediate signing key expired"),
        ({"recipient": "1111111111111111111"}, "does not verify for this issuer"),
        ({"message_expires_ms": NOW_MS - 10 * 60_000}, "the message expired"),
        ({"class_id": "1111111111111111111.loyalty"}, "not this issuer's"),
        ({"object_id": "1111111111111111111.2000000000015"}, "not this issuer's"),
    ],
)
def test_a_callback_wrong_in_any_one_way_is_refused(
    google: FakeGoogleCallbacks, change: dict[str, object], reason: str
) -> None:
    fields: dict[str, object] = {"issuer": ISSUER, "object_id": f"{ISSUER}.2000000000015", "now_ms": NOW_MS}
    body = google.callback(**(fields | change))  # type: ignore[arg-type]
    with pytest.raises(CallbackRejected, match=reason):
        verify_callback(body, roots=roots(google), issuer_id=ISSUER, now=NOW)


def test_tampering_with_the_message_or_the_key_breaks_the_signature(google: FakeGoogleCallbacks) -> None:
    body = json.loads(google.callback(issuer=ISSUER, object_id=f"{ISSUER}.2000000000015", now_ms=NOW_MS))
    tampered = dict(body, signedMessage=body["signedMessage"].replace('"save"', '"del"'))
    with pytest.raises(CallbackRejected, match="does not verify"):
        verify_callback(json.dumps(tampered).encode(), roots=roots(google), issuer_id=ISSUER, now=NOW)
    key = body["intermediateSigningKey"]
    longer = dict(key, signedKey=key["signedKey"].replace(str(NOW_MS + DAY_MS), str(NOW_MS + 100 * DAY_MS)))
    tampered_key = json.dumps(dict(body, intermediateSigningKey=longer)).encode()
    with pytest.raises(CallbackRejected, match="root keys"):
        verify_callback(tampered_key, roots=roots(google), issuer_id=ISSUER, now=NOW)
    with pytest.raises(CallbackRejected, match="protocolVersion"):
        verify_callback(
            json.dumps(dict(body, protocolVersion="ECv2")).encode(), roots=roots(google), issuer_id=ISSUER, now=NOW
        )
    with pytest.raises(CallbackRejected, match="not a signed"):
        verify_callback(b'{"eventType": "save"}', roots=roots(google), issuer_id=ISSUER, now=NOW)


def test_an_expired_root_key_signs_nothing(google: FakeGoogleCallbacks) -> None:
    body = google.callback(issuer=ISSUER, object_id=f"{ISSUER}.2000000000015", now_ms=NOW_MS)
    expired = FakeGoogleCallbacks()
    expired.root, expired.root_expires_ms = google.root, NOW_MS - DAY_MS
    with pytest.raises(CallbackRejected, match="root keys"):
        verify_callback(body, roots=roots(expired), issuer_id=ISSUER, now=NOW)
    current = FakeGoogleCallbacks()
    current.root, current.root_expires_ms = google.root, NOW_MS + DAY_MS
    assert verify_callback(body, roots=roots(current), issuer_id=ISSUER, now=NOW).event_type == "save"

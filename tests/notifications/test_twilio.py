"""The Twilio SMS provider against a fake Twilio over real HTTP, and its status callbacks."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from kartka.settings import Environment, Secret, SettingsError, SmsProvider, load_settings
from notifications.model import (
    Channel,
    Outbound,
    Outcome,
    Provider,
    ProviderUnavailable,
    Receipt,
    ReceiptStatus,
    SendResult,
)
from notifications.providers.twilio import (
    IDEMPOTENCY_HEADER,
    TwilioSms,
    compute_signature,
    load_twilio,
    parse_status,
    verify_signature,
)
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, RETRY_AFTER, FakeTwilio, sign

SENDER = "+15005550006"
CALLBACK = "https://kartka.example.by/v1/webhooks/twilio"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    twilio = FakeTwilio()
    twilio.start()
    yield twilio
    twilio.stop()


@pytest.fixture
async def sms(fake: FakeTwilio) -> AsyncIterator[TwilioSms]:
    provider = TwilioSms(
        base_url=fake.url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        from_=SENDER,
        status_callback=CALLBACK,
        timeout=0.3,
    )
    yield provider
    await provider.aclose()


def message(n: int, to: str = "+375291234567", text: str = "Код входа Kartka: 482913.") -> Outbound:
    return Outbound(id=n, key=f"otp:{n}", channel=Channel.SMS, recipient=to, text=text)


def by_id(results: list[SendResult]) -> dict[int, SendResult]:
    return {r.id: r for r in results}


# -- sending --------------------------------------------------------------------------------------------


async def test_is_a_provider(sms: TwilioSms) -> None:
    provider: Provider = sms
    assert (provider.name, provider.channels, provider.max_batch) == ("twilio", frozenset({Channel.SMS}), 50)


async def test_sends_form_encoded_with_basic_auth(fake: FakeTwilio, sms: TwilioSms) -> None:
    [result] = await sms.send([message(1)])
    [sent] = fake.sent
    assert result == SendResult(id=1, outcome=Outcome.SENT, provider_message_id=sent.sid)
    assert sent.sid.startswith("SM")
    assert (sent.to, sent.from_, sent.body) == ("+375291234567", SENDER, "Код входа Kartka: 482913.")
    assert sent.status_callback == CALLBACK
    assert sent.token == "otp:1"
    headers = fake.headers[-1]
    assert headers["authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers[IDEMPOTENCY_HEADER.lower()] == "otp:1"


async def test_a_messaging_service_is_sent_as_such(fake: FakeTwilio) -> None:
    service = "MG" + "0123456789abcdef" * 2
    provider = TwilioSms(base_url=fake.url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_=service)
    try:
        [result] = await provider.send([message(1)])
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.SENT
    [sent] = fake.sent
    assert (sent.from_, sent.messaging_service_sid, sent.status_callback) == (None, service, None)


async def test_a_batch_goes_concurrently(fake: FakeTwilio) -> None:
    # Its own client with room to connect 50 times at once on a busy machine (the shared one gives up
    # after 0.3 s, for the timeout tests); concurrency shows in the total, as before.
    sms = TwilioSms(base_url=fake.url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_=SENDER, timeout=2.0)
    fake.mode, fake.delay = "slow", 0.2
    batch = [message(n, to=f"+3752912345{n:02d}") for n in range(50)]
    started = time.monotonic()
    try:
        results = await sms.send(batch)
    finally:
        await sms.aclose()
    elapsed = time.monotonic() - started
    assert sorted(r.id for r in results if r.outcome is Outcome.SENT) == list(range(50))
    assert len({r.provider_message_id for r in results}) == 50
    assert elapsed < 0.2 * 25, f"50 messages took {elapsed:.2f}s: not concurrent"  # one by one: 10 s


async def test_more_than_a_batch_is_refused(sms: TwilioSms) -> None:
    with pytest.raises(ValueError, match="at most 50"):
        await sms.send([message(n) for n in range(51)])


async def test_an_empty_batch_sends_nothing(fake: FakeTwilio, sms: TwilioSms) -> None:
    assert await sms.send([]) == []
    assert fake.requests == 0


async def test_idempotency_token_replay_is_the_same_message(fake: FakeTwilio, sms: TwilioSms) -> None:
    [first] = await sms.send([message(7)])
    [again] = await sms.send([message(7)])
    assert first.provider_message_id == again.provider_message_id
    assert fake.requests == 2
    assert len(fake.sent) == 1
    [other] = await sms.send([message(8)])
    assert other.provider_message_id != first.provider_message_id
    assert len(fake.sent) == 2


async def test_invalid_and_unsubscribed_numbers_fail_that_message_only(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.numbers["+375297654321"] = "unsubscribed"
    results = by_id(await sms.send([message(1), message(2, to="+12"), message(3, to="+375297654321")]))
    assert results[1].outcome is Outcome.SENT
    assert results[2] == SendResult(id=2, outcome=Outcome.FAILED, error="21211: Invalid 'To' Phone Number: +12")
    assert results[3] == SendResult(
        id=3, outcome=Outcome.FAILED, error="21610: Attempt to send to unsubscribed recipient"
    )
    assert [s.to for s in fake.sent] == ["+375291234567"]


async def test_invalid_mode_fails_every_message(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.mode = "invalid"
    results = await sms.send([message(1), message(2)])
    assert all(r.outcome is Outcome.FAILED and (r.error or "").startswith("21211: ") for r in results)


async def test_rate_limited_message_retries_after_what_twilio_said(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.numbers["+375297654321"] = "rate-limited"
    results = by_id(await sms.send([message(1), message(2, to="+375297654321")]))
    assert results[1].outcome is Outcome.SENT
    assert results[2].outcome is Outcome.RETRY
    assert results[2].retry_after == float(RETRY_AFTER)
    assert "20429" in (results[2].error or "")


async def test_server_error_retries_that_message(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.numbers["+375297654321"] = "error"
    results = by_id(await sms.send([message(1), message(2, to="+375297654321")]))
    assert results[1].outcome is Outcome.SENT
    assert results[2].outcome is Outcome.RETRY
    assert results[2].retry_after is None
    assert "HTTP 503" in (results[2].error or "")


async def test_a_batch_that_only_hit_rate_limits_is_a_provider_failure(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.mode = "rate-limited"
    with pytest.raises(ProviderUnavailable, match="429") as caught:
        await sms.send([message(1), message(2)])
    assert caught.value.retry_after == float(RETRY_AFTER)


async def test_a_batch_that_only_hit_server_errors_is_a_provider_failure(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.mode, fake.fail_times = "error", 2
    with pytest.raises(ProviderUnavailable, match="503") as caught:
        await sms.send([message(1), message(2)])
    assert caught.value.retry_after is None
    # Twilio recovered: the same messages go through, once each.
    results = await sms.send([message(1), message(2)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert len(fake.sent) == 2


async def test_a_refused_message_and_server_errors_are_per_message(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.numbers["+375297654321"] = "error"
    results = by_id(await sms.send([message(1, to="+12"), message(2, to="+375297654321")]))
    assert (results[1].outcome, results[2].outcome) == (Outcome.FAILED, Outcome.RETRY)


async def test_bad_credentials_make_the_provider_unavailable(fake: FakeTwilio) -> None:
    provider = TwilioSms(base_url=fake.url, account_sid=ACCOUNT_SID, auth_token="wrong", from_=SENDER)
    try:
        with pytest.raises(ProviderUnavailable, match="bad credentials"):
            await provider.send([message(1), message(2)])
    finally:
        await provider.aclose()
    assert fake.sent == []


async def test_an_unknown_account_makes_the_provider_unavailable(fake: FakeTwilio) -> None:
    provider = TwilioSms(base_url=fake.url, account_sid="AC" + "f" * 32, auth_token=AUTH_TOKEN, from_=SENDER)
    try:
        with pytest.raises(ProviderUnavailable, match="bad credentials"):  # Twilio checks credentials first
            await provider.send([message(1)])
    finally:
        await provider.aclose()


async def test_a_wrong_base_url_makes_the_provider_unavailable(fake: FakeTwilio) -> None:
    provider = TwilioSms(base_url=f"{fake.url}/api", account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_=SENDER)
    try:
        with pytest.raises(ProviderUnavailable, match="not found"):
            await provider.send([message(1)])
    finally:
        await provider.aclose()


async def test_a_timeout_makes_the_provider_unavailable(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.mode, fake.delay = "slow", 1.0
    with pytest.raises(ProviderUnavailable, match="timeout"):
        await sms.send([message(1)])


async def test_a_timeout_never_discards_messages_twilio_accepted(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.delay = 1.0
    fake.numbers["+375297654321"] = "slow"
    results = by_id(await sms.send([message(1), message(2, to="+375297654321")]))
    assert results[1].outcome is Outcome.SENT
    assert results[2].outcome is Outcome.RETRY
    assert (results[2].error or "").startswith("timeout")


async def test_a_closed_port_makes_the_provider_unavailable(fake: FakeTwilio, sms: TwilioSms) -> None:
    fake.stop()
    with pytest.raises(ProviderUnavailable, match="connection"):
        await sms.send([message(1)])


def test_load_twilio_reads_the_settings() -> None:
    settings = load_settings(
        {},
        environment=Environment.TEST,
        sms_provider=SmsProvider.TWILIO,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=Secret(AUTH_TOKEN),
        twilio_from=SENDER,
        twilio_base_url="http://127.0.0.1:9",
        provider_timeout_seconds=4.0,
    )
    provider = load_twilio(settings, CALLBACK)
    assert (provider.name, provider.account_sid, provider.from_, provider.status_callback) == (
        "twilio",
        ACCOUNT_SID,
        SENDER,
        CALLBACK,
    )
    with pytest.raises(SettingsError, match="KARTKA_TWILIO_ACCOUNT_SID"):
        load_twilio(load_settings({}, environment=Environment.TEST), CALLBACK)


# -- status callbacks -------------------------------------------------------------------------------------

#: The example of Twilio's webhook security docs and of twilio-python's RequestValidator tests.
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
DOC_TOKEN = "12345"
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_signature_matches_twilios_documented_example() -> None:
    assert compute_signature(DOC_URL, DOC_PARAMS, DOC_TOKEN) == DOC_SIGNATURE
    assert sign(DOC_URL, DOC_PARAMS, DOC_TOKEN) == DOC_SIGNATURE  # the fake's helper agrees
    assert verify_signature(DOC_URL, DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN)
    assert verify_signature(DOC_URL, dict(reversed(DOC_PARAMS.items())), DOC_SIGNATURE, DOC_TOKEN)


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        # twilio-python's vectors: Twilio may sign the URL with or without the port, so both pass.
        ("https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed with :443
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", DOC_SIGNATURE),  # signed without the port
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # signed with :80
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),  # signed with :1234
    ],
)
def test_signature_accepts_the_url_with_and_without_its_port(url: str, signature: str) -> None:
    assert verify_signature(url, DOC_PARAMS, signature, DOC_TOKEN)


@pytest.mark.parametrize(
    ("url", "params", "signature", "token"),
    [
        (DOC_URL, DOC_PARAMS | {"Digits": "9999"}, DOC_SIGNATURE, DOC_TOKEN),
        (DOC_URL, DOC_PARAMS | {"Extra": ""}, DOC_SIGNATURE, DOC_TOKEN),
        (DOC_URL, {k: v for k, v in DOC_PARAMS.items() if k != "Digits"}, DOC_SIGNATURE, DOC_TOKEN),
        (DOC_URL.replace("foo=1", "foo=2"), DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN),
        (DOC_URL.replace("https", "http"), DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN),
        (DOC_URL.replace("mycompany", "MyCompany"), DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN),
        (DOC_URL, DOC_PARAMS, DOC_SIGNATURE, "54321"),
        (DOC_URL, DOC_PARAMS, DOC_SIGNATURE, ""),
        (DOC_URL, DOC_PARAMS, "", DOC_TOKEN),
        (DOC_URL, DOC_PARAMS, DOC_SIGNATURE.lower(), DOC_TOKEN),
        (DOC_URL, DOC_PARAMS, DOC_SIGNATURE[:-1], DOC_TOKEN),
        (DOC_URL, DOC_PARAMS, "подпись", DOC_TOKEN),
    ],
)
def test_signature_rejects_tampering(url: str, params: dict[str, str], signature: str, token: str) -> None:
    assert not verify_signature(url, params, signature, token)


async def test_fake_callbacks_verify_and_parse(fake: FakeTwilio, sms: TwilioSms) -> None:
    [result] = await sms.send([message(1)])
    [sent] = fake.sent
    url, params, signature = fake.callback(sent, "delivered")
    assert url == CALLBACK
    assert verify_signature(url, params, signature, AUTH_TOKEN)
    assert not verify_signature(url, params | {"MessageStatus": "failed"}, signature, AUTH_TOKEN)
    assert parse_status(params) == Receipt(
        provider="twilio", provider_message_id=result.provider_message_id or "", status=ReceiptStatus.DELIVERED
    )


@pytest.mark.parametrize(
    ("status", "extra", "expected", "error"),
    [
        ("accepted", {}, ReceiptStatus.PENDING, None),
        ("queued", {}, ReceiptStatus.PENDING, None),
        ("sending", {}, ReceiptStatus.PENDING, None),
        ("sent", {}, ReceiptStatus.PENDING, None),
        ("delivered", {}, ReceiptStatus.DELIVERED, None),
        ("undelivered", {"ErrorCode": "30003"}, ReceiptStatus.FAILED, "30003: unreachable destination handset"),
        ("failed", {"ErrorCode": "30008"}, ReceiptStatus.FAILED, "30008: unknown error"),
        ("failed", {"ErrorCode": "30410", "ErrorMessage": "Provider Timeout Error"}, ReceiptStatus.FAILED,
         "30410: Provider Timeout Error"),
        ("failed", {"ErrorCode": "39999"}, ReceiptStatus.FAILED, "39999"),
        ("undelivered", {}, ReceiptStatus.FAILED, "undelivered"),
    ],
)  # fmt: skip
def test_parse_status(status: str, extra: dict[str, str], expected: ReceiptStatus, error: str | None) -> None:
    params = {"MessageSid": "SM" + "a" * 32, "MessageStatus": status, "AccountSid": ACCOUNT_SID} | extra
    assert parse_status(params) == Receipt(
        provider="twilio", provider_message_id="SM" + "a" * 32, status=expected, error=error
    )


def test_parse_status_ignores_what_is_not_an_outbound_status() -> None:
    assert parse_status({"MessageSid": "SM1", "MessageStatus": "received"}) is None
    assert parse_status({"MessageStatus": "delivered"}) is None
    assert parse_status({"MessageSid": "SM1"}) is None
    legacy = parse_status({"SmsSid": "SM1", "SmsStatus": "delivered"})
    assert legacy is not None
    assert legacy.status is ReceiptStatus.DELIVERED

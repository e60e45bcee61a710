"""The APNs adapter against a fake APNs speaking HTTP/2 over TLS on a real socket.

What the fake received is compared with what we meant to send, headers included; each kind of APNs
answer is checked to become the outcome the worker needs; and the failures of the whole call (refused
provider token, nothing listening, an untrusted server, no answer in time) raise ProviderUnavailable.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from kartka.settings import load_settings
from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable
from notifications.providers.apns import ApnsProvider, apns_id, load_apns
from tests.fakes.apns import FakeApns, Reply
from tests.fakes.tls import ApnsKey, TlsFiles, make_apns_key, make_service_account, make_tls

KEY_ID = "K3Y1D00001"
TEAM_ID = "T3AM000001"
TOPIC = "by.kartka.app"
TOKEN = "a1b2c3d4" * 8  # device tokens are 64 hex digits


@dataclass(frozen=True)
class Material:
    tls: TlsFiles
    key: ApnsKey
    directory: Path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    directory = tmp_path_factory.mktemp("apns")
    return Material(tls=make_tls(directory), key=make_apns_key(directory), directory=directory)


@pytest.fixture(scope="module")
def server(material: Material) -> Iterator[FakeApns]:
    fake = FakeApns(material.tls, public_pem=material.key.public_pem, key_id=KEY_ID, team_id=TEAM_ID)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def apns(server: FakeApns) -> FakeApns:
    server.reset()
    return server


def make_provider(
    fake: FakeApns,
    material: Material,
    *,
    key_pem: str | None = None,
    key_id: str = KEY_ID,
    team_id: str = TEAM_ID,
    url: str | None = None,
    trust: bool = True,
    timeout: float = 5.0,
) -> ApnsProvider:
    return ApnsProvider(
        url=url or fake.url,
        key_pem=key_pem or material.key.private_pem,
        key_id=key_id,
        team_id=team_id,
        topic=TOPIC,
        ca_file=material.tls.ca_file if trust else None,
        timeout=timeout,
    )


@pytest.fixture
async def provider(apns: FakeApns, material: Material) -> AsyncIterator[ApnsProvider]:
    provider = make_provider(apns, material)
    yield provider
    await provider.aclose()


def push(
    id: int, token: str = TOKEN, *, text: str = "Начислено 120 баллов", title: str | None = None, **data: str
) -> Outbound:
    return Outbound(
        id=id, key=f"points-earned:{id}", channel=Channel.APNS, recipient=token, text=text, title=title, data=data
    )


def token(n: int) -> str:
    return f"{n:064x}"


async def test_sends_alerts_as_apple_expects_them(provider: ApnsProvider, apns: FakeApns) -> None:
    messages = [push(1, token(1), title="Kartka", card="2000123"), push(2, token(2))]

    results = await provider.send(messages)

    assert sorted((r.id, r.outcome, r.provider_message_id, r.error) for r in results) == [
        (1, Outcome.SENT, apns_id("points-earned:1"), None),
        (2, Outcome.SENT, apns_id("points-earned:2"), None),
    ]
    assert apns.alpn == ["h2"]  # one TLS connection, HTTP/2 chosen by ALPN
    by_token = {request.token: request for request in apns.received}
    assert set(by_token) == {token(1), token(2)}
    first, second = by_token[token(1)], by_token[token(2)]
    assert first.payload == {"aps": {"alert": {"title": "Kartka", "body": "Начислено 120 баллов"}}, "card": "2000123"}
    assert second.payload == {"aps": {"alert": "Начислено 120 баллов"}}
    headers = first.headers
    assert headers[":method"] == "POST"
    assert headers[":scheme"] == "https"
    assert headers[":path"] == f"/3/device/{token(1)}"
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-id"] == apns_id("points-earned:1")
    assert headers["apns-collapse-id"] == "points-earned:1"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    scheme, _, provider_token = headers["authorization"].partition(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(provider_token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    assert jwt.decode(provider_token, options={"verify_signature": False})["iss"] == TEAM_ID


async def test_a_full_batch_shares_one_http2_connection(provider: ApnsProvider, apns: FakeApns) -> None:
    messages = [push(n, token(n)) for n in range(1, provider.max_batch + 1)]

    results = await provider.send(messages)

    assert sorted(r.id for r in results if r.outcome is Outcome.SENT) == list(range(1, 101))
    assert len(apns.received) == 100
    assert len({request.apns_id for request in apns.received}) == 100
    assert apns.alpn == ["h2"]


async def test_a_contentless_push_goes_to_the_topic_it_names(provider: ApnsProvider, apns: FakeApns) -> None:
    pass_update = push(1, token(1), text="", topic="pass.by.kartka.loyalty")
    default_topic = push(2, token(2), text="")

    results = await provider.send([pass_update, default_topic])

    assert {r.outcome for r in results} == {Outcome.SENT}
    by_token = {request.token: request for request in apns.received}
    assert by_token[token(1)].payload == {}
    assert by_token[token(1)].topic == "pass.by.kartka.loyalty"
    assert by_token[token(1)].headers["apns-push-type"] == "background"
    assert by_token[token(1)].headers["apns-priority"] == "5"
    assert by_token[token(2)].payload == {}
    assert by_token[token(2)].topic == TOPIC


async def test_a_retry_carries_the_same_apns_id(provider: ApnsProvider, apns: FakeApns) -> None:
    message = push(7, token(7))
    apns.replies[token(7)] = Reply(503, "ServiceUnavailable")
    [first] = await provider.send([message])
    del apns.replies[token(7)]
    [second] = await provider.send([message])
    [other] = await provider.send([push(8, token(7))])

    assert (first.outcome, second.outcome, other.outcome) == (Outcome.RETRY, Outcome.SENT, Outcome.SENT)
    ids = [request.apns_id for request in apns.requests]
    assert ids[0] == ids[1] == second.provider_message_id == apns_id(message.key)
    assert uuid.UUID(ids[0]).version == 5
    assert ids[2] != ids[0]
    assert [request.headers["apns-collapse-id"] for request in apns.requests] == [
        "points-earned:7",
        "points-earned:7",
        "points-earned:8",
    ]


async def test_a_long_key_is_cut_to_a_valid_collapse_id(provider: ApnsProvider, apns: FakeApns) -> None:
    message = Outbound(id=1, key="campaign:" + "ж" * 60, channel=Channel.APNS, recipient=token(1), text="Скидки")

    [result] = await provider.send([message])

    assert result.outcome is Outcome.SENT
    collapse_id = apns.received[0].headers["apns-collapse-id"]
    assert len(collapse_id.encode()) <= 64
    assert message.key.startswith(collapse_id)


@pytest.mark.parametrize(
    ("reply", "outcome", "error", "retry_after"),
    [
        (Reply(410, "Unregistered"), Outcome.UNREGISTERED, "410 Unregistered", None),
        (Reply(400, "BadDeviceToken"), Outcome.UNREGISTERED, "400 BadDeviceToken", None),
        (Reply(400, "DeviceTokenNotForTopic"), Outcome.FAILED, "400 DeviceTokenNotForTopic", None),
        (Reply(413, "PayloadTooLarge"), Outcome.FAILED, "413 PayloadTooLarge", None),
        (Reply(429, "TooManyRequests", retry_after="7"), Outcome.RETRY, "429 TooManyRequests", 7.0),
        (Reply(429, "TooManyRequests"), Outcome.RETRY, "429 TooManyRequests", None),
        (Reply(500, "InternalServerError"), Outcome.RETRY, "500 InternalServerError", None),
        (Reply(503, "ServiceUnavailable", retry_after="30"), Outcome.RETRY, "503 ServiceUnavailable", 30.0),
        (Reply(503), Outcome.RETRY, "503 no reason given", None),  # a 5xx without a body still settles
    ],
)
async def test_apns_answers_become_outcomes(
    provider: ApnsProvider,
    apns: FakeApns,
    reply: Reply,
    outcome: Outcome,
    error: str,
    retry_after: float | None,
) -> None:
    apns.replies[token(1)] = reply

    results = await provider.send([push(1, token(1)), push(2, token(2))])

    by_id = {result.id: result for result in results}
    assert (by_id[1].outcome, by_id[1].error, by_id[1].retry_after) == (outcome, error, retry_after)
    assert by_id[1].provider_message_id is None
    assert by_id[2].outcome is Outcome.SENT


@pytest.mark.parametrize("wrong", ["key", "key_id", "team_id"])
async def test_refused_credentials_make_the_provider_unavailable(
    apns: FakeApns, material: Material, wrong: str
) -> None:
    other_key = make_apns_key(material.directory, name="AuthKey_OTHER.p8")
    provider = make_provider(
        apns,
        material,
        key_pem=other_key.private_pem if wrong == "key" else None,
        key_id="OTHERKEY01" if wrong == "key_id" else KEY_ID,
        team_id="OTHERTEAM1" if wrong == "team_id" else TEAM_ID,
    )
    try:
        with pytest.raises(ProviderUnavailable, match="403 InvalidProviderToken"):
            await provider.send([push(1, token(1)), push(2, token(2))])
    finally:
        await provider.aclose()
    assert apns.received == []


async def test_no_answer_in_time_makes_the_provider_unavailable(apns: FakeApns, material: Material) -> None:
    provider = make_provider(apns, material, timeout=0.3)
    try:
        apns.default = Reply(delay=0.8)
        with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.3s"):
            await provider.send([push(1, token(1)), push(2, token(2))])
        apns.default = Reply()
        # the late answers arrive on the same connection and are dropped
        assert await asyncio.to_thread(apns.wait_late_answers, 2)

        [result] = await provider.send([push(3, token(3))])

        assert result.outcome is Outcome.SENT
        assert apns.alpn == ["h2"]  # the connection survived the late answers
    finally:
        await provider.aclose()


async def test_one_slow_message_is_retried_alone(apns: FakeApns, material: Material) -> None:
    provider = make_provider(apns, material, timeout=0.3)
    try:
        apns.replies[token(1)] = Reply(delay=0.8)
        results = await provider.send([push(1, token(1)), push(2, token(2))])
    finally:
        await provider.aclose()

    by_id = {result.id: result for result in results}
    assert by_id[1].outcome is Outcome.RETRY
    assert by_id[1].error == "no answer within 0.3s"
    assert by_id[2].outcome is Outcome.SENT


async def test_nothing_listening_makes_the_provider_unavailable(apns: FakeApns, material: Material) -> None:
    provider = make_provider(apns, material, url="https://127.0.0.1:9", timeout=3.0)
    try:
        with pytest.raises(ProviderUnavailable, match=r"cannot reach 127\.0\.0\.1:9"):
            await provider.send([push(1, token(1))])
    finally:
        await provider.aclose()


async def test_an_untrusted_server_is_refused(apns: FakeApns, material: Material) -> None:
    provider = make_provider(apns, material, trust=False, timeout=3.0)
    try:
        with pytest.raises(ProviderUnavailable, match="cannot reach"):
            await provider.send([push(1, token(1))])
    finally:
        await provider.aclose()
    assert apns.requests == []


async def test_settings_build_the_provider(apns: FakeApns, material: Material) -> None:
    assert load_apns(load_settings({})) is None
    settings = load_settings(
        {},
        apns_url=apns.url,
        apns_key_file=material.key.path,
        apns_key_id=KEY_ID,
        apns_team_id=TEAM_ID,
        apns_topic=TOPIC,
        apns_ca_file=material.tls.ca_file,
        provider_timeout_seconds=2.0,
    )
    provider = load_apns(settings)
    assert provider is not None
    try:
        [result] = await provider.send([push(1, token(1))])
    finally:
        await provider.aclose()

    assert result.outcome is Outcome.SENT
    assert apns.received[0].topic == TOPIC


def test_a_key_that_is_not_p256_is_refused_at_start(material: Material) -> None:
    with pytest.raises(ValueError, match="not a PEM private key"):
        ApnsProvider(key_pem="not a key", key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC)
    rsa_key = make_service_account(material.directory, token_uri="http://127.0.0.1:1/token").info["private_key"]
    with pytest.raises(ValueError, match="must be an EC P-256 key"):
        ApnsProvider(key_pem=rsa_key, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC)
    with pytest.raises(ValueError, match="https://host"):
        ApnsProvider(
            url="http://127.0.0.1:1", key_pem=material.key.private_pem, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC
        )

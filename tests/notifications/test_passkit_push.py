"""Wallet pass updates through APNs with certificate auth, against the fake APNs over real TLS and HTTP/2.

The Pass Type ID certificate from the development chain is the TLS client certificate (the WWDR
stand-in goes with it in the handshake, the fake trusts only the development root), the pass type id
is the topic and the payload is ``{}``. What Apple answers per device token becomes the outcome; a
certificate Apple does not accept makes the whole lane unavailable.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioapns
import pytest
from cryptography.hazmat.primitives import serialization

from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable
from notifications.providers.apns import ApnsProvider, apns_id, load_passkit_pusher
from tests.fakes.apns import FakeApns, Reply
from tests.fakes.tls import TlsFiles, make_tls
from wallet.passes.devcerts import DevCerts, generate_dev_certs
from wallet.passes.identity import PassIdentity, load_pass_identity

PASS_TYPE_ID = "pass.by.kartka.test"
TEAM_ID = "KARTKATEST"


@dataclass(frozen=True)
class Material:
    tls: TlsFiles  # the fake APNs server's certificate and the CA the provider trusts it by
    dev: DevCerts  # the development chain the fake trusts client certificates by
    identity: PassIdentity
    stranger: PassIdentity  # the same pass type id from another development chain: not trusted


def dev_identity(directory: Path) -> tuple[DevCerts, PassIdentity]:
    dev = generate_dev_certs(directory, pass_type_id=PASS_TYPE_ID, team_id=TEAM_ID, organization="Kartka")
    return dev, load_pass_identity(dev.cert_file, dev.key_file, dev.wwdr_file)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    dev, identity = dev_identity(tmp_path_factory.mktemp("dev-certs"))
    _, stranger = dev_identity(tmp_path_factory.mktemp("other-dev-certs"))
    return Material(tls=make_tls(tmp_path_factory.mktemp("apns-tls")), dev=dev, identity=identity, stranger=stranger)


@pytest.fixture(scope="module")
def server(material: Material) -> Iterator[FakeApns]:
    fake = FakeApns(material.tls, client_ca=material.dev.ca_file)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def apns(server: FakeApns) -> FakeApns:
    server.reset()
    return server


@pytest.fixture
async def pusher(apns: FakeApns, material: Material) -> AsyncIterator[ApnsProvider]:
    provider = load_passkit_pusher(material.identity, url=apns.url, ca_file=material.tls.ca_file, timeout=5.0)
    yield provider
    await provider.aclose()


def chain_pem(identity: PassIdentity, *, wwdr: bool = True) -> bytes:
    certificates = [identity.certificate, identity.wwdr] if wwdr else [identity.certificate]
    key = identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates) + key


def cert_provider(
    fake: FakeApns, material: Material, pem: bytes, *, topic: str = PASS_TYPE_ID, timeout: float = 5.0
) -> ApnsProvider:
    return ApnsProvider(
        url=fake.url,
        client_certificate_pem=pem,
        topic=topic,
        ca_file=material.tls.ca_file,
        timeout=timeout,
        name="passkit",
        channels={Channel.PASSKIT},
    )


def pass_update(id: int, token: str) -> Outbound:
    """What the wallet side enqueues when a pass changed: no text, no title, nothing in the payload."""
    return Outbound(id=id, key=f"pass-updated:{id}", channel=Channel.PASSKIT, recipient=token, text="")


def token(n: int) -> str:
    return f"{n:064x}"


async def test_a_pass_update_is_pushed_with_the_pass_certificate(pusher: ApnsProvider, apns: FakeApns) -> None:
    assert (pusher.name, pusher.channels, pusher.max_batch) == ("passkit", frozenset({Channel.PASSKIT}), 100)

    [result] = await pusher.send([pass_update(1, token(1))])

    assert (result.outcome, result.provider_message_id, result.error) == (Outcome.SENT, apns_id("pass-updated:1"), None)
    assert apns.alpn == ["h2"]
    [request] = apns.received
    assert request.certificate_uid == PASS_TYPE_ID  # authenticated by the client certificate, not a token
    assert "authorization" not in request.headers
    assert request.payload == {}
    assert request.topic == PASS_TYPE_ID
    assert request.headers[":path"] == f"/3/device/{token(1)}"
    assert request.headers["apns-push-type"] == "background"
    assert request.headers["apns-priority"] == "5"
    assert request.headers["apns-id"] == apns_id("pass-updated:1")


async def test_without_the_wwdr_intermediate_the_chain_does_not_verify(apns: FakeApns, material: Material) -> None:
    provider = cert_provider(apns, material, chain_pem(material.identity, wwdr=False), timeout=3.0)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.send([pass_update(1, token(1))])
    finally:
        await provider.aclose()
    assert apns.requests == []


async def test_a_dead_push_token_is_unregistered_alone(pusher: ApnsProvider, apns: FakeApns) -> None:
    apns.replies[token(2)] = Reply(410, "Unregistered")

    results = await pusher.send([pass_update(n, token(n)) for n in (1, 2, 3)])

    by_id = {result.id: result for result in results}
    assert {n: by_id[n].outcome for n in by_id} == {1: Outcome.SENT, 2: Outcome.UNREGISTERED, 3: Outcome.SENT}
    assert by_id[2].error == "410 Unregistered"
    assert by_id[2].provider_message_id is None
    assert sorted(request.token for request in apns.received) == [token(1), token(3)]
    assert {request.certificate_uid for request in apns.requests} == {PASS_TYPE_ID}


@pytest.mark.parametrize(
    ("reply", "outcome", "error", "retry_after"),
    [
        (Reply(400, "BadDeviceToken"), Outcome.UNREGISTERED, "400 BadDeviceToken", None),
        (Reply(400, "DeviceTokenNotForTopic"), Outcome.FAILED, "400 DeviceTokenNotForTopic", None),
        (Reply(429, "TooManyRequests", retry_after="7"), Outcome.RETRY, "429 TooManyRequests", 7.0),
        (Reply(503, "ServiceUnavailable", retry_after="30"), Outcome.RETRY, "503 ServiceUnavailable", 30.0),
    ],
)
async def test_apns_answers_become_outcomes(
    pusher: ApnsProvider, apns: FakeApns, reply: Reply, outcome: Outcome, error: str, retry_after: float | None
) -> None:
    apns.replies[token(1)] = reply

    results = await pusher.send([pass_update(1, token(1)), pass_update(2, token(2))])

    by_id = {result.id: result for result in results}
    assert (by_id[1].outcome, by_id[1].error, by_id[1].retry_after) == (outcome, error, retry_after)
    assert by_id[2].outcome is Outcome.SENT


async def test_another_topic_is_disallowed_for_the_certificate(apns: FakeApns, material: Material) -> None:
    provider = cert_provider(apns, material, chain_pem(material.identity), topic="pass.by.kartka.other")
    try:
        results = await provider.send([pass_update(1, token(1)), pass_update(2, token(2))])
    finally:
        await provider.aclose()

    assert sorted((r.id, r.outcome, r.error) for r in results) == [
        (1, Outcome.FAILED, "400 TopicDisallowed"),
        (2, Outcome.FAILED, "400 TopicDisallowed"),
    ]
    assert {request.topic for request in apns.requests} == {"pass.by.kartka.other"}
    assert apns.received == []


async def test_an_untrusted_certificate_makes_the_lane_unavailable(apns: FakeApns, material: Material) -> None:
    provider = load_passkit_pusher(material.stranger, url=apns.url, ca_file=material.tls.ca_file, timeout=3.0)
    try:
        with pytest.raises(ProviderUnavailable, match="cannot reach"):  # the TLS handshake was refused
            await provider.send([pass_update(n, token(n)) for n in (1, 2, 3)])
    finally:
        await provider.aclose()
    assert apns.requests == []


@pytest.mark.parametrize("reason", ["BadCertificate", "BadCertificateEnvironment"])
async def test_a_refused_certificate_makes_the_lane_unavailable(
    pusher: ApnsProvider, apns: FakeApns, reason: str
) -> None:
    apns.default = Reply(403, reason)

    with pytest.raises(ProviderUnavailable, match=f"refused our client certificate: 403 {reason}"):
        await pusher.send([pass_update(1, token(1)), pass_update(2, token(2))])


def test_the_fake_wants_a_certificate_or_a_token(apns: FakeApns) -> None:
    headers = {":method": "POST", ":path": f"/3/device/{token(1)}", "apns-topic": PASS_TYPE_ID}

    assert apns.judge(headers, b"{}")[:2] == (403, "MissingProviderToken")
    assert apns.judge(headers, b"{}", certificate_uid=PASS_TYPE_ID)[:2] == (200, None)
    assert [request.certificate_uid for request in apns.requests] == [None, PASS_TYPE_ID]


async def test_the_private_key_file_is_gone_after_construction(
    apns: FakeApns, material: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: list[tuple[Path, int, int, bytes]] = []

    def spy(**kwargs: Any) -> Any:
        path = Path(kwargs["client_cert"])
        seen.append(
            (path, stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode), path.read_bytes())
        )
        return aioapns.APNs(**kwargs)

    monkeypatch.setattr("notifications.providers.apns.APNs", spy)

    provider = load_passkit_pusher(material.identity, url=apns.url, ca_file=material.tls.ca_file, timeout=5.0)
    try:
        [(path, file_mode, directory_mode, content)] = seen
        assert path.is_relative_to(scratch)
        assert (file_mode, directory_mode) == (0o600, 0o700)
        assert content == chain_pem(material.identity)  # leaf, WWDR, then the key
        assert not path.exists()
        assert os.listdir(scratch) == []
        [result] = await provider.send([pass_update(1, token(1))])  # the chain was loaded before the deletion
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.SENT


def test_bad_credentials_are_refused_at_start(material: Material) -> None:
    pem = chain_pem(material.identity)
    key_pem = material.dev.apns_key_file.read_text()
    with pytest.raises(ValueError, match="not both"):
        ApnsProvider(client_certificate_pem=pem, key_pem=key_pem, key_id="K", team_id="T", topic=PASS_TYPE_ID)
    with pytest.raises(ValueError, match=r"a provider key .* or a client certificate"):
        ApnsProvider(topic=PASS_TYPE_ID)
    with pytest.raises(ValueError, match=r"a provider key .* or a client certificate"):
        ApnsProvider(key_pem=key_pem, topic=PASS_TYPE_ID)
    with pytest.raises(ValueError, match="holds no certificate"):
        ApnsProvider(client_certificate_pem=b"not a pem", topic=PASS_TYPE_ID)
    with pytest.raises(ValueError, match="no readable private key"):
        ApnsProvider(client_certificate_pem=pem.split(b"-----BEGIN PRIVATE KEY")[0], topic=PASS_TYPE_ID)
    encrypted = material.identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    certificate = material.identity.certificate.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="is encrypted"):
        ApnsProvider(client_certificate_pem=certificate + encrypted, topic=PASS_TYPE_ID)
    wwdr_first = material.identity.wwdr.public_bytes(serialization.Encoding.PEM) + pem
    with pytest.raises(ValueError, match="does not belong to its first certificate"):
        ApnsProvider(client_certificate_pem=wwdr_first, topic=PASS_TYPE_ID)
    with pytest.raises(ValueError, match="topic must not be empty"):
        ApnsProvider(client_certificate_pem=pem, topic="")

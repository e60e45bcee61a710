"""The FCM adapter against a fake Google (OAuth token endpoint and FCM v1) over real HTTP.

The fake verifies our signed assertion and our access tokens the way Google does, so these tests show
the whole exchange: the token fetched once and reused, refreshed before it expires and once after a
401, each FCM answer turned into the outcome the worker needs, and the failures of the whole call
(credentials refused, token endpoint down, FCM unreachable or silent) raised as ProviderUnavailable.
"""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kartka.settings import load_settings
from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable
from notifications.providers.fcm import SCOPE, FcmProvider, load_fcm
from tests.fakes.fcm import FakeFcm, Reply
from tests.fakes.tls import ServiceAccount, make_service_account


@pytest.fixture(scope="module")
def server() -> Iterator[FakeFcm]:
    fake = FakeFcm(project_id="kartka-test")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def account(server: FakeFcm, tmp_path_factory: pytest.TempPathFactory) -> ServiceAccount:
    account = make_service_account(tmp_path_factory.mktemp("fcm"), token_uri=server.token_uri)
    server.trust(account.info["client_email"], account.public_pem)
    return account


@pytest.fixture
def fcm(server: FakeFcm, account: ServiceAccount) -> FakeFcm:
    server.reset()
    return server


@pytest.fixture
async def provider(fcm: FakeFcm, account: ServiceAccount) -> AsyncIterator[FcmProvider]:
    provider = FcmProvider(url=fcm.url, service_account=account.info, timeout=5.0)
    yield provider
    await provider.aclose()


def push(id: int, token: str, *, text: str = "Начислено 120 баллов", title: str | None = None, **data: str) -> Outbound:
    return Outbound(
        id=id, key=f"points-earned:{id}", channel=Channel.FCM, recipient=token, text=text, title=title, data=data
    )


async def test_sends_v1_messages_with_an_oauth_token(provider: FcmProvider, fcm: FakeFcm) -> None:
    results = await provider.send([push(1, "device-1", title="Kartka", card="2000123"), push(2, "device-2")])

    assert sorted((r.id, r.outcome, r.error) for r in results) == [(1, Outcome.SENT, None), (2, Outcome.SENT, None)]
    assert all((r.provider_message_id or "").startswith("projects/kartka-test/messages/") for r in results)
    by_token = {request.token: request for request in fcm.received}
    assert by_token["device-1"].message == {
        "token": "device-1",
        "notification": {"title": "Kartka", "body": "Начислено 120 баллов"},
        "data": {"card": "2000123"},
        "android": {"priority": "high"},
    }
    assert by_token["device-2"].message == {
        "token": "device-2",
        "notification": {"body": "Начислено 120 баллов"},
        "data": {},
        "android": {"priority": "high"},
    }
    [grant] = fcm.grants
    assert grant["iss"] == "push@kartka-test.iam.gserviceaccount.com"
    assert grant["scope"] == SCOPE
    assert grant["aud"] == fcm.token_uri
    assert by_token["device-1"].headers["authorization"].startswith("Bearer ya29.fake-")
    assert by_token["device-1"].headers["content-type"] == "application/json"


async def test_a_message_without_text_is_data_only(provider: FcmProvider, fcm: FakeFcm) -> None:
    [result] = await provider.send([push(1, "device-1", text="", pass_serial="2000123")])

    assert result.outcome is Outcome.SENT
    assert "notification" not in fcm.received[0].message
    assert fcm.received[0].message["data"] == {"pass_serial": "2000123"}


async def test_the_access_token_is_reused_while_it_lives(provider: FcmProvider, fcm: FakeFcm) -> None:
    await provider.send([push(1, "device-1")])
    await provider.send([push(2, "device-2"), push(3, "device-3")])

    assert len(fcm.grants) == 1
    assert len({request.headers["authorization"] for request in fcm.received}) == 1


async def test_a_token_close_to_expiry_is_replaced(provider: FcmProvider, fcm: FakeFcm) -> None:
    fcm.expires_in = 30  # inside the refresh margin: each send needs a new one

    await provider.send([push(1, "device-1")])
    await provider.send([push(2, "device-2")])

    assert len(fcm.grants) == 2
    assert len({request.headers["authorization"] for request in fcm.received}) == 2


async def test_a_401_refreshes_the_token_once_and_resends(provider: FcmProvider, fcm: FakeFcm) -> None:
    await provider.send([push(1, "device-1")])
    fcm.revoke_tokens()

    results = await provider.send([push(2, "device-2"), push(3, "device-3")])

    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(fcm.grants) == 2  # one refresh for the whole batch
    assert fcm.unauthenticated == 2
    assert sorted(request.token for request in fcm.received) == ["device-1", "device-2", "device-3"]


async def test_a_401_after_the_refresh_makes_the_provider_unavailable(provider: FcmProvider, fcm: FakeFcm) -> None:
    fcm.accept_tokens = False

    with pytest.raises(ProviderUnavailable, match="401 UNAUTHENTICATED"):
        await provider.send([push(1, "device-1")])

    assert len(fcm.grants) == 2
    assert fcm.unauthenticated == 2


async def test_a_403_makes_the_provider_unavailable(provider: FcmProvider, fcm: FakeFcm) -> None:
    fcm.default = Reply(403)

    with pytest.raises(ProviderUnavailable, match="403 PERMISSION_DENIED"):
        await provider.send([push(1, "device-1"), push(2, "device-2")])

    assert len(fcm.grants) == 1  # no refresh: a new token would not change the permission


def http_date(seconds: int) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("reply", "outcome", "error", "retry_after"),
    [
        (Reply(404, "UNREGISTERED"), Outcome.UNREGISTERED, "404 UNREGISTERED", None),
        (Reply(404), Outcome.UNREGISTERED, "404 NOT_FOUND", None),
        (Reply(400, "UNREGISTERED"), Outcome.UNREGISTERED, "400 UNREGISTERED", None),
        (Reply(400, "INVALID_ARGUMENT"), Outcome.FAILED, "400 INVALID_ARGUMENT", None),
        (Reply(403, "SENDER_ID_MISMATCH"), Outcome.FAILED, "403 SENDER_ID_MISMATCH", None),
        (Reply(429, "QUOTA_EXCEEDED", retry_after="12"), Outcome.RETRY, "429 QUOTA_EXCEEDED", 12.0),
        (Reply(429), Outcome.RETRY, "429 RESOURCE_EXHAUSTED", None),
        (Reply(503, "UNAVAILABLE", retry_after="5"), Outcome.RETRY, "503 UNAVAILABLE", 5.0),
        (Reply(500, "INTERNAL"), Outcome.RETRY, "500 INTERNAL", None),
    ],
)
async def test_fcm_answers_become_outcomes(
    provider: FcmProvider, fcm: FakeFcm, reply: Reply, outcome: Outcome, error: str, retry_after: float | None
) -> None:
    fcm.replies["device-1"] = reply

    results = await provider.send([push(1, "device-1"), push(2, "device-2")])

    by_id = {result.id: result for result in results}
    assert (by_id[1].outcome, by_id[1].retry_after) == (outcome, retry_after)
    assert (by_id[1].error or "").startswith(f"{error}: ")
    assert by_id[1].provider_message_id is None
    assert by_id[2].outcome is Outcome.SENT


async def test_retry_after_as_an_http_date(provider: FcmProvider, fcm: FakeFcm) -> None:
    fcm.replies["device-1"] = Reply(503, "UNAVAILABLE", retry_after=http_date(30))

    [result] = await provider.send([push(1, "device-1")])

    assert result.outcome is Outcome.RETRY
    assert result.retry_after is not None
    assert 25 <= result.retry_after <= 31


async def test_a_token_endpoint_failure_makes_the_provider_unavailable(provider: FcmProvider, fcm: FakeFcm) -> None:
    fcm.token_reply = Reply(500)

    with pytest.raises(ProviderUnavailable, match="token endpoint refused the service account: 500"):
        await provider.send([push(1, "device-1")])

    assert fcm.requests == []


async def test_an_unknown_key_is_refused_by_the_token_endpoint(fcm: FakeFcm, tmp_path: Path) -> None:
    stranger = make_service_account(tmp_path, token_uri=fcm.token_uri)  # same email, a key Google never saw
    provider = FcmProvider(url=fcm.url, service_account=stranger.info, timeout=5.0)
    try:
        with pytest.raises(ProviderUnavailable, match="invalid_grant"):
            await provider.send([push(1, "device-1")])
    finally:
        await provider.aclose()
    assert fcm.token_errors[0].startswith("invalid_grant: Invalid JWT: InvalidSignatureError")


async def test_a_silent_token_endpoint_makes_the_provider_unavailable(fcm: FakeFcm, account: ServiceAccount) -> None:
    fcm.token_reply = Reply(delay=1.0)
    provider = FcmProvider(url=fcm.url, service_account=account.info, timeout=0.3)
    try:
        with pytest.raises(ProviderUnavailable, match=r"did not answer within 0\.3s"):
            await provider.send([push(1, "device-1")])
    finally:
        await provider.aclose()


async def test_no_answer_in_time_makes_the_provider_unavailable(fcm: FakeFcm, account: ServiceAccount) -> None:
    provider = FcmProvider(url=fcm.url, service_account=account.info, timeout=0.3)
    try:
        await provider.send([push(1, "device-1")])  # the token, fetched while the server is quick
        fcm.default = Reply(delay=1.0)
        with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.3s"):
            await provider.send([push(2, "device-2"), push(3, "device-3")])

        fcm.replies["device-5"] = Reply()
        results = await provider.send([push(4, "device-4"), push(5, "device-5")])
    finally:
        await provider.aclose()

    by_id = {result.id: result for result in results}
    assert (by_id[4].outcome, by_id[4].error) == (Outcome.RETRY, "no answer within 0.3s")
    assert by_id[5].outcome is Outcome.SENT


async def test_nothing_listening_makes_the_provider_unavailable(fcm: FakeFcm, account: ServiceAccount) -> None:
    provider = FcmProvider(url="http://127.0.0.1:9", service_account=account.info, timeout=2.0)
    try:
        with pytest.raises(ProviderUnavailable, match=r"cannot reach http://127\.0\.0\.1:9/v1/projects/kartka-test"):
            await provider.send([push(1, "device-1")])
    finally:
        await provider.aclose()


async def test_settings_build_the_provider(fcm: FakeFcm, account: ServiceAccount) -> None:
    assert load_fcm(load_settings({})) is None
    settings = load_settings({}, fcm_url=fcm.url, fcm_service_account_file=account.path)
    provider = load_fcm(settings)
    assert provider is not None
    try:
        [result] = await provider.send([push(1, "device-1")])
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.SENT


def test_an_incomplete_service_account_is_refused_at_start(account: ServiceAccount) -> None:
    with pytest.raises(ValueError, match="lacks token_uri, project_id"):
        FcmProvider(service_account={"client_email": "a@b", "private_key": account.info["private_key"]})
    with pytest.raises(ValueError, match="not a PEM private key"):
        FcmProvider(service_account={**account.info, "private_key": "nope"})

"""The Google Wallet provider against a fake Google (OAuth token endpoint and walletobjects v1) over real HTTP.

The fake verifies the save link and our access tokens the way Google does and stores what it is sent,
so these tests show the whole life of a card's pass: the shopper saves it from the link, a balance
change PATCHes the newest state read at send time, and every answer of Google's becomes the outcome
the worker needs, with failures of the whole call raised as ProviderUnavailable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable
from notifications.providers.google_wallet import GoogleWalletProvider
from tests.fakes.fcm import Reply
from tests.fakes.google_wallet import WALLET_SCOPE, FakeGoogleWallet, SaveRefused
from tests.fakes.tls import ServiceAccount, make_service_account
from wallet.models import BalanceView, Expiring, NextTier, TierView
from wallet.passes.google import (
    SAVE_URL,
    GooglePassData,
    GoogleWalletConfig,
    class_id,
    loyalty_class,
    loyalty_object,
    object_id,
    save_url,
)

ISSUER = "3388000000012345678"
ORIGIN = "https://kartka.example"
CONFIG = GoogleWalletConfig(
    issuer_id=ISSUER,
    program_name="Веска бонус",
    issuer_name="Веска",
    logo_url="https://kartka.example/static/logo.png",
    origins=(ORIGIN,),
    hex_background_color="#0b6e4f",
)
GOLD = TierView(
    code="gold",
    name="Gold",
    rate=1000,
    spend_365d=60_000,
    next=NextTier(code="platinum", name="Platinum", threshold=150_000),
    to_next=90_000,
)
ANNA, BORIS, VERA = "2000000000015", "2000000000022", "2000000000039"


def card(number: str = ANNA, available: int = 12_550, **changes: Any) -> GooglePassData:
    data = GooglePassData(
        card_number=number,
        holder_name="Анна Козлова",
        balance=BalanceView(available=available, pending=0, next_available_at=None, expiring_soon=Expiring(0, None)),
        tier=GOLD,
        active=True,
        card_page_url=f"https://kartka.example/c/{number}",
    )
    return msgspec.structs.replace(data, **changes)


class Cards:
    """The integrating side's ``load_objects``: each card's current state, as the database would say."""

    def __init__(self) -> None:
        self.state: dict[str, GooglePassData | None] = {}
        self.loads: list[list[str]] = []
        self.on_load: list[asyncio.Event] = []

    def set(self, *cards: GooglePassData) -> None:
        for data in cards:
            self.state[data.card_number] = data

    async def load(self, numbers: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        self.loads.append(list(numbers))
        for event in self.on_load:
            event.set()
        return {
            number: loyalty_object(CONFIG, data) if (data := self.state.get(number)) is not None else None
            for number in numbers
        }


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGoogleWallet]:
    fake = FakeGoogleWallet(issuer_id=ISSUER)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def account(server: FakeGoogleWallet, tmp_path_factory: pytest.TempPathFactory) -> ServiceAccount:
    account = make_service_account(tmp_path_factory.mktemp("gwallet"), token_uri=server.token_uri)
    server.trust(account.info["client_email"], account.public_pem, account.info["private_key_id"])
    return account


@pytest.fixture
def google(server: FakeGoogleWallet, account: ServiceAccount) -> FakeGoogleWallet:
    server.reset()
    return server


@pytest.fixture
def cards() -> Cards:
    return Cards()


def make_provider(
    google: FakeGoogleWallet,
    account: ServiceAccount,
    cards: Cards,
    *,
    base_url: str | None = None,
    timeout: float = 5.0,
    service_account: dict[str, str] | None = None,
) -> GoogleWalletProvider:
    return GoogleWalletProvider(
        base_url=base_url or google.url,
        service_account=service_account or account.info,
        config=CONFIG,
        load_objects=cards.load,
        timeout=timeout,
    )


@pytest.fixture
async def provider(
    google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> AsyncIterator[GoogleWalletProvider]:
    provider = make_provider(google, account, cards)
    yield provider
    await provider.aclose()


def update(id: int, number: str = ANNA) -> Outbound:
    return Outbound(id=id, key=f"gwallet:{number}:{id}", channel=Channel.GWALLET, recipient=number, text="")


def saved(google: FakeGoogleWallet, account: ServiceAccount, data: GooglePassData) -> str:
    """The card's object was inserted (by the request for the link), and the shopper taps "Add to Google
    Wallet" on the card page."""
    google.preload(loyalty_class(CONFIG), loyalty_object(CONFIG, data))
    [saved_id] = google.save(save_url(CONFIG, account.info, data.card_number).removeprefix(SAVE_URL), ORIGIN)
    return saved_id


def stored_balance(google: FakeGoogleWallet, number: str = ANNA) -> Any:
    return google.objects[object_id(CONFIG, number)]["loyaltyPoints"]["balance"]


# -- the save link ------------------------------------------------------------------------------------


def test_the_save_link_verifies_as_google_would_and_saves_the_inserted_object(
    google: FakeGoogleWallet, account: ServiceAccount
) -> None:
    saved_id = saved(google, account, card())

    assert saved_id == f"{ISSUER}.{ANNA}"
    stored = google.objects[saved_id]
    assert stored | {"kind": None, "hasUsers": None} == loyalty_object(CONFIG, card()) | {
        "kind": None,
        "hasUsers": None,
    }
    assert (stored["kind"], stored["hasUsers"]) == ("walletobjects#loyaltyObject", True)
    assert google.classes[class_id(CONFIG)]["programName"] == "Веска бонус"
    [claims] = google.saves
    assert (claims["iss"], claims["aud"], claims["typ"]) == (account.info["client_email"], "google", "savetowallet")


def test_saving_again_keeps_the_object_google_has(google: FakeGoogleWallet, account: ServiceAccount) -> None:
    saved(google, account, card(available=100))
    saved(google, account, card(available=9_900))  # Google does not re-insert an existing id

    assert stored_balance(google) == {"string": "1"}
    assert len(google.classes) == 1


def test_a_page_not_among_the_origins_cannot_save(google: FakeGoogleWallet, account: ServiceAccount) -> None:
    token = save_url(CONFIG, account.info, ANNA).removeprefix(SAVE_URL)

    with pytest.raises(SaveRefused, match=r"https://evil\.example is not among the JWT's origins"):
        google.save(token, "https://evil.example")
    assert google.objects == {}


def test_a_tampered_or_foreign_link_does_not_verify(
    google: FakeGoogleWallet, account: ServiceAccount, tmp_path: Path
) -> None:
    token = save_url(CONFIG, account.info, ANNA).removeprefix(SAVE_URL)
    header, payload, signature = token.split(".")
    with pytest.raises(SaveRefused, match="InvalidSignatureError"):
        google.save(f"{header}.{payload}.{signature[:-4]}AAAA", ORIGIN)

    stranger = make_service_account(tmp_path, token_uri=google.token_uri)  # same email, a key Google never saw
    stranger.info["private_key_id"] = "test-key-2"
    with pytest.raises(SaveRefused, match="KeyError"):
        google.save(save_url(CONFIG, stranger.info, ANNA).removeprefix(SAVE_URL), ORIGIN)
    assert google.objects == {}


# -- updates ------------------------------------------------------------------------------------------


async def test_a_patch_after_the_save_brings_the_newest_state(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    saved(google, account, card(available=12_550))
    cards.set(card(available=20_000, holder_name=None))  # the purchase committed; the name was removed

    [result] = await provider.send([update(1)])

    assert (result.id, result.outcome, result.error) == (1, Outcome.SENT, None)
    assert result.provider_message_id == f"{ISSUER}.{ANNA}"
    stored = google.objects[f"{ISSUER}.{ANNA}"]
    assert stored["loyaltyPoints"]["balance"] == {"string": "200"}  # the string form replaced the old string
    assert "accountName" not in stored  # sent as null: a PATCH keeps what it does not name
    assert stored["hasUsers"] is True
    [patch] = google.calls("PATCH")
    assert patch.headers["authorization"].startswith("Bearer ya29.fake-")
    assert patch.body is not None
    assert patch.body["accountName"] is None
    assert [request.method for request in google.calls("GET", "loyaltyClass")] == ["GET"]
    assert google.calls("POST", "loyaltyClass") == []  # the save already made it
    [grant] = google.oauth.grants
    assert (grant["scope"], grant["aud"]) == (WALLET_SCOPE, google.token_uri)


async def test_a_late_or_repeated_message_sends_what_is_current(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    saved(google, account, card(available=100))
    cards.set(card(available=300))

    results = await provider.send([update(1), update(2)])  # two changes, queued before the second happened

    assert sorted((r.id, r.outcome) for r in results) == [(1, Outcome.SENT), (2, Outcome.SENT)]
    assert len(google.calls("PATCH")) == 1  # one card, one PATCH
    assert cards.loads == [[ANNA], [ANNA]]  # and one read-back: nothing newer to send
    assert stored_balance(google) == {"string": "3"}


async def test_a_batch_patches_its_cards_concurrently(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    """The three PATCHes are at Google at the same time: each is held until all three have arrived (one
    by one, the second would never come while the first waits)."""
    release = threading.Event()
    arrived = {number: threading.Event() for number in (ANNA, BORIS, VERA)}
    for number in (ANNA, BORIS, VERA):
        saved(google, account, card(number, available=100))
        cards.set(card(number, available=5_000))
        google.replies[object_id(CONFIG, number)] = Reply(arrived=arrived[number], release=release)

    def all_at_google() -> bool:
        together = all(event.wait(5) for event in arrived.values())
        release.set()
        return together

    sending = asyncio.create_task(provider.send([update(1, ANNA), update(2, BORIS), update(3, VERA)]))
    assert await asyncio.to_thread(all_at_google), "the PATCHes went one by one"
    results = await sending

    assert {r.outcome for r in results} == {Outcome.SENT}
    assert {stored_balance(google, n)["string"] for n in (ANNA, BORIS, VERA)} == {"50"}


async def test_batches_touching_one_card_take_turns(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    saved(google, account, card(available=100))
    cards.set(card(available=200))
    google.replies[object_id(CONFIG, ANNA)] = Reply(delay=0.3)
    first_loaded = asyncio.Event()
    cards.on_load.append(first_loaded)

    first = asyncio.create_task(provider.send([update(1)]))
    await first_loaded.wait()
    cards.on_load.clear()
    cards.set(card(available=300))  # a newer change, while the first PATCH is on its way
    second = await provider.send([update(2)])

    assert (await first)[0].outcome is second[0].outcome is Outcome.SENT
    assert [request.body["loyaltyPoints"]["balance"] for request in google.calls("PATCH") if request.body] == [
        {"string": "2"},
        {"string": "3"},  # the first batch's read-back found the newer state and sent it
        {"string": "3"},  # the second batch loaded only after the first had finished
    ]
    assert stored_balance(google) == {"string": "3"}


async def test_an_older_state_landing_late_from_another_worker_is_corrected(
    google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    """Two workers (two providers, no lock in common): the older state's PATCH lands after the newer
    one's, and its read-back sends the newer state again, so Google keeps the newest."""
    saved(google, account, card(available=100))
    cards.set(card(available=200))
    slow, quick = make_provider(google, account, cards), make_provider(google, account, cards)
    try:
        at_google, release = threading.Event(), threading.Event()
        google.replies[object_id(CONFIG, ANNA)] = Reply(arrived=at_google, release=release)
        loaded = asyncio.Event()
        cards.on_load.append(loaded)
        late = asyncio.create_task(slow.send([update(1)]))
        await loaded.wait()
        cards.on_load.clear()
        assert await asyncio.to_thread(at_google.wait, 10)  # the slow PATCH (of 2.00) is at Google, waiting
        google.replies.clear()
        cards.set(card(available=300))
        assert (await quick.send([update(2)]))[0].outcome is Outcome.SENT  # 3.00 lands first
        release.set()
        assert (await late)[0].outcome is Outcome.SENT
        balances = [r.body["loyaltyPoints"]["balance"]["string"] for r in google.calls("PATCH") if r.body]
        assert balances == ["3", "2", "3"]  # the late 2.00 was followed by the current 3.00
        assert stored_balance(google) == {"string": "3"}
    finally:
        await slow.aclose()
        await quick.aclose()


async def test_a_card_never_saved_fails(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    saved(google, account, card(BORIS))
    cards.set(card(ANNA), card(BORIS))

    results = await provider.send([update(1, ANNA), update(2, BORIS)])

    by_id = {r.id: r for r in results}
    assert by_id[1].outcome is Outcome.FAILED
    assert (
        by_id[1].error
        == "404 NOT_FOUND: Requested entity was not found. (the shopper never saved this card to Google Wallet)"
    )
    assert by_id[2].outcome is Outcome.SENT


async def test_a_card_gone_fails_without_calling_google(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, cards: Cards
) -> None:
    cards.state[ANNA] = None  # deleted since the message was queued; VERA was never known

    results = await provider.send([update(1, ANNA), update(2, VERA)])

    assert [(r.id, r.outcome, r.error) for r in results] == [
        (1, Outcome.FAILED, "card gone: no object to send for it"),
        (2, Outcome.FAILED, "card gone: no object to send for it"),
    ]
    assert google.requests == []
    assert google.oauth.grants == []


async def test_googles_400_fails_with_its_message(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    saved(google, account, card(ANNA))
    cards.state[ANNA] = card(BORIS)  # a bug on our side: ANNA's object JSON names another card

    [result] = await provider.send([update(1, ANNA)])

    assert result.outcome is Outcome.FAILED
    assert (result.error or "").startswith("400 INVALID_ARGUMENT: the body's id")


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (Reply(429, retry_after="12"), "429 RESOURCE_EXHAUSTED", 12.0),
        (Reply(503, retry_after="5"), "503 UNAVAILABLE", 5.0),
        (Reply(500), "500 INTERNAL", None),
        (Reply(502), "502 BAD_GATEWAY", None),
    ],
)
async def test_throttling_and_server_errors_retry(
    provider: GoogleWalletProvider,
    google: FakeGoogleWallet,
    account: ServiceAccount,
    cards: Cards,
    reply: Reply,
    error: str,
    retry_after: float | None,
) -> None:
    for number in (ANNA, BORIS):
        saved(google, account, card(number))
        cards.set(card(number, available=1))
    google.replies[object_id(CONFIG, ANNA)] = reply

    results = await provider.send([update(1, ANNA), update(2, BORIS)])

    by_id = {r.id: r for r in results}
    assert (by_id[1].outcome, by_id[1].retry_after) == (Outcome.RETRY, retry_after)
    assert (by_id[1].error or "").startswith(f"{error}: ")
    assert by_id[2].outcome is Outcome.SENT


# -- credentials ------------------------------------------------------------------------------------


async def test_the_access_token_is_reused(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    saved(google, account, card())
    cards.set(card())

    await provider.send([update(1)])
    await provider.send([update(2)])

    assert len(google.oauth.grants) == 1
    assert len(google.calls("GET", "loyaltyClass")) == 1  # the class is checked once per process


async def test_a_401_refreshes_the_token_once_and_resends(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    for number in (ANNA, BORIS):
        saved(google, account, card(number))
        cards.set(card(number, available=700))
    await provider.send([update(1, ANNA)])
    google.oauth.revoke_tokens()

    results = await provider.send([update(2, ANNA), update(3, BORIS)])

    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(google.oauth.grants) == 2  # one refresh for the whole batch
    assert google.unauthenticated == 2
    assert len(google.calls("PATCH")) == 3


async def test_a_401_after_the_refresh_makes_the_provider_unavailable(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    saved(google, account, card())
    cards.set(card())
    google.oauth.accept_tokens = False

    with pytest.raises(ProviderUnavailable, match="refused our credentials: 401 UNAUTHENTICATED"):
        await provider.send([update(1)])

    assert len(google.oauth.grants) == 2


async def test_a_403_makes_the_provider_unavailable(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    saved(google, account, card())
    cards.set(card())
    google.replies[object_id(CONFIG, ANNA)] = Reply(403)

    with pytest.raises(ProviderUnavailable, match="refused our credentials: 403 PERMISSION_DENIED"):
        await provider.send([update(1)])

    assert len(google.oauth.grants) == 1  # a new token would not change the permission


async def test_a_refused_class_check_makes_the_provider_unavailable(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, cards: Cards
) -> None:
    cards.set(card())
    google.replies[class_id(CONFIG)] = Reply(403)

    with pytest.raises(ProviderUnavailable, match="403 PERMISSION_DENIED"):
        await provider.send([update(1)])
    assert google.calls("PATCH") == []


async def test_an_unknown_key_is_refused_by_the_token_endpoint(
    google: FakeGoogleWallet, cards: Cards, tmp_path: Path
) -> None:
    stranger = make_service_account(tmp_path, token_uri=google.token_uri)
    stranger.info["private_key_id"] = "test-key-2"
    cards.set(card())
    provider = GoogleWalletProvider(
        base_url=google.url, service_account=stranger.info, config=CONFIG, load_objects=cards.load
    )
    try:
        with pytest.raises(ProviderUnavailable, match="invalid_grant"):
            await provider.send([update(1)])
    finally:
        await provider.aclose()
    assert google.requests == []


def test_an_incomplete_service_account_is_refused_at_start(account: ServiceAccount, cards: Cards) -> None:
    with pytest.raises(ValueError, match="Google Wallet service account lacks token_uri"):
        GoogleWalletProvider(
            service_account={"client_email": "a@b", "private_key": account.info["private_key"]},
            config=CONFIG,
            load_objects=cards.load,
        )


# -- the class ----------------------------------------------------------------------------------------


async def test_the_class_is_inserted_once_even_with_concurrent_sends(
    provider: GoogleWalletProvider, google: FakeGoogleWallet, cards: Cards
) -> None:
    cards.set(card(ANNA), card(BORIS), card(VERA))
    google.replies[class_id(CONFIG)] = Reply(delay=0.1)  # a slow check, so the sends overlap it

    batches = await asyncio.gather(
        provider.send([update(1, ANNA)]), provider.send([update(2, BORIS)]), provider.send([update(3, VERA)])
    )

    assert len(google.calls("GET", "loyaltyClass")) == 1
    [insert] = google.calls("POST", "loyaltyClass")
    assert insert.status == 200
    assert google.classes[class_id(CONFIG)]["reviewStatus"] == "APPROVED"
    assert {r.outcome for batch in batches for r in batch} == {Outcome.FAILED}  # nobody saved these cards yet


async def test_a_class_another_process_inserted_meanwhile_is_fine(
    google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    cards.set(card())
    google.replies[class_id(CONFIG)] = Reply(delay=0.2)  # both GETs answer 404 before either INSERT lands
    one, two = make_provider(google, account, cards), make_provider(google, account, cards)
    try:
        results = await asyncio.gather(one.send([update(1)]), two.send([update(2)]))
    finally:
        await one.aclose()
        await two.aclose()

    assert sorted(request.status for request in google.calls("POST", "loyaltyClass")) == [200, 409]
    assert [r.outcome for batch in results for r in batch] == [Outcome.FAILED, Outcome.FAILED]  # 404: not saved


# -- unreachable ------------------------------------------------------------------------------------


async def test_nothing_listening_makes_the_provider_unavailable(
    google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    cards.set(card())
    provider = make_provider(google, account, cards, base_url="http://127.0.0.1:9", timeout=2.0)
    try:
        with pytest.raises(ProviderUnavailable, match=r"cannot reach http://127\.0\.0\.1:9/walletobjects/v1/"):
            await provider.send([update(1)])
    finally:
        await provider.aclose()


async def test_an_unreachable_token_endpoint_makes_the_provider_unavailable(
    google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    cards.set(card())
    elsewhere = account.info | {"token_uri": "http://127.0.0.1:9/token"}
    provider = make_provider(google, account, cards, service_account=elsewhere, timeout=2.0)
    try:
        with pytest.raises(ProviderUnavailable, match="cannot reach the OAuth token endpoint"):
            await provider.send([update(1)])
    finally:
        await provider.aclose()


async def test_no_answer_in_time_makes_the_provider_unavailable(
    google: FakeGoogleWallet, account: ServiceAccount, cards: Cards
) -> None:
    for number in (ANNA, BORIS):
        saved(google, account, card(number))
        cards.set(card(number, available=4_200))
    provider = make_provider(google, account, cards, timeout=0.3)
    try:
        google.default = Reply(delay=1.0)
        with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.3s"):
            await provider.send([update(1, ANNA)])  # the class check itself times out

        google.default = Reply()
        await provider.send([update(2, ANNA)])  # the class is ready from here on
        google.default = Reply(delay=1.0)
        with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.3s"):
            await provider.send([update(3, ANNA), update(4, BORIS)])  # every PATCH timed out

        google.replies[object_id(CONFIG, BORIS)] = Reply()
        results = await provider.send([update(5, ANNA), update(6, BORIS)])
    finally:
        await provider.aclose()

    by_id = {r.id: r for r in results}
    assert (by_id[5].outcome, by_id[5].error) == (Outcome.RETRY, "no answer within 0.3s")
    assert by_id[6].outcome is Outcome.SENT

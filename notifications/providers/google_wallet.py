"""Google Wallet pass updates: a PATCH of each card's loyalty object through the Google Wallet REST API.

An outbox message on :attr:`Channel.GWALLET` means "bring this card's Google object up to date"; its
``recipient`` is the pass's serial (the card number for a card's first pass; see
:func:`wallet.passes.google.object_id`) and its text is ignored. The JSON is not in the message: at send time
``load_objects`` reads each card's current object (built by :func:`wallet.passes.google.loyalty_object`),
so a late or retried message always sends the newest state, and two batches that touch one card in
this process take turns (the later one loads later), so an older state never lands last.

Before the first PATCH the program's loyalty class is made to exist (GET, and INSERT on 404; a 409
means another process made it), once per process. Authentication is the service account's OAuth2
token for the ``wallet_object.issuer`` scope (:mod:`notifications.providers.google_auth`), refreshed
once when Google answers 401. Answers about one card become outcomes: 404 means the shopper never
saved the pass, so there is nothing to update. Answers about us (credentials refused, Google
unreachable for the whole batch) raise :class:`ProviderUnavailable`.

:class:`GoogleWalletApi` is the HTTP client, the token and the refresh-once rule, shared with the save
link: it implements :class:`wallet.passes.google.WalletObjects`, inserting a card's object (and the
class) before the link names them, within a short deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, NamedTuple

import httpx
import msgspec

from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable, SendResult, retry_after_seconds
from notifications.providers.google_auth import REQUIRED, ServiceAccountTokens, check_service_account, json_body
from wallet.passes.google import (
    CLEARABLE_FIELDS,
    SCOPE,
    GoogleWalletConfig,
    GoogleWalletUnavailable,
    class_id,
    loyalty_class,
    object_id,
)
from wallet.passes.identity import is_development_service_account
from wallet.passes.setup import GoogleSetup

logger = logging.getLogger("kartka.google_wallet")

DEFAULT_URL = "https://walletobjects.googleapis.com"
#: What the shopper's app is told to wait when Google gave no Retry-After.
RETRY_AFTER_SECONDS: Final = 30

#: Card numbers -> each card's current ``loyaltyObject`` JSON, or ``None`` when the card is gone.
LoadObjects = Callable[[Sequence[str]], Awaitable[dict[str, dict[str, Any] | None]]]


#: Reads after a PATCH to catch a newer state sent first by another worker (see ``_settle``).
_SETTLE_ROUNDS: Final = 3


class _Refused(NamedTuple):
    """Google refused our credentials, not the card: 401 after a fresh token, or 403."""

    error: str


class _Unreachable(NamedTuple):
    error: str


class _CardLocks:
    """One lock per card number, held from loading a card's object until its PATCH is answered."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def hold(self, cards: Sequence[str]) -> AsyncIterator[None]:
        keys = sorted(set(cards))  # always in one order: two batches sharing cards cannot deadlock
        for key in keys:
            self._holders[key] += 1
            self._locks.setdefault(key, asyncio.Lock())
        try:
            async with contextlib.AsyncExitStack() as stack:
                for key in keys:
                    await stack.enter_async_context(self._locks[key])
                yield
        finally:
            for key in keys:
                self._holders[key] -= 1
                if not self._holders[key]:
                    del self._holders[key], self._locks[key]


class GoogleWalletApi:
    """walletobjects v1 with the service account's OAuth token: one HTTP client (HTTP/2 to Google),
    the token, and one retry with a fresh token when Google answers 401."""

    def __init__(self, *, base_url: str = DEFAULT_URL, service_account: dict[str, str], timeout: float) -> None:
        check_service_account(service_account, required=REQUIRED, label="Google Wallet")
        self.url = f"{base_url.rstrip('/')}/walletobjects/v1"
        self.timeout = timeout
        self.client = httpx.AsyncClient(
            timeout=timeout,
            http2=True,  # Google speaks h2: one connection carries the whole batch (plain http stays 1.1)
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )
        self.tokens = ServiceAccountTokens(service_account, scope=SCOPE, client=self.client, timeout=timeout)

    async def put(self, loyalty_class: dict[str, Any] | None, loyalty_object: dict[str, Any]) -> None:
        """Insert the class (unless None), then the object; on 409 (Google has it) update it with a
        PATCH. All within ``timeout``: the shopper is waiting for the save link."""
        try:
            async with asyncio.timeout(self.timeout):
                token = await self.tokens.token()
                if loyalty_class is not None:
                    token = await self._put("loyaltyClass", loyalty_class, token)
                # A PATCH keeps what it does not name: absent fields are sent as null (deleted).
                await self._put(
                    "loyaltyObject", loyalty_object, token, dict.fromkeys(CLEARABLE_FIELDS) | loyalty_object
                )
        except TimeoutError as exc:
            raise _unavailable(f"no answer within {self.timeout:g}s", None) from exc
        except ProviderUnavailable as exc:  # the OAuth token endpoint
            raise _unavailable(str(exc), exc.retry_after) from exc

    async def _put(self, kind: str, document: dict[str, Any], token: str, patch: dict[str, Any] | None = None) -> str:
        answer, token = await self.authorized("POST", f"{self.url}/{kind}", token, document)
        if isinstance(answer, httpx.Response) and answer.status_code == 409:  # inserted before: bring it up to date
            url = f"{self.url}/{kind}/{_quote(document['id'])}"
            answer, token = await self.authorized("PATCH", url, token, patch or document)
        if isinstance(answer, _Unreachable):
            raise _unavailable(answer.error, None)
        if answer.status_code != 200:
            raise _unavailable(f"{kind}: {_error(answer)}", retry_after_seconds(answer.headers.get("retry-after")))
        return token

    async def authorized(
        self, method: str, url: str, token: str, body: dict[str, Any] | None
    ) -> tuple[httpx.Response | _Unreachable, str]:
        """One call, sent again once with a fresh token if Google says ours is not (or no longer) valid."""
        response = await self._call(method, url, token, body)
        if isinstance(response, httpx.Response) and response.status_code == 401:
            token = await self.tokens.token(stale=token)  # concurrent 401s share one refresh
            response = await self._call(method, url, token, body)
        return response, token

    async def _call(
        self, method: str, url: str, token: str, body: dict[str, Any] | None
    ) -> httpx.Response | _Unreachable:
        try:
            return await self.client.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException:
            return _Unreachable(f"no answer within {self.timeout:g}s")
        except httpx.TransportError as exc:
            return _Unreachable(f"cannot reach {url}: {type(exc).__name__} {exc}".strip())

    async def aclose(self) -> None:
        await self.client.aclose()


def load_wallet_objects(google: GoogleSetup | None, *, timeout: float) -> GoogleWalletApi | None:
    """What inserts objects for save links; None without a Google to insert into (development material)."""
    if google is None or is_development_service_account(google.service_account):
        return None
    return GoogleWalletApi(base_url=google.api_url, service_account=google.service_account, timeout=timeout)


def _unavailable(error: str, retry_after: float | None) -> GoogleWalletUnavailable:
    """What the shopper is told (nothing of Google's answer: that goes to the log)."""
    logger.warning("Google Wallet did not take a save link's class or object: %s", error)
    wait = RETRY_AFTER_SECONDS if retry_after is None else max(1, math.ceil(retry_after))
    return GoogleWalletUnavailable("Google Wallet is not answering right now; try again shortly", retry_after=wait)


class GoogleWalletProvider:
    name: str = "google-wallet"
    channels: frozenset[Channel] = frozenset({Channel.GWALLET})
    max_batch: int = 100

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_URL,
        service_account: dict[str, str],
        config: GoogleWalletConfig,
        load_objects: LoadObjects,
        timeout: float = 10.0,
    ) -> None:
        self._http = GoogleWalletApi(base_url=base_url, service_account=service_account, timeout=timeout)
        self._config = config
        self._load_objects = load_objects
        self._api = self._http.url
        self._class_ready = asyncio.Event()
        self._class_lock = asyncio.Lock()
        self._cards = _CardLocks()

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        if not messages:
            return []
        cards = list(dict.fromkeys(message.recipient for message in messages))  # a card once per batch
        async with self._cards.hold(cards):
            objects = await self._load_objects(cards)
            wanted = {card: document for card in cards if (document := objects.get(card)) is not None}
            answers: dict[str, SendResult | _Refused | _Unreachable] = {}
            if wanted:
                token = await self._http.tokens.token()
                token = await self._ensure_class(token)
                patched = await asyncio.gather(
                    *(self._patch(card, document, token) for card, document in wanted.items())
                )
                answers = dict(zip(wanted, patched, strict=True))
                await self._settle(wanted, answers, token)
        results: list[SendResult] = []
        unreachable: list[str] = []
        for message in messages:
            answer = answers.get(message.recipient)
            if answer is None:
                results.append(
                    SendResult(id=message.id, outcome=Outcome.FAILED, error="card gone: no object to send for it")
                )
            elif isinstance(answer, _Refused):
                raise ProviderUnavailable(f"Google Wallet refused our credentials: {answer.error}")
            elif isinstance(answer, _Unreachable):
                unreachable.append(answer.error)
                results.append(SendResult(id=message.id, outcome=Outcome.RETRY, error=answer.error))
            else:
                results.append(msgspec.structs.replace(answer, id=message.id))
        if answers and all(isinstance(answer, _Unreachable) for answer in answers.values()):
            raise ProviderUnavailable(f"Google Wallet: {unreachable[0]}")  # nothing got through: down for us
        return results

    async def _settle(
        self, sent: dict[str, dict[str, Any]], answers: dict[str, SendResult | _Refused | _Unreachable], token: str
    ) -> None:
        """Make the newest state the one Google keeps. Another worker may have sent a newer state of a
        card while this one's older PATCH was still on its way, and landed first; so read each sent card
        again and, while it differs from what was sent, send it again (rarely more than once). The
        answers of the last round are the ones that count."""
        pending = sent
        for _ in range(_SETTLE_ROUNDS):
            done = [card for card in pending if _was_sent(answers[card])]
            if not done:
                return
            fresh = await self._load_objects(done)
            changed = {card: doc for card in done if (doc := fresh.get(card)) is not None and doc != pending[card]}
            if not changed:
                return
            again = await asyncio.gather(*(self._patch(card, doc, token) for card, doc in changed.items()))
            answers.update(zip(changed, again, strict=True))
            pending = changed

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the class ------------------------------------------------------------------------------

    async def _ensure_class(self, token: str) -> str:
        """Make the program's class exist before any object needs it, once per process; the token in use."""
        if self._class_ready.is_set():
            return token
        async with self._class_lock:  # concurrent batches wait for one GET (and INSERT), not one each
            if self._class_ready.is_set():
                return token
            url = f"{self._api}/loyaltyClass/{_quote(class_id(self._config))}"
            response, token = await self._class_call("GET", url, token)
            ready = response.status_code == 200
            if response.status_code == 404:
                response, token = await self._class_call(
                    "POST", f"{self._api}/loyaltyClass", token, loyalty_class(self._config)
                )
                ready = response.status_code in (200, 409)  # 409: another process inserted it meanwhile
            if not ready:
                raise ProviderUnavailable(
                    f"Google Wallet: the loyalty class cannot be made ready: {_error(response)}",
                    retry_after=retry_after_seconds(response.headers.get("retry-after")),
                )
            self._class_ready.set()
            return token

    async def _class_call(
        self, method: str, url: str, token: str, body: dict[str, Any] | None = None
    ) -> tuple[httpx.Response, str]:
        answer, token = await self._http.authorized(method, url, token, body)
        if isinstance(answer, _Unreachable):
            raise ProviderUnavailable(f"Google Wallet: {answer.error}")
        if answer.status_code in (401, 403):
            raise ProviderUnavailable(f"Google Wallet refused our credentials: {_error(answer)}")
        return answer, token

    # -- objects --------------------------------------------------------------------------------

    async def _patch(self, card: str, document: dict[str, Any], token: str) -> SendResult | _Refused | _Unreachable:
        """The answer about one card; ``send`` gives the result each message's id (one card, many messages)."""
        resource = object_id(self._config, card)
        body = dict.fromkeys(CLEARABLE_FIELDS) | document  # a PATCH keeps what it does not name
        answer, _ = await self._http.authorized("PATCH", f"{self._api}/loyaltyObject/{_quote(resource)}", token, body)
        if isinstance(answer, _Unreachable):
            return answer
        status = answer.status_code
        if status == 200:
            saved = json_body(answer).get("id")
            return SendResult(id=0, outcome=Outcome.SENT, provider_message_id=saved if isinstance(saved, str) else None)
        text = _error(answer)
        if status in (401, 403):
            return _Refused(text)
        if status == 404:
            return SendResult(
                id=0, outcome=Outcome.FAILED, error=f"{text} (the shopper never saved this card to Google Wallet)"
            )
        if status == 429 or status >= 500:
            retry_after = retry_after_seconds(answer.headers.get("retry-after"))
            return SendResult(id=0, outcome=Outcome.RETRY, error=text, retry_after=retry_after)
        return SendResult(id=0, outcome=Outcome.FAILED, error=text)


def _was_sent(answer: SendResult | _Refused | _Unreachable) -> bool:
    return isinstance(answer, SendResult) and answer.outcome is Outcome.SENT


def _quote(resource_id: str) -> str:
    return urllib.parse.quote(resource_id, safe="")


def _error(response: httpx.Response) -> str:
    """``404 NOT_FOUND: <Google's message>`` from Google's ``{"error": {"code", "message", "status"}}``."""
    error = json_body(response).get("error")
    error = error if isinstance(error, dict) else {}
    status = str(error.get("status") or "error")
    return f"{response.status_code} {status}: {error.get('message') or response.reason_phrase}"

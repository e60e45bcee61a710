"""App push to Android through Firebase Cloud Messaging's HTTP v1 API, with httpx.

FCM v1 takes one message per request, so a batch goes out as concurrent requests (multiplexed over
HTTP/2 when the server offers it). Authentication is an OAuth2 access token that the service account
obtains with the JWT-bearer grant (:mod:`notifications.providers.google_auth`, shared with Google
Wallet); it is cached until shortly before it expires, and when FCM still answers 401 (revoked, clock
skew) it is refreshed once and the refused messages are sent again. Per-message answers become
outcomes; what concerns every message (credentials refused, token endpoint down, FCM unreachable)
raises :class:`ProviderUnavailable` for the worker's backoff and circuit breaker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple

import httpx
import msgspec

from kartka.settings import Settings
from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable, SendResult, retry_after_seconds
from notifications.providers.google_auth import REQUIRED, ServiceAccountTokens, check_service_account, json_body

DEFAULT_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_REQUIRED = (*REQUIRED, "project_id")


class _Refused(NamedTuple):
    """An answer about our credentials rather than the message: 401 (the access token is not, or no
    longer, valid) or 403 (the service account may not send for this project)."""

    status: int
    error: str


class _Unreachable(NamedTuple):
    error: str


_Answer = SendResult | _Refused | _Unreachable


class FcmProvider:
    name: str = "fcm"
    channels: frozenset[Channel] = frozenset({Channel.FCM})
    max_batch: int = 100

    def __init__(self, *, url: str = DEFAULT_URL, service_account: dict[str, str], timeout: float = 10.0) -> None:
        check_service_account(service_account, required=_REQUIRED, label="FCM")
        self._send_url = f"{url.rstrip('/')}/v1/projects/{service_account['project_id']}/messages:send"
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            timeout=timeout,
            http2=True,  # FCM speaks h2: one connection carries the whole batch (plain http stays 1.1)
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )
        self._tokens = ServiceAccountTokens(service_account, scope=SCOPE, client=self._client, timeout=timeout)

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        if not messages:
            return []
        token = await self._tokens.token()
        answers = await self._send_all(messages, token)
        expired = [message for message in messages if _status(answers[message.id]) == 401]
        if expired:
            token = await self._tokens.token(stale=token)
            answers.update(await self._send_all(expired, token))
        results: list[SendResult] = []
        unreachable: list[str] = []
        for message in messages:
            answer = answers[message.id]
            if isinstance(answer, SendResult):
                results.append(answer)
            elif isinstance(answer, _Unreachable):
                unreachable.append(answer.error)
                results.append(SendResult(id=message.id, outcome=Outcome.RETRY, error=answer.error))
            else:
                raise ProviderUnavailable(f"FCM refused our credentials: {answer.error}")
        if len(unreachable) == len(messages):  # nothing got through: FCM is down for us, not one message
            raise ProviderUnavailable(f"FCM: {unreachable[0]}")
        return results

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- messages -------------------------------------------------------------------------------

    async def _send_all(self, messages: Sequence[Outbound], token: str) -> dict[int, _Answer]:
        answers = await asyncio.gather(*(self._send_one(message, token) for message in messages))
        return {message.id: answer for message, answer in zip(messages, answers, strict=True)}

    async def _send_one(self, message: Outbound, token: str) -> _Answer:
        try:
            response = await self._client.post(
                self._send_url, json={"message": _message(message)}, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TimeoutException:
            return _Unreachable(f"no answer within {self._timeout:g}s")
        except httpx.TransportError as exc:
            return _Unreachable(f"cannot reach {self._send_url}: {type(exc).__name__} {exc}".strip())
        if response.status_code == 200:
            name = json_body(response).get("name")
            return SendResult(
                id=message.id, outcome=Outcome.SENT, provider_message_id=name if isinstance(name, str) else None
            )
        return _failure(message, response)


def load_fcm(settings: Settings) -> FcmProvider | None:
    """The FCM provider the settings describe, or ``None`` when app push to Android is not configured."""
    if settings.fcm_service_account_file is None:
        return None
    try:
        document = msgspec.json.decode(settings.fcm_service_account_file.read_bytes())
    except msgspec.DecodeError as exc:
        raise ValueError(f"{settings.fcm_service_account_file} is not a service-account JSON file") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{settings.fcm_service_account_file} is not a service-account JSON file")
    account = {key: value for key, value in document.items() if isinstance(value, str)}
    return FcmProvider(url=settings.fcm_url, service_account=account, timeout=settings.provider_timeout_seconds)


def _message(message: Outbound) -> dict[str, Any]:
    body: dict[str, Any] = {"token": message.recipient, "data": dict(message.data), "android": {"priority": "high"}}
    if message.text or message.title is not None:
        notification = {"body": message.text}
        if message.title is not None:
            notification["title"] = message.title
        body["notification"] = notification
    return body


def _failure(message: Outbound, response: httpx.Response) -> _Answer:
    """Map an FCM error answer (``{"error": {"status", "message", "details": [{"errorCode"}]}}``)."""
    status = response.status_code
    error = json_body(response).get("error")
    error = error if isinstance(error, dict) else {}
    codes = [detail.get("errorCode") for detail in error.get("details", []) if isinstance(detail, dict)]
    code = next((c for c in codes if isinstance(c, str)), None) or str(error.get("status") or "")
    text = f"{status} {code or 'error'}: {error.get('message') or response.reason_phrase}"
    if code == "UNREGISTERED" or status == 404:
        return SendResult(id=message.id, outcome=Outcome.UNREGISTERED, error=text)
    if status == 401 or (status == 403 and code != "SENDER_ID_MISMATCH"):  # (a token of another project)
        return _Refused(status, text)
    if status == 429 or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        return SendResult(id=message.id, outcome=Outcome.RETRY, error=text, retry_after=retry_after)
    return SendResult(id=message.id, outcome=Outcome.FAILED, error=text)


def _status(answer: _Answer) -> int | None:
    return answer.status if isinstance(answer, _Refused) else None

"""Infobip: SMS (``POST /sms/2/text/advanced``) and Viber (``POST /viber/2/messages``), and their
delivery reports.

Both APIs take many messages per request, which is what lets one worker push thousands of messages a
second. Each destination carries a client-chosen ``messageId``: we send ``kartka-<outbox id>``, stable
across retries, so a retry after a lost response is recognisable as the same message, and delivery
reports map straight back to the outbox row. Authentication is ``Authorization: App <API key>``.

Viber messages carry a ``validityPeriod`` equal to the SMS fallback delay, so a Viber message that was
not delivered by the time the fallback SMS goes out is dropped by Infobip: the shopper gets one, not both.

Delivery reports are POSTed to ``notifyUrl`` (``{public URL}/v1/webhooks/infobip``) with HTTP Basic
credentials ``infobip:<KARTKA_INFOBIP_WEBHOOK_SECRET>`` configured on the Infobip side.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from typing import Any, Final

import httpx
import msgspec

from notifications.model import (
    Channel,
    Outbound,
    Outcome,
    ProviderUnavailable,
    Receipt,
    ReceiptStatus,
    SendResult,
    retry_after_seconds,
)

#: Status groups of Infobip's send responses and reports (docs: "Response status and error codes").
_PENDING, _UNDELIVERABLE, _DELIVERED, _EXPIRED, _REJECTED = 1, 2, 3, 4, 5
_RETRY_STATUS: Final = frozenset({500, 502, 503, 504})
WEBHOOK_USER: Final = "infobip"


def message_id(outbox_id: int) -> str:
    return f"kartka-{outbox_id}"


def outbox_id(provider_message_id: str) -> int | None:
    prefix, _, number = provider_message_id.partition("-")
    return int(number) if prefix == "kartka" and number.isdigit() else None


class InfobipStatus(msgspec.Struct):
    """A message's status as Infobip reports it (its status groups: 3 delivered, 4 expired, 2 and 5 failed)."""

    groupId: int  # noqa: N815 - Infobip's field names
    name: str = ""
    description: str = ""


class _Sent(msgspec.Struct):
    messageId: str  # noqa: N815
    status: InfobipStatus


class _SendResponse(msgspec.Struct):
    messages: list[_Sent]


class InfobipProvider:
    """One Infobip account; serves SMS, Viber or both (one instance per channel keeps their limits apart)."""

    max_batch = 200

    def __init__(
        self,
        *,
        channel: Channel,
        base_url: str,
        api_key: str,
        sender: str,
        notify_url: str | None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if channel not in (Channel.SMS, Channel.VIBER):
            raise ValueError("Infobip serves SMS and Viber")
        self.channel = channel
        self.name = f"infobip-{channel.value}"
        self.channels: frozenset[Channel] = frozenset({channel})
        self.sender = sender
        self.notify_url = notify_url
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"App {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            transport=transport,
        )
        self._decoder = msgspec.json.Decoder(_SendResponse)

    def _sms(self, messages: Sequence[Outbound]) -> tuple[str, dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for m in messages:
            item: dict[str, Any] = {
                "from": self.sender,
                "destinations": [{"to": m.recipient.lstrip("+"), "messageId": message_id(m.id)}],
                "text": m.text,
            }
            if self.notify_url:
                item |= {"notifyUrl": self.notify_url, "notifyContentType": "application/json"}
            items.append(item)
        return "/sms/2/text/advanced", {"messages": items}

    def _viber(self, messages: Sequence[Outbound]) -> tuple[str, dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for m in messages:
            item: dict[str, Any] = {
                "sender": self.sender,
                "destinations": [{"to": m.recipient.lstrip("+"), "messageId": message_id(m.id)}],
                "content": {"type": "TEXT", "text": m.text},
            }
            if m.validity_seconds:
                item["options"] = {"validityPeriod": {"amount": m.validity_seconds, "timeUnit": "SECONDS"}}
            if self.notify_url:
                item["webhooks"] = {"delivery": {"url": self.notify_url}}
            items.append(item)
        return "/viber/2/messages", {"messages": items}

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        path, body = self._sms(messages) if self.channel is Channel.SMS else self._viber(messages)
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in (401, 403):
            raise ProviderUnavailable(f"{self.name}: credentials refused ({status}); check KARTKA_INFOBIP_API_KEY")
        if status == 429 or status in _RETRY_STATUS:
            raise ProviderUnavailable(
                f"{self.name}: HTTP {status}", retry_after=retry_after_seconds(response.headers.get("Retry-After"))
            )
        if status == 400:  # the request as a whole was refused: every message in it is at fault
            reason = response.text[:300]
            return [SendResult(id=m.id, outcome=Outcome.FAILED, error=f"HTTP 400: {reason}") for m in messages]
        if status != 200:
            raise ProviderUnavailable(f"{self.name}: unexpected HTTP {status}")
        try:
            answer = self._decoder.decode(response.content)
        except msgspec.DecodeError as exc:
            raise ProviderUnavailable(f"{self.name}: unreadable answer: {exc}") from exc
        by_id = {sent.messageId: sent.status for sent in answer.messages}
        results: list[SendResult] = []
        for m in messages:
            mid = message_id(m.id)
            st = by_id.get(mid)
            if st is None:
                results.append(SendResult(id=m.id, outcome=Outcome.RETRY, error="not in the provider's answer"))
            elif st.groupId in (_UNDELIVERABLE, _REJECTED):
                results.append(SendResult(id=m.id, outcome=Outcome.FAILED, error=f"{st.name}: {st.description}"))
            else:
                results.append(SendResult(id=m.id, outcome=Outcome.SENT, provider_message_id=mid))
        return results

    async def aclose(self) -> None:
        await self._client.aclose()


# -- delivery reports ---------------------------------------------------------------------------------


class InfobipReportError(msgspec.Struct):
    name: str = ""
    description: str = ""


class InfobipReport(msgspec.Struct):
    messageId: str  # noqa: N815
    status: InfobipStatus
    error: InfobipReportError | None = None


class InfobipReports(msgspec.Struct):
    """A delivery report body as Infobip posts it (``POST /v1/webhooks/infobip``); other fields are ignored."""

    results: list[InfobipReport]


_reports = msgspec.json.Decoder(InfobipReports)


def authorized(authorization: str | None, secret: str) -> bool:
    """Whether a report carries our HTTP Basic credentials (constant-time comparison)."""
    if not authorization or not authorization.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(authorization[6:], validate=True).decode()
    except ValueError:
        return False
    expected = f"{WEBHOOK_USER}:{secret}"
    return hmac.compare_digest(decoded.encode(), expected.encode())


def parse_reports(body: bytes, provider: str) -> list[Receipt]:
    """Infobip's delivery report body -> receipts; raises ``msgspec.ValidationError`` on another shape."""
    receipts: list[Receipt] = []
    for report in _reports.decode(body).results:
        group = report.status.groupId
        if group == _DELIVERED:
            status = ReceiptStatus.DELIVERED
        elif group == _EXPIRED:
            status = ReceiptStatus.EXPIRED
        elif group in (_UNDELIVERABLE, _REJECTED):
            status = ReceiptStatus.FAILED
        else:
            status = ReceiptStatus.PENDING
        error = None
        if status is not ReceiptStatus.DELIVERED:
            error = report.status.name + (f" ({report.error.name})" if report.error and report.error.name else "")
        receipts.append(Receipt(provider=provider, provider_message_id=report.messageId, status=status, error=error))
    return receipts

"""Twilio SMS (``POST /2010-04-01/Accounts/{sid}/Messages.json``) and its status callbacks.

Twilio takes one message per request: a batch goes as concurrent form-encoded requests with HTTP Basic
auth (account SID, auth token). ``from_`` is a number or sender ID, or a Messaging Service SID (``MG…``).

Idempotency: every request carries the outbox key in ``I-Twilio-Idempotency-Token``, but as far as we
could find Twilio does not promise to honour it on this API. The header is documented, and seen in
the wild, on requests Twilio *sends* (webhooks, status callbacks: the same token on Twilio's retries, so
receivers can drop duplicates); the Message resource reference and Twilio's OpenAPI description list
no idempotency header or parameter for creating a Message (where Twilio has one, it is documented, e.g.
an ``IdempotencyKey`` form field on Calls' UserDefinedMessages). It costs nothing and may help, so we
send it; we do not rely on it. A request that timed out after Twilio accepted it can still be sent twice
when retried, which is why a batch never discards a message Twilio accepted (below).

Per message: 201 -> SENT (``sid``); a refusal with a Twilio error code (21211 invalid number, 21614 not
a mobile, 21610 unsubscribed by STOP, 21408 region not enabled, ...) -> FAILED, except 21611 (sender's
queue full) -> RETRY; 408, 429 (20429) and 5xx -> RETRY with Retry-After. When *no* message of a batch
was accepted and the batch failed as a whole (any 401 (20003) or 404, which mean our configuration is
wrong, or nothing but timeouts, connection errors, 429s and 5xx), :meth:`TwilioSms.send` raises
:class:`ProviderUnavailable` instead, so the worker backs off and the circuit breaker counts it.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Final

import httpx
import msgspec

from kartka.settings import Settings, SettingsError
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

PROVIDER: Final = "twilio"
DEFAULT_BASE_URL: Final = "https://api.twilio.com"
IDEMPOTENCY_HEADER: Final = "I-Twilio-Idempotency-Token"
SIGNATURE_HEADER: Final = "X-Twilio-Signature"

#: Error codes of a refused create that clear up by themselves (21611: the sender's queue is full).
_TRANSIENT_CODES: Final = frozenset({21611})


class _Created(msgspec.Struct):
    sid: str


class _Error(msgspec.Struct):
    code: int | None = None
    message: str = ""


_created = msgspec.json.Decoder(_Created)
_error = msgspec.json.Decoder(_Error)


class _Fault(enum.Enum):
    """Why a single request failed in a way that may concern the whole batch."""

    CONFIG = "config"  # 401, 404: every request will fail the same way
    TRANSIENT = "transient"  # timeout, connection error, 429, 5xx


class _Attempt(msgspec.Struct, frozen=True):
    result: SendResult
    fault: _Fault | None = None
    problem: str = ""  # for ProviderUnavailable, when the whole batch failed


class TwilioSms:
    """One Twilio account sending SMS from one sender."""

    name: str = PROVIDER
    channels: frozenset[Channel] = frozenset({Channel.SMS})
    max_batch: int = 50

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        account_sid: str,
        auth_token: str,
        from_: str,
        status_callback: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not (account_sid and auth_token and from_):
            raise ValueError("Twilio needs an account SID, an auth token and a sender")
        self.account_sid = account_sid
        self.from_ = from_
        self.status_callback = status_callback
        self._path = f"/2010-04-01/Accounts/{urllib.parse.quote(account_sid, safe='')}/Messages.json"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(account_sid, auth_token),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(max_connections=self.max_batch, max_keepalive_connections=self.max_batch),
            transport=transport,
        )

    def _form(self, message: Outbound) -> dict[str, str]:
        form = {"To": message.recipient, "Body": message.text}
        if self.from_.startswith("MG") and len(self.from_) == 34:
            form["MessagingServiceSid"] = self.from_
        else:
            form["From"] = self.from_
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        return form

    async def _one(self, message: Outbound) -> _Attempt:
        try:
            response = await self._client.post(
                self._path, data=self._form(message), headers={IDEMPOTENCY_HEADER: message.key}
            )
        except httpx.TimeoutException as exc:
            return _retry(message, f"timeout: {type(exc).__name__}", _Fault.TRANSIENT)
        except httpx.HTTPError as exc:
            return _retry(message, f"connection: {type(exc).__name__}: {exc}", _Fault.TRANSIENT)
        return _classify(message, response)

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        """Send the messages concurrently; see the module's docstring for what each answer means."""
        if len(messages) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} messages per call")
        attempts = await asyncio.gather(*(self._one(m) for m in messages))
        if attempts and not any(a.result.outcome is Outcome.SENT for a in attempts):
            config = [a for a in attempts if a.fault is _Fault.CONFIG]
            if config:
                raise ProviderUnavailable(f"{self.name}: {config[0].problem}")
            if all(a.fault is _Fault.TRANSIENT for a in attempts):
                waits = [a.result.retry_after for a in attempts if a.result.retry_after is not None]
                raise ProviderUnavailable(
                    f"{self.name}: {attempts[0].result.error}", retry_after=max(waits) if waits else None
                )
        return [a.result for a in attempts]

    async def aclose(self) -> None:
        await self._client.aclose()


def _classify(message: Outbound, response: httpx.Response) -> _Attempt:
    status = response.status_code
    if status in (200, 201):
        try:
            sid: str | None = _created.decode(response.content).sid
        except msgspec.DecodeError:
            sid = None  # accepted all the same: sending it again would send it twice
        return _Attempt(result=SendResult(id=message.id, outcome=Outcome.SENT, provider_message_id=sid))
    code, reason = _read_error(response)
    label = f"HTTP {status}" + (f" ({code})" if code is not None else "")
    if status == 401:
        problem = "bad credentials: check KARTKA_TWILIO_ACCOUNT_SID and KARTKA_TWILIO_AUTH_TOKEN"
        return _retry(message, f"{label}: {reason}", _Fault.CONFIG, problem=problem)
    if status == 404:
        problem = "not found: check the account SID and KARTKA_TWILIO_BASE_URL"
        return _retry(message, f"{label}: {reason}", _Fault.CONFIG, problem=problem)
    if status in (408, 429) or status >= 500:
        return _retry(
            message, f"{label}: {reason}", _Fault.TRANSIENT, retry_after_seconds(response.headers.get("Retry-After"))
        )
    error = f"{code}: {reason}" if code is not None else f"{label}: {reason}"
    if code in _TRANSIENT_CODES:
        return _retry(message, error, None, retry_after_seconds(response.headers.get("Retry-After")))
    return _Attempt(result=SendResult(id=message.id, outcome=Outcome.FAILED, error=error))


def _retry(
    message: Outbound, error: str, fault: _Fault | None, retry_after: float | None = None, *, problem: str = ""
) -> _Attempt:
    result = SendResult(id=message.id, outcome=Outcome.RETRY, error=error, retry_after=retry_after)
    return _Attempt(result=result, fault=fault, problem=problem or error)


def _read_error(response: httpx.Response) -> tuple[int | None, str]:
    try:
        error = _error.decode(response.content)
    except msgspec.DecodeError:
        return None, response.text[:300] or response.reason_phrase
    return error.code, (error.message or response.reason_phrase)[:300]


def load_twilio(settings: Settings, status_callback: str) -> TwilioSms:
    """The Twilio provider the settings describe; ``status_callback`` is our public webhook URL."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from):
        raise SettingsError(
            "the twilio provider needs KARTKA_TWILIO_ACCOUNT_SID, KARTKA_TWILIO_AUTH_TOKEN and KARTKA_TWILIO_FROM"
        )
    return TwilioSms(
        base_url=settings.twilio_base_url,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.reveal(),
        from_=settings.twilio_from,
        status_callback=status_callback,
        timeout=settings.provider_timeout_seconds,
    )


# -- status callbacks ---------------------------------------------------------------------------------


def compute_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(auth token, URL + name1 + value1 + name2 + ...))
    with the POST parameters sorted by name."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> set[str]:
    """The URL as given, without its port and with it (the scheme's default added): Twilio has signed
    either form, so its own validators accept both. Only the authority changes; the rest stays as is."""
    parts = urllib.parse.urlsplit(url)
    if not parts.netloc:
        return {url}
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):  # IPv6 literal
        host, _, rest = hostport.partition("]")
        host, port = host + "]", rest.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    default = "443" if parts.scheme.lower() == "https" else "80"
    authority = f"//{parts.netloc}"
    without = url.replace(authority, f"//{userinfo}{at}{host}", 1)
    with_port = url.replace(authority, f"//{userinfo}{at}{host}:{port or default}", 1)
    return {url, without, with_port}


def verify_signature(url: str, params: Mapping[str, str], signature: str, auth_token: str) -> bool:
    """Whether ``signature`` (the X-Twilio-Signature header) signs this request.

    ``url`` is the full URL Twilio requested, query string included, exactly as configured in
    ``StatusCallback`` (behind a proxy: the public URL, not the one the app sees); ``params`` are all the
    form fields received, not a chosen few. The comparison takes constant time.
    """
    if not signature or not auth_token:
        return False
    given = signature.strip().encode()
    matched = False
    for candidate in _port_variants(url):
        expected = compute_signature(candidate, params, auth_token).encode()
        matched |= hmac.compare_digest(expected, given)
    return matched


#: MessageStatus -> receipt status; statuses not listed (inbound "received", ...) are not receipts.
_STATUSES: Final = {
    "accepted": ReceiptStatus.PENDING,
    "scheduled": ReceiptStatus.PENDING,
    "queued": ReceiptStatus.PENDING,
    "sending": ReceiptStatus.PENDING,
    "sent": ReceiptStatus.PENDING,
    "delivered": ReceiptStatus.DELIVERED,
    "read": ReceiptStatus.DELIVERED,
    "undelivered": ReceiptStatus.FAILED,
    "failed": ReceiptStatus.FAILED,
    "canceled": ReceiptStatus.FAILED,
}

#: The delivery error codes seen most, for a readable outbox row (docs: twilio.com/docs/api/errors).
_ERRORS: Final = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier",
    "30008": "unknown error",
    "21610": "unsubscribed recipient",
}


class TwilioStatusCallback(msgspec.Struct, frozen=True):
    """The form fields of a status callback that :func:`parse_status` reads (Twilio sends more; every
    field it sends is signed, so all are kept for the signature). The names are Twilio's."""

    MessageSid: str = ""
    MessageStatus: str = ""
    SmsSid: str = ""
    SmsStatus: str = ""
    ErrorCode: str = ""
    ErrorMessage: str = ""


def parse_status(params: Mapping[str, str]) -> Receipt | None:
    """A status callback's form fields -> a receipt; ``None`` when they are not about an outbound message."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    raw = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    status = _STATUSES.get(raw)
    if not sid or status is None:
        return None
    error = None
    if status is ReceiptStatus.FAILED:
        code = params.get("ErrorCode", "")
        text = params.get("ErrorMessage") or _ERRORS.get(code, "")
        error = ": ".join(part for part in (code, text) if part) or raw
    return Receipt(provider=PROVIDER, provider_message_id=sid, status=status, error=error)

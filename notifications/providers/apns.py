"""Push to iOS through Apple's APNs provider API, with aioapns: HTTP/2 over TLS.

Two ways to authenticate, one per lane. App push uses token auth: an ES256 provider token signed with
the ``.p8`` key, sent as ``authorization`` on every request. Wallet pass updates use certificate auth:
the Pass Type ID certificate (with Apple's WWDR intermediate) is the TLS client certificate, the pass
type identifier is the topic, and there is no ``authorization`` header (:func:`load_passkit_pusher`).

One batch goes out as concurrent streams on a pooled connection. Each message's ``apns-id`` is derived
from its idempotency key, so a retry carries the id of the first attempt, and the key (cut to 64 bytes)
is the ``apns-collapse-id``, so a retried notification replaces the first one on the device instead of
showing twice. Per-message answers become outcomes; answers that concern every message (our provider
token or client certificate refused, APNs unreachable or silent) raise :class:`ProviderUnavailable` for
the worker's backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsTLSClientProtocol
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kartka.settings import Settings
from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable, SendResult, retry_after_seconds
from wallet.passes.identity import PassIdentity

PRODUCTION_URL = "https://api.push.apple.com"
_APNS_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://kartka/notifications/apns-id")
_PRIORITY_NOW = 10  # alerts: deliver immediately
_PRIORITY_BACKGROUND = 5  # what Apple requires for background (content-less) pushes


class _Unreachable(Exception):
    """One message got no answer from APNs: no connection, connection lost, or no reply in time."""


class _ApnsProtocol(APNsTLSClientProtocol):
    """aioapns' HTTP/2 protocol, bound to our host and port and a little more forgiving.

    aioapns hard-codes Apple's host and port as the class attributes ``APNS_SERVER``/``APNS_PORT`` of
    its protocol class, which its connection pool reads (``pool.protocol_class``) both to connect and
    to fill the ``host`` header. :func:`_protocol_for` makes a subclass per provider with ours, and the
    provider installs it as ``pool.protocol_class``; nothing else in aioapns needs changing.

    Two more fixes on top: aioapns matches an error to its request only through a JSON body with a
    ``reason``, so a stream that ends without one (an empty DATA frame, a bodyless 5xx) would leave its
    request waiting forever; here the end of the stream settles it with the bare status. And it hides
    response headers, so ``Retry-After`` is kept aside per ``apns-id`` for the provider to pick up.
    """

    retry_after: ClassVar[dict[str, str]]

    def on_response_received(self, headers: dict[bytes, bytes]) -> None:
        super().on_response_received(headers)
        if b"retry-after" in headers:
            self.retry_after[headers.get(b"apns-id", b"").decode()] = headers[b"retry-after"].decode()

    def on_data_received(self, raw_data: bytes, stream_id: int) -> None:
        try:
            body = json.loads(raw_data)
        except ValueError:
            return
        if isinstance(body, dict) and body.get("reason"):
            super().on_data_received(raw_data, stream_id)

    def on_stream_ended(self, stream_id: int) -> None:
        notification_id = self.request_streams.pop(stream_id, None)
        if notification_id is not None:
            status = self.request_statuses.pop(notification_id, "")
            waiter = self.requests.pop(notification_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(NotificationResult(notification_id, status))
        super().on_stream_ended(stream_id)


def _protocol_for(host: str, port: int) -> type[_ApnsProtocol]:
    class Bound(_ApnsProtocol):
        APNS_SERVER = host
        APNS_PORT = port
        retry_after: ClassVar[dict[str, str]] = {}

    return Bound


class ApnsProvider:
    """One APNs lane: token auth (``key_pem``, ``key_id``, ``team_id``) or certificate auth
    (``client_certificate_pem``), exactly one of the two.

    ``client_certificate_pem`` is the TLS client identity in PEM: the certificate first, then any
    intermediates (sent in the handshake, so Apple's WWDR belongs there), then the unencrypted private
    key. aioapns can only load it from a file, so it is written to a private temporary file (0600, in a
    0700 directory of its own) for the constructor and deleted before the constructor returns.
    """

    name: str
    channels: frozenset[Channel]
    max_batch: int = 100

    def __init__(
        self,
        *,
        url: str = PRODUCTION_URL,
        key_pem: str | None = None,
        key_id: str | None = None,
        team_id: str | None = None,
        client_certificate_pem: bytes | None = None,
        topic: str,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        name: str = "apns",
        channels: Iterable[Channel] = (Channel.APNS,),
    ) -> None:
        token_parts = (key_pem, key_id, team_id)
        if client_certificate_pem is not None:
            if any(part is not None for part in token_parts):
                raise ValueError(
                    "give APNs either a provider key (key_pem, key_id, team_id) or a client certificate "
                    "(client_certificate_pem), not both"
                )
            _check_client_certificate(client_certificate_pem)
        elif key_pem is None or key_id is None or team_id is None:
            raise ValueError(
                "APNs needs a provider key (key_pem, key_id and team_id) or a client certificate "
                "(client_certificate_pem)"
            )
        else:
            _check_key(key_pem)
        if not topic:
            raise ValueError("the APNs topic must not be empty")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"the APNs URL must be https://host[:port], not {url!r}")
        self.name = name
        self.channels = frozenset(channels)
        if not self.channels:
            raise ValueError("an APNs provider must serve at least one channel")
        self._protocol = _protocol_for(parts.hostname, parts.port or 443)
        self._topic = topic
        self._timeout = timeout
        self._certificate_auth = client_certificate_pem is not None
        common: dict[str, Any] = {
            "topic": topic,
            "ssl_context": _tls_context(ca_file),
            "max_connection_attempts": 1,  # one try per send: the worker owns retries and backoff
            "err_func": _ignore,  # every answer is mapped to an outcome below; aioapns need not log it
        }
        if client_certificate_pem is not None:
            # aioapns' certificate pool loads the file into our ssl_context (load_cert_chain) right in
            # its constructor and reads it again only to guess a topic, which we always give.
            with _private_file(client_certificate_pem) as path:
                self._client = APNs(client_cert=str(path), **common)
        else:
            self._client = APNs(key=key_pem, key_id=key_id, team_id=team_id, **common)
        self._client.pool.protocol_class = self._protocol
        self._stragglers: set[asyncio.Task[SendResult]] = set()

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        if not messages:
            return []
        tasks = [asyncio.create_task(self._send_one(message)) for message in messages]
        try:
            await asyncio.wait(tasks, timeout=self._timeout)
        finally:
            # A stream APNs has not answered stays open until it does or the connection closes; cancelling
            # it would leave aioapns resolving a cancelled future. Keep such tasks until they finish.
            for task in tasks:
                if not task.done():
                    self._stragglers.add(task)
                    task.add_done_callback(self._settle)
        results: list[SendResult] = []
        unreachable: list[str] = []
        refused: ProviderUnavailable | None = None
        for message, task in zip(messages, tasks, strict=True):
            error = task.exception() if task.done() else _Unreachable(f"no answer within {self._timeout:g}s")
            if isinstance(error, _Unreachable):
                unreachable.append(str(error))
                results.append(SendResult(id=message.id, outcome=Outcome.RETRY, error=str(error)))
            elif isinstance(error, ProviderUnavailable):
                refused = error
            elif error is not None:
                raise error
            else:
                results.append(task.result())
        if refused is not None:
            raise refused
        if len(unreachable) == len(messages):  # nothing got through: APNs is down for us, not one message
            raise ProviderUnavailable(f"APNs: {unreachable[0]}")
        return results

    def _settle(self, task: asyncio.Task[SendResult]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: nobody waits for a straggler's answer any more

    async def _send_one(self, message: Outbound) -> SendResult:
        request = self._request(message)
        try:
            result = await self._client.send_notification(request)
        except (ApnsConnectionError, MaxAttemptsExceeded, ConnectionClosed, OSError) as exc:
            host = f"{self._protocol.APNS_SERVER}:{self._protocol.APNS_PORT}"
            raise _Unreachable(f"cannot reach {host}: {type(exc).__name__} {exc}".strip()) from exc
        retry_after = retry_after_seconds(self._protocol.retry_after.pop(request.notification_id, None))
        return _outcome(message, result, retry_after, certificate_auth=self._certificate_auth)

    def _request(self, message: Outbound) -> NotificationRequest:
        common: dict[str, Any] = {
            "device_token": message.recipient,
            "notification_id": apns_id(message.key),
            "collapse_key": message.key.encode()[:64].decode(errors="ignore"),
        }
        if message.text == "" and message.title is None:
            # A content-less push, e.g. "this wallet pass changed": Wallet wants exactly {} and the
            # pass type id as topic.
            return NotificationRequest(
                message={},
                priority=_PRIORITY_BACKGROUND,
                push_type=PushType.BACKGROUND,
                apns_topic=message.data.get("topic", self._topic),
                **common,
            )
        alert: str | dict[str, str] = message.text
        if message.title is not None:
            alert = {"title": message.title, "body": message.text}
        extra = {key: value for key, value in message.data.items() if key != "aps"}
        return NotificationRequest(
            message={"aps": {"alert": alert}, **extra},
            priority=_PRIORITY_NOW,
            push_type=PushType.ALERT,
            **common,
        )

    async def aclose(self) -> None:
        self._client.pool.close()
        if self._stragglers:  # closing the connections fails whatever still waits on them
            await asyncio.wait(set(self._stragglers), timeout=1)
            for task in self._stragglers:
                task.cancel()


def apns_id(key: str) -> str:
    """The ``apns-id`` for an idempotency key: the same key always gets the same UUID."""
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, key))


def load_apns(settings: Settings) -> ApnsProvider | None:
    """The APNs provider the settings describe, or ``None`` when app push to iOS is not configured."""
    if settings.apns_key_file is None:
        return None
    if settings.apns_key_id is None or settings.apns_team_id is None or settings.apns_topic is None:
        raise ValueError("APNs needs KARTKA_APNS_KEY_ID, KARTKA_APNS_TEAM_ID and KARTKA_APNS_TOPIC")
    return ApnsProvider(
        url=settings.apns_url,
        key_pem=settings.apns_key_file.read_text(),
        key_id=settings.apns_key_id,
        team_id=settings.apns_team_id,
        topic=settings.apns_topic,
        ca_file=settings.apns_ca_file,
        timeout=settings.provider_timeout_seconds,
    )


def load_passkit_pusher(
    identity: PassIdentity, *, url: str = PRODUCTION_URL, ca_file: Path | None = None, timeout: float = 10.0
) -> ApnsProvider:
    """The lane that tells Wallet a pass changed: certificate auth with the Pass Type ID certificate
    (followed by the WWDR intermediate that issued it, so APNs can build the chain), the pass type
    identifier as topic, channel :attr:`Channel.PASSKIT`."""
    key = identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in (identity.certificate, identity.wwdr))
    return ApnsProvider(
        url=url,
        client_certificate_pem=chain + key,
        topic=identity.pass_type_id,
        ca_file=ca_file,
        timeout=timeout,
        name="passkit",
        channels=(Channel.PASSKIT,),
    )


def _outcome(
    message: Outbound, result: NotificationResult, retry_after: float | None, *, certificate_auth: bool = False
) -> SendResult:
    status = int(result.status) if result.status.isdigit() else 0
    error = f"{status} {result.description or 'no reason given'}"
    if status == 200:
        return SendResult(id=message.id, outcome=Outcome.SENT, provider_message_id=result.notification_id)
    if status == 410 or (status == 400 and result.description == "BadDeviceToken"):
        return SendResult(id=message.id, outcome=Outcome.UNREGISTERED, error=error)
    if status == 403:  # InvalidProviderToken, BadCertificate, BadCertificateEnvironment...: true of every message
        credential = "client certificate" if certificate_auth else "provider token"
        raise ProviderUnavailable(f"APNs refused our {credential}: {error}")
    if status == 429 or status >= 500:
        return SendResult(id=message.id, outcome=Outcome.RETRY, error=error, retry_after=retry_after)
    return SendResult(id=message.id, outcome=Outcome.FAILED, error=error)


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    context.set_alpn_protocols(["h2"])  # aioapns speaks HTTP/2 only; say so in the handshake
    return context


def _check_key(key_pem: str) -> None:
    """Fail at start-up, not at the first push, when the .p8 file is not an ES256 key."""
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("the APNs key is not a PEM private key (expected the .p8 file from Apple)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the APNs key must be an EC P-256 key (the .p8 file from Apple)")


def _check_client_certificate(pem: bytes) -> None:
    """Fail at start-up when the PEM is not certificate(s) plus the unencrypted key of the first one.

    An encrypted key must be refused here: ``load_cert_chain`` without a password would have OpenSSL
    prompt for one on the terminal."""
    what = "the APNs client certificate PEM"
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError(f"{what} holds no certificate (expected certificate, intermediates, then key)") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ValueError(f"the private key in {what} is encrypted; APNs needs it unencrypted") from None
    except ValueError:
        raise ValueError(
            f"{what} holds no readable private key (expected certificate, intermediates, then key)"
        ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise ValueError(f"the private key in {what} does not belong to its first certificate (which must be the leaf)")


@contextlib.contextmanager
def _private_file(data: bytes) -> Iterator[Path]:
    """``data`` in a file only this user can read, for as long as the ``with`` block runs."""
    directory = Path(tempfile.mkdtemp(prefix="kartka-apns-"))  # mode 0700
    path = directory / "client.pem"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # exactly 0600, whatever the umask
            handle.write(data)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _ignore(request: NotificationRequest, result: NotificationResult) -> None:
    return None

"""Push to iOS through Apple's APNs provider API: HTTP/2 over TLS, with httpx (as FCM and Google go).

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

Why httpx and not aioapns: aioapns hard-codes Apple's hosts, loads a client certificate only from a file,
hides response headers (``Retry-After``) and leaves a request waiting when an error comes without a JSON
body; using it meant subclassing its private protocol. httpx, already used for FCM and Google, takes
all of that through its public API: one HTTP stack, one set of timeouts and errors. It costs more CPU per
push than aioapns' bare ``h2`` (measured with ``bench/apns.py``: docs/scale.md, "APNs").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kartka.crypto import load_private_key
from kartka.settings import Settings
from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable, SendResult, retry_after_seconds
from wallet.passes.identity import PassIdentity

PRODUCTION_URL = "https://api.push.apple.com"
_APNS_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://kartka/notifications/apns-id")
_PRIORITY_NOW = 10  # alerts: deliver immediately
_PRIORITY_BACKGROUND = 5  # what Apple requires for background (content-less) pushes
#: A provider token is made anew this often: Apple refuses one older than an hour, and one made more
#: often than every 20 minutes (TooManyProviderTokenUpdates).
TOKEN_LIFETIME_SECONDS = 50 * 60


class _Unreachable(Exception):
    """One message got no answer from APNs: no connection, connection lost, or no reply in time."""


class ApnsProvider:
    """One APNs lane: token auth (``key_pem``, ``key_id``, ``team_id``) or certificate auth
    (``client_certificate_pem``), exactly one of the two.

    ``client_certificate_pem`` is the TLS client identity in PEM: the certificate first, then any
    intermediates (sent in the handshake, so Apple's WWDR belongs there), then the unencrypted private
    key. Python's ``ssl`` loads a client certificate only from a path, so on Linux it is handed an
    anonymous memory file (``memfd``: no name in any file system, gone when closed) for the constructor;
    elsewhere a private temporary file (0600, in a 0700 directory of its own), deleted before the
    constructor returns.
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
        self._host = f"{parts.hostname}:{parts.port or 443}"
        self._topic = topic
        self._timeout = timeout
        self._certificate_auth = client_certificate_pem is not None
        self._key = key_pem
        self._key_id = key_id
        self._team_id = team_id
        self._token: tuple[float, str] | None = None  # (made at, monotonic; the provider token)
        context = _tls_context(ca_file)
        if client_certificate_pem is not None:
            _load_client_certificate(context, client_certificate_pem)
        # HTTP/2 only (APNs speaks nothing else): one connection, a stream per push.
        self._client = httpx.AsyncClient(
            base_url=f"https://{self._host}", http1=False, http2=True, verify=context, timeout=timeout
        )

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        if not messages:
            return []
        tasks = [asyncio.create_task(self._send_one(message)) for message in messages]
        try:
            await asyncio.wait(tasks, timeout=self._timeout)
        finally:
            # A stream APNs has not answered is given up: httpx forgets it, and a late answer on the
            # connection is dropped (the message is retried with the same apns-id).
            late = [task for task in tasks if not task.done()]
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        results: list[SendResult] = []
        unreachable: list[str] = []
        refused: ProviderUnavailable | None = None
        for message, task in zip(messages, tasks, strict=True):
            error = (
                task.exception()
                if task.done() and not task.cancelled()
                else _Unreachable(f"no answer within {self._timeout:g}s")
            )
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

    async def _send_one(self, message: Outbound) -> SendResult:
        path, headers, body = self._request(message)
        try:
            response = await self._client.post(path, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            if not isinstance(exc, httpx.ConnectTimeout):
                raise _Unreachable(f"no answer within {self._timeout:g}s") from exc
            raise _Unreachable(f"cannot reach {self._host}: {type(exc).__name__} {exc}".strip()) from exc
        except (httpx.TransportError, OSError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
            # httpcore's HTTP/2 lets anyio's end of stream through when the server closes the TLS
            # connection under a write (a refused client certificate, seen on a busy machine).
            raise _Unreachable(f"cannot reach {self._host}: {type(exc).__name__} {exc}".strip()) from exc
        return _outcome(message, response, certificate_auth=self._certificate_auth)

    def _request(self, message: Outbound) -> tuple[str, dict[bytes, bytes], bytes]:
        headers: dict[str, str | bytes] = {
            "apns-id": apns_id(message.key),
            # UTF-8, cut to APNs' 64 bytes without splitting a character
            "apns-collapse-id": message.key.encode()[:64].decode(errors="ignore").encode(),
        }
        if self._key is not None:
            headers["authorization"] = f"bearer {self._provider_token()}"
        payload: dict[str, Any]
        if message.text == "" and message.title is None:
            # A content-less push, e.g. "this wallet pass changed": Wallet wants exactly {} and the
            # pass type id as topic.
            payload = {}
            headers |= {
                "apns-topic": message.data.get("topic", self._topic),
                "apns-push-type": "background",
                "apns-priority": str(_PRIORITY_BACKGROUND),
            }
        else:
            alert: str | dict[str, str] = message.text
            if message.title is not None:
                alert = {"title": message.title, "body": message.text}
            extra = {key: value for key, value in message.data.items() if key != "aps"}
            payload = {"aps": {"alert": alert}, **extra}
            headers |= {"apns-topic": self._topic, "apns-push-type": "alert", "apns-priority": str(_PRIORITY_NOW)}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        encoded = {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in headers.items()}
        return f"/3/device/{message.recipient}", encoded, body

    def _provider_token(self) -> str:
        """The ES256 provider token, made again every ``TOKEN_LIFETIME_SECONDS``."""
        now = time.monotonic()
        if self._token is None or now - self._token[0] >= TOKEN_LIFETIME_SECONDS:
            assert self._key is not None
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(time.time())},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._token = (now, token)
        return self._token[1]

    async def aclose(self) -> None:
        await self._client.aclose()


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


def _outcome(message: Outbound, response: httpx.Response, *, certificate_auth: bool = False) -> SendResult:
    status = response.status_code
    reason = _reason(response.content)
    error = f"{status} {reason or 'no reason given'}"
    if status == 200:
        return SendResult(id=message.id, outcome=Outcome.SENT, provider_message_id=response.headers.get("apns-id"))
    if status == 410 or (status == 400 and reason == "BadDeviceToken"):
        return SendResult(id=message.id, outcome=Outcome.UNREGISTERED, error=error)
    if status == 403:  # InvalidProviderToken, BadCertificate, BadCertificateEnvironment...: true of every message
        credential = "client certificate" if certificate_auth else "provider token"
        raise ProviderUnavailable(f"APNs refused our {credential}: {error}")
    if status == 429 or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        return SendResult(id=message.id, outcome=Outcome.RETRY, error=error, retry_after=retry_after)
    return SendResult(id=message.id, outcome=Outcome.FAILED, error=error)


def _reason(body: bytes) -> str | None:
    """APNs' ``reason`` from an error's JSON body; ``None`` for no body or one without it."""
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        return None
    reason = answer.get("reason") if isinstance(answer, dict) else None
    return reason if isinstance(reason, str) and reason else None


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


def _check_key(key_pem: str) -> None:
    """Fail at start-up, not at the first push, when the .p8 file is not an ES256 key."""
    try:
        key = load_private_key(key_pem.encode())
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
        key = load_private_key(pem)
    except TypeError:
        raise ValueError(f"the private key in {what} is encrypted; APNs needs it unencrypted") from None
    except ValueError:
        raise ValueError(
            f"{what} holds no readable private key (expected certificate, intermediates, then key)"
        ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise ValueError(f"the private key in {what} does not belong to its first certificate (which must be the leaf)")


def _load_client_certificate(context: ssl.SSLContext, pem: bytes) -> None:
    """Load the client certificate chain and key into ``context`` without a named file where the
    system allows (Linux: an anonymous memory file, read through ``/proc/self/fd``)."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("kartka-apns-client", os.MFD_CLOEXEC)
        try:
            with os.fdopen(os.dup(fd), "wb") as handle:
                handle.write(pem)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with _private_file(pem) as path:
        context.load_cert_chain(path)


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

"""A fake APNs provider API: HTTP/2 over TLS (ALPN ``h2``) on a real socket, in a background thread.

It is written straight on the ``h2`` state machine, not an ASGI server, so that it frames answers the
way Apple does: a 200 is one HEADERS frame that ends the stream, an error is HEADERS plus one DATA
frame holding ``{"reason": ...}``, and ``apns-id`` is echoed on both. It checks what Apple checks: the
ES256 provider token (signature, ``kid``, ``iss``, age), ``apns-topic``, the ``apns-id`` format and the
collapse id's length. Tests choose how each device token is answered (``replies``, ``default``) and
read back every request (``requests``) and every accepted notification (``received``).

Given ``client_ca``, it also does certificate auth as Apple does for Wallet pass updates: the TLS
handshake asks for a client certificate (optional, verified against ``client_ca``; the client sends
its intermediates), and on a connection that presented one, requests need no ``authorization``
header: they are authenticated by the certificate, whose subject ``UID`` is the only topic allowed
(any other gets 400 ``TopicDisallowed``). A connection with neither gets 403 ``MissingProviderToken``.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import H2Error

from tests.fakes.tls import TlsFiles

_PATH = re.compile(r"^/3/device/([0-9A-Za-z]+)$")
_APNS_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOKEN_MAX_AGE = 3600  # Apple refuses provider tokens older than an hour


@dataclass
class Reply:
    """How to answer one device token once the request itself is valid."""

    status: int = 200
    reason: str | None = None  # the JSON body's "reason"; None sends no body
    delay: float = 0.0  # seconds to wait before answering
    retry_after: str | None = None  # a Retry-After header, verbatim


@dataclass(frozen=True)
class Request:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any] | None
    status: int  # what the fake answered
    reason: str | None
    certificate_uid: str | None = None  # the UID of the client certificate that authenticated it, if one did

    @property
    def topic(self) -> str | None:
        return self.headers.get("apns-topic")

    @property
    def apns_id(self) -> str:
        return self.headers.get("apns-id", "")


class FakeApns:
    def __init__(
        self,
        tls: TlsFiles,
        *,
        public_pem: str | None = None,
        key_id: str | None = None,
        team_id: str | None = None,
        client_ca: Path | None = None,
    ) -> None:
        self.tls = tls
        self.public_pem = public_pem  # of the provider's .p8 key; None accepts no provider token
        self.key_id = key_id
        self.team_id = team_id
        self.client_ca = client_ca  # trust root for client certificates; None asks for none
        self.default = Reply()
        self.replies: dict[str, Reply] = {}  # device token -> how to answer it
        self.requests: list[Request] = []  # everything that reached the handler
        self.alpn: list[str | None] = []  # the protocol each TLS connection chose
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._late = threading.Condition()
        self._late_answers = 0  # delayed replies done with: written, or refused by a stream the client closed

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Request]:
        """The notifications Apple would have delivered."""
        return [request for request in self.requests if request.status == 200]

    def reset(self) -> None:
        with self._late:
            self._late_answers = 0
        self.default = Reply()
        self.replies.clear()
        self.requests.clear()
        self.alpn.clear()

    def wait_late_answers(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` delayed replies have gone out (or found their stream gone)."""
        with self._late:
            return self._late.wait_for(lambda: self._late_answers >= count, timeout)

    def late_answer_done(self) -> None:
        with self._late:
            self._late_answers += 1
            self._late.notify_all()

    # -- the provider API -----------------------------------------------------------------------

    def judge(
        self, headers: dict[str, str], body: bytes, *, certificate_uid: str | None = None
    ) -> tuple[int, str | None, Reply | None]:
        """Apple's checks in Apple's order, then the reply configured for the token (``None`` if refused).

        ``certificate_uid`` is the subject UID of the verified client certificate the connection
        presented, if any."""
        match = _PATH.match(headers.get(":path", ""))
        token = match.group(1) if match else ""
        payload = _json_object(body)
        # A provider token, when sent, is what authenticates the request; otherwise the certificate does.
        by_certificate = certificate_uid if "authorization" not in headers else None
        refusal = self._refusal(headers, match is not None, payload, by_certificate)
        reply: Reply | None = None
        status: int
        reason: str | None
        if refusal is not None:
            status, reason = refusal
        else:
            reply = self.replies.get(token, self.default)
            status, reason = reply.status, reply.reason
        self.requests.append(
            Request(
                token=token,
                headers=headers,
                payload=payload,
                status=status,
                reason=reason,
                certificate_uid=by_certificate,
            )
        )
        return status, reason, reply

    def _refusal(
        self, headers: dict[str, str], path_ok: bool, payload: object, certificate_uid: str | None
    ) -> tuple[int, str] | None:
        problem = None if certificate_uid is not None else self._credentials(headers.get("authorization", ""))
        topic = headers.get("apns-topic")
        checks = [
            (headers.get(":method") != "POST", 405, "MethodNotAllowed"),
            (not path_ok, 404, "BadPath"),
            (problem is not None, 403, problem or ""),
            (not topic, 400, "MissingTopic"),
            (certificate_uid is not None and topic != certificate_uid, 400, "TopicDisallowed"),
            ("apns-id" in headers and not _APNS_ID.match(headers["apns-id"]), 400, "BadMessageId"),
            (len(headers.get("apns-collapse-id", "").encode()) > 64, 400, "BadCollapseId"),
            (payload is None, 400, "PayloadEmpty"),
        ]
        return next(((status, reason) for failed, status, reason in checks if failed), None)

    def _credentials(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "MissingProviderToken"
        if self.public_pem is None:
            return "InvalidProviderToken"
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token, self.public_pem, algorithms=["ES256"], issuer=self.team_id, options={"require": ["iat", "iss"]}
            )
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if header.get("kid") != self.key_id:
            return "InvalidProviderToken"
        if int(claims["iat"]) < time.time() - TOKEN_MAX_AGE:
            return "ExpiredProviderToken"
        return None

    # -- the server -----------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(ready),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake APNs did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)
            self._loop = None

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        if self.client_ca is not None:
            context.load_verify_locations(cafile=self.client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL  # a presented certificate must verify; none is fine
        context.set_alpn_protocols(["h2"])
        connections: set[_Connection] = set()
        server = await self._loop.create_server(lambda: _Connection(self, connections), "127.0.0.1", 0, ssl=context)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for connection in list(connections):
                connection.abort()
            await server.wait_closed()
            await asyncio.sleep(0.01)  # let the aborted transports report connection_lost


class _Connection(asyncio.Protocol):
    """One client connection: collects each stream's headers and body, answers when the stream ends."""

    def __init__(self, fake: FakeApns, registry: set[_Connection]) -> None:
        self.fake = fake
        self.registry = registry
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.answers: set[asyncio.Task[None]] = set()
        self.certificate_uid: str | None = None  # of the verified client certificate, if one was presented

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.registry.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        protocol = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        self.fake.alpn.append(protocol)
        if ssl_object is not None:
            self.certificate_uid = _subject_uid(ssl_object.getpeercert())
        if protocol != "h2":  # Apple speaks nothing else
            transport.close()
            return
        self.h2.local_settings.max_concurrent_streams = 1000
        self.h2.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except H2Error:
            self.flush()
            self.abort()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                headers = {_text(name): _text(value) for name, value in event.headers}
                self.streams[event.stream_id] = (headers, bytearray())
            elif isinstance(event, DataReceived):
                self.streams[event.stream_id][1].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                headers, body = self.streams.pop(event.stream_id)
                task = asyncio.get_running_loop().create_task(self.answer(event.stream_id, headers, bytes(body)))
                self.answers.add(task)
                task.add_done_callback(self.answers.discard)
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                self.flush()
                self.abort()
                return
        self.flush()

    async def answer(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        status, reason, reply = self.fake.judge(headers, body, certificate_uid=self.certificate_uid)
        if reply is not None and reply.delay:
            await asyncio.sleep(reply.delay)
            try:
                self._answer(stream_id, headers, status, reason, reply)
            finally:
                self.fake.late_answer_done()
        else:
            self._answer(stream_id, headers, status, reason, reply)

    def _answer(
        self, stream_id: int, headers: dict[str, str], status: int, reason: str | None, reply: Reply | None
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        response = [(":status", str(status)), ("apns-id", headers.get("apns-id") or str(uuid.uuid4()))]
        if reply is not None and reply.retry_after is not None:
            response.append(("retry-after", reply.retry_after))
        try:
            if reason is None:
                self.h2.send_headers(stream_id, response, end_stream=True)
            else:
                answer: dict[str, Any] = {"reason": reason}
                if status == 410:
                    answer["timestamp"] = int(time.time() * 1000)
                self.h2.send_headers(stream_id, [*response, ("content-type", "application/json")])
                self.h2.send_data(stream_id, json.dumps(answer).encode(), end_stream=True)
        except H2Error:
            return  # the client gave up on the stream or the connection
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        for task in self.answers:
            task.cancel()


def _subject_uid(certificate: dict[str, Any] | None) -> str | None:
    """The subject UID of a verified peer certificate as ``SSLObject.getpeercert()`` gives it (``userId``)."""
    for rdn in (certificate or {}).get("subject", ()):
        for name, value in rdn:
            if name == "userId":
                return str(value)
    return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None

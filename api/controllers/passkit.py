"""The PassKit web service, at ``{public URL}/passkit/v1``, exactly as Apple's Wallet calls it.

Phones that added a pass register for its updates, ask which of their passes changed since the last
update tag they saw, fetch a changed pass (``If-Modified-Since`` answered with 304 when nothing
changed), unregister, and send their error logs. Requests about one pass carry
``Authorization: ApplePass <authenticationToken>``; a missing or wrong token, or a pass or pass type
this service does not know, is 401 (so the answer tells nothing about which passes exist).
"""

from __future__ import annotations

import email.utils
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, delete, get, head, post
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter

from api.auth import APPLE_PASS_SCHEME
from api.errors import problems
from api.request import client_address
from api.state import provide_conn, provide_tx, services_of
from kartka.bounds import parse_http_date, parse_unix_seconds
from kartka.db import Connection
from kartka.errors import Unauthenticated
from wallet.passes import service as passes
from wallet.passes.service import PKPASS_MEDIA_TYPE, PassRecord

logger = logging.getLogger("kartka.passkit")

DeviceId = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9._-]{1,128}$", description="deviceLibraryIdentifier")]
PassType = Annotated[str, PathParameter(max_length=160, description="passTypeIdentifier")]
Serial = Annotated[str, PathParameter(max_length=128, description="serialNumber (the card number, then a suffix)")]
MAX_LOG_LINES: Final = 50
LOGS_PER_HOUR: Final = 120  # per client address: devices log rarely; more is somebody filling our logs


class PushToken(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    # Apple promises no length (64 hex digits today); the column takes as many (migration 0016).
    push_token: Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f]{16,2048}$")]


class SerialNumbers(msgspec.Struct, frozen=True, rename="camel"):
    serial_numbers: list[str]
    last_updated: str


#: How a 401 of the PassKit web service says to authenticate (the pass's own token, Apple's scheme).
_CHALLENGE: Final = 'ApplePass realm="passkit"'


class Logs(msgspec.Struct):
    logs: Annotated[list[Annotated[str, msgspec.Meta(max_length=4096)]], msgspec.Meta(max_length=1000)]


def _apple_pass_token(request: Request[Any, Any, Any]) -> str:
    scheme, _, token = (request.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "applepass" or not token.strip():  # schemes are case-insensitive (RFC 9110 §11.1)
        raise Unauthenticated(
            "send the pass's authenticationToken as 'Authorization: ApplePass <token>'", challenge=_CHALLENGE
        )
    return token.strip()


async def _pass(request: Request[Any, Any, Any], conn: Connection, pass_type: str, serial: str) -> PassRecord:
    """The pass the request is about, if its ApplePass token is right; 401 otherwise."""
    token = _apple_pass_token(request)
    apple = services_of(request.app.state).passes.apple  # 404 when Apple Wallet is not offered
    record = await passes.authorized(conn, serial, token) if pass_type == apple.identity.pass_type_id else None
    if record is None:
        raise Unauthenticated("this pass is unknown or its authentication token is wrong", challenge=_CHALLENGE)
    return record


def _http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


def _last_modified(record: PassRecord, now: datetime) -> str:
    """The pass's version second, but never later than now: the response's Date (set from the same
    clock as it goes out) must not precede it (RFC 9110 §8.8.2.1). The version runs ahead of the clock
    when a pass changes more than once a second (see ``passes.touch``); a phone given the earlier time
    just gets the pass again next time, since 304 needs its ``If-Modified-Since`` to reach the version."""
    return _http_date(min(record.updated_at, now))


def _not_modified_since(request: Request[Any, Any, Any], record: PassRecord) -> bool:
    """An invalid or out-of-range date is ignored (RFC 9110 §13.1.3): the phone gets the whole pass."""
    moment = parse_http_date(request.headers.get("if-modified-since"))
    return moment is not None and record.updated_at <= moment


#: The operations a pass's ``authenticationToken`` opens (the listing and the log take none, as Apple says).
PASS_SECURITY: Final[list[dict[str, list[str]]]] = [{APPLE_PASS_SCHEME: []}]
NOT_MODIFIED: Final = {
    304: ResponseSpec(data_container=None, description="Not modified since If-Modified-Since: keep the pass you have")
}
LAST_MODIFIED: Final = [
    ResponseHeader(
        name="Last-Modified", description="When the pass last changed (never later than Date)", documentation_only=True
    )
]


class PassKitController(Controller):
    path = "/passkit/v1"
    tags = ["passkit"]  # noqa: RUF012
    dependencies = {"tx": Provide(provide_tx), "conn": Provide(provide_conn)}  # noqa: RUF012

    @post(
        "/devices/{device_id:str}/registrations/{pass_type:str}/{serial:str}",
        operation_id="passkitRegister",
        summary="Register a device for a pass's updates: 201 new, 200 already registered",
        status_code=201,
        security=PASS_SECURITY,
        responses=problems(401) | {200: ResponseSpec(data_container=None, description="Already registered")},
    )
    async def register(
        self,
        device_id: DeviceId,
        pass_type: PassType,
        serial: Serial,
        data: JSONBody[PushToken],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[None]:
        record = await _pass(request, tx, pass_type, serial)
        now = services_of(request.app.state).clock.now()
        created = await passes.register_device(tx, device_id, record.serial_number, data.push_token, now)
        return Response(None, status_code=201 if created else 200)

    @get(
        "/devices/{device_id:str}/registrations/{pass_type:str}",
        operation_id="passkitUpdatedSerials",
        summary="The serial numbers of this device's passes updated since a tag: 200, or 204 when none",
        responses=problems(404)
        | {204: ResponseSpec(data_container=None, description="None of this device's passes changed since the tag")},
    )
    async def updated(
        self,
        device_id: DeviceId,
        pass_type: PassType,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        passes_updated_since: Annotated[
            str | None, QueryParameter(name="passesUpdatedSince", max_length=40, required=False)
        ] = None,
    ) -> Response[SerialNumbers | None]:
        apple = services_of(request.app.state).passes.apple
        if pass_type != apple.identity.pass_type_id:
            return Response(None, status_code=204)
        # Update tags are Unix seconds (see wallet.passes.service.updated_serials). A tag we did not
        # give out (none, garbage, out of range): every registered serial, so the phone catches up.
        since = parse_unix_seconds(passes_updated_since)
        now = services_of(request.app.state).clock.now()
        serials, last = await passes.updated_serials(conn, device_id, since, now)
        if not serials:
            return Response(None, status_code=204)
        return Response(SerialNumbers(serial_numbers=serials, last_updated=str(int(last.timestamp()))))

    @get(
        "/passes/{pass_type:str}/{serial:str}",
        operation_id="passkitLatestPass",
        summary="The latest version of a pass (Last-Modified; 304 for If-Modified-Since when unchanged)",
        media_type=PKPASS_MEDIA_TYPE,
        security=PASS_SECURITY,
        response_headers=LAST_MODIFIED,
        responses=problems(401) | NOT_MODIFIED,
    )
    async def latest(
        self,
        pass_type: PassType,
        serial: Serial,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[bytes]:
        record = await _pass(request, conn, pass_type, serial)
        services = services_of(request.app.state)
        now = services.clock.now()
        headers = {"Last-Modified": _last_modified(record, now), "Cache-Control": "no-cache"}
        if _not_modified_since(request, record):
            return Response(b"", status_code=304, headers=headers)
        body, _ = await services.passes.apple_pass(conn, record.card_number, now, record)
        return Response(body, media_type=PKPASS_MEDIA_TYPE, headers=headers)

    @head(
        "/passes/{pass_type:str}/{serial:str}",
        operation_id="passkitLatestPassHead",
        summary="What GET would answer, without the pass",
        media_type=PKPASS_MEDIA_TYPE,
        security=PASS_SECURITY,
        response_headers=LAST_MODIFIED,
        responses=problems(401) | NOT_MODIFIED,
    )
    async def latest_head(
        self,
        pass_type: PassType,
        serial: Serial,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[None]:
        record = await _pass(request, conn, pass_type, serial)
        now = services_of(request.app.state).clock.now()
        headers = {"Last-Modified": _last_modified(record, now), "Cache-Control": "no-cache"}
        status = 304 if _not_modified_since(request, record) else 200
        # Litestar renders no body for HEAD; text/plain only lets it accept the empty content.
        response = Response(None, status_code=status, headers=headers, media_type="text/plain")
        response.headers["Content-Type"] = PKPASS_MEDIA_TYPE
        return response

    @delete(
        "/devices/{device_id:str}/registrations/{pass_type:str}/{serial:str}",
        operation_id="passkitUnregister",
        summary="Stop sending this device updates of this pass",
        status_code=200,
        security=PASS_SECURITY,
        responses=problems(401),
    )
    async def unregister(
        self,
        device_id: DeviceId,
        pass_type: PassType,
        serial: Serial,
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[None]:
        record = await _pass(request, tx, pass_type, serial)
        await passes.unregister_device(tx, device_id, record.serial_number, services_of(request.app.state).clock.now())
        return Response(None, status_code=200)

    @post(
        "/log",
        operation_id="passkitLog",
        summary="Error messages from devices about this web service (logged)",
        status_code=200,
        responses=problems(429),
    )
    async def log(
        self, data: JSONBody[Logs], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Response[None]:
        services = services_of(request.app.state)
        await services.limiter.hit(
            tx,
            "passkit-log",
            client_address(request),
            limit=LOGS_PER_HOUR,
            window=timedelta(hours=1),
            now=services.clock.now(),
            message="too many log messages from this address",
        )
        for line in data.logs[:MAX_LOG_LINES]:
            logger.warning("device log: %s", " ".join(line[:500].split()))  # the log formatter escapes it
        return Response(None, status_code=200)

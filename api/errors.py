"""The one place errors become HTTP responses: RFC 9457 ``application/problem+json``.

Every failure a client can cause (domain errors, validation, malformed JSON or UTF-8, 404, 405, 413,
bad keys) comes out as a problem with a ``title`` per status, a ``detail`` a person can act on, a
stable ``code`` and, for invalid input, ``errors`` naming each field and what is wrong with it. Other
details are extension members at the top level, as RFC 9457 has them. A database that cannot be
reached is a 503 with ``Retry-After``. Anything else unexpected is logged with its traceback and
answered with a bare 500 that leaks nothing.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, Final

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap

from api.request import redact_path
from kartka.db import unreachable
from kartka.errors import DomainError, RateLimited, Unauthenticated, Unavailable

logger = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"

_KIND_STATUS: Final[dict[str, int]] = {
    "invalid": 422,
    "not-found": 404,
    "conflict": 409,
    "unauthenticated": 401,
    "forbidden": 403,
    "rate-limited": 429,
    "unsupported-media-type": 415,
    "unavailable": 503,
}
_STANDARD_MEMBERS: Final = frozenset({"type", "title", "status", "detail", "instance", "code", "errors"})
_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]+)`")
_MISSING_PARAMETER = re.compile(r"Missing required (header|query|path|cookie) parameter '([^']+)'")


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details (the documented shape; extension members may follow at the top level)."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"
    instance: str | None = None
    code: str | None = None
    errors: list[FieldError] | None = None


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems a handler may answer with (400 and 422 always)."""
    return {
        status: ResponseSpec(data_container=Problem, media_type=PROBLEM_JSON, description=HTTPStatus(status).phrase)
        for status in sorted({400, 422, *statuses})
    }


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    *,
    code: str | None = None,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"/problems/{code}" if code else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if code:
        body["code"] = code
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    for key, value in (extra or {}).items():
        if key not in _STANDARD_MEMBERS:
            body[key] = value
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    status = _KIND_STATUS.get(exc.kind, 400)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = exc.challenge if isinstance(exc, Unauthenticated) else Unauthenticated.challenge
    if isinstance(exc, RateLimited | Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    errors = [FieldError(exc.field, exc.message)] if exc.field and status == 422 else None
    return problem_response(
        request, status, exc.message, code=exc.code, errors=errors, extra=exc.extra, headers=headers
    )


def _field_of(item: dict[str, Any]) -> str:
    """The dotted path of the field at fault: msgspec names unknown and missing fields in its message,
    and the path of the object that holds them in the key. Headers and query parameters are named."""
    key = str(item.get("key") or "").removeprefix("$.")
    if item.get("source") in ("header", "query", "path") and key:
        return key
    base = "" if key in ("", "data") else key
    named = _NAMED_FIELD.search(str(item.get("message") or ""))
    if named:
        return f"{base}.{named.group(1)}" if base else named.group(1)
    return base or "body"


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors: list[FieldError] = []
    if isinstance(exc.extra, list):
        for item in exc.extra:
            if not isinstance(item, dict):
                continue
            message = str(item.get("message") or "invalid value")
            if message == "'data'":  # litestar's wording for an empty body
                message = "the request body is empty; send a JSON object"
            message = message.replace("`$.", "`")
            errors.append(FieldError(_field_of(item), message))
    if not errors:
        missing = _MISSING_PARAMETER.match(exc.detail or "")
        if missing:
            errors.append(FieldError(missing.group(2), f"this {missing.group(1)} is required"))
        else:
            errors.append(FieldError("body", exc.detail))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(request, 422, f"The request is invalid: {detail}", code="validation-failed", errors=errors)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500:
        return _unexpected(request, exc)
    detail = exc.detail or HTTPStatus(status).phrase
    headers = dict(exc.headers or {})
    # Every problem carries a stable code; Litestar's own 4xx get theirs from the status phrase.
    code = HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    if status == 404:
        code = "not-found"
        detail = f"There is no {request.method} {request.url.path}; see /schema for the API"
    elif status == 405:
        code = "method-not-allowed"
        allowed = headers.get("allow") or headers.get("Allow") or ""
        detail = f"{request.method} is not allowed on {request.url.path}" + (f"; allowed: {allowed}" if allowed else "")
    elif status == 413:
        code = "body-too-large"
        limit = request.route_handler.resolve_request_max_body_size()
        detail = "The request body is too large" + (f": at most {limit} bytes" if limit else "")
    elif status == 400 and isinstance(exc.__cause__, SerializationException):
        code = "malformed-json"
        detail = f"The body is not valid JSON: {detail.removeprefix('JSON is malformed: ')}"
    return problem_response(request, status, detail, code=code, headers=headers)


def _bad_encoding(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, RecursionError):
        detail = "The body nests too deeply to be a request this API takes"
    else:
        detail = "The body is not valid UTF-8 JSON"
    return problem_response(request, 400, detail, code="malformed-json")


def _unstorable_text(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A last line of defence: inputs are checked at the edge, but text PostgreSQL cannot store (NUL)
    that slipped through is the client's error, not ours."""
    return problem_response(
        request, 422, "The request holds text with a character that cannot be stored (NUL)", code="invalid-text"
    )


def _out_of_range(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A last line of defence like :func:`_unstorable_text`: inputs are bounded at the edge
    (:mod:`kartka.bounds`), but a number or time no column can hold that slipped through is the client's
    error. Logged without a traceback, so that the edge can be tightened."""
    logger.warning(  # the class only: the message quotes the client's value
        "out-of-range input on %s %s: %s", request.method, redact_path(request.url.path), type(exc).__name__
    )
    return problem_response(
        request, 422, "The request holds a number or time outside what this API accepts", code="out-of-range"
    )


def _data_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """asyncpg raises ``asyncpg.DataError`` itself, not a subclass, for an argument it cannot encode (an
    integer past int64, a time no UTC ``datetime`` can hold), before the query reaches the server: the
    client's value, like :func:`_out_of_range`. PostgreSQL's own data errors come as its subclasses (those
    of a value out of range are mapped above); the rest are our SQL's, and stay 500s."""
    if type(exc) is asyncpg.DataError:
        return _out_of_range(request, exc)
    return _unexpected(request, exc)


def _contention(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    logger.warning("lock contention on %s %s: %r", request.method, redact_path(request.url.path), exc)
    return problem_response(
        request,
        503,
        "Another request on the same account got in the way; nothing was written, retry",
        code="retry",
        headers={"Retry-After": "1"},
    )


def _unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    logger.warning("database unavailable on %s %s: %r", request.method, redact_path(request.url.path), exc)
    return problem_response(
        request,
        503,
        "The service cannot reach its database right now; retry in a few seconds",
        code="database-unavailable",
        headers={"Retry-After": "5"},
    )


def database_away(exc: BaseException) -> bool:
    """Whether ``exc`` comes down to the database being unreachable (:func:`kartka.db.unreachable`: a
    connection error or a session the server ended, by SQLSTATE; a lost or closed connection; a deadline).

    The cause may sit inside an ``ExceptionGroup`` (Litestar gathers the errors of dependency cleanup
    into one: a lost connection fails the handler, then fails the rollback) or behind the error it
    caused (asyncpg's "the underlying connection is closed" is raised from the lost connection).
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if unreachable(current):
            return True
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:  # not __context__: a bug while handling a database error is a bug
            todo.append(current.__cause__)
    return False


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if database_away(exc):
        return _unavailable(request, exc)
    logger.exception("unhandled error on %s %s", request.method, redact_path(request.url.path), exc_info=exc)
    return problem_response(request, 500, "Something went wrong on our side; it has been logged")


EXCEPTION_HANDLERS: Final[ExceptionHandlersMap] = {
    DomainError: _domain_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    UnicodeDecodeError: _bad_encoding,
    RecursionError: _bad_encoding,
    asyncpg.CharacterNotInRepertoireError: _unstorable_text,
    asyncpg.DeadlockDetectedError: _contention,
    asyncpg.SerializationError: _contention,
    asyncpg.UntranslatableCharacterError: _unstorable_text,
    asyncpg.DataError: _data_error,
    asyncpg.NumericValueOutOfRangeError: _out_of_range,
    asyncpg.DatetimeFieldOverflowError: _out_of_range,
    Exception: _unexpected,
}

"""The one place errors become HTTP responses: RFC 9457 ``application/problem+json``.

Every failure a client can cause (domain errors, validation, malformed JSON, 404, 405, 413, bad keys)
comes out as a problem with a ``title`` per kind, a ``detail`` a person can act on and, for
validation, ``errors`` naming each field and what is wrong with it. Unexpected exceptions are logged
with their traceback and answered with a bare 500 that leaks nothing.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap

from kartka.errors import DomainError, RateLimited

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
}

_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details; ``code`` is a stable slug clients may branch on."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"
    instance: str | None = None
    code: str | None = None
    errors: list[FieldError] | None = None
    extra: dict[str, Any] | None = None


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems a handler may answer with."""
    return {
        status: ResponseSpec(data_container=Problem, media_type=PROBLEM_JSON, description=HTTPStatus(status).phrase)
        for status in statuses
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
) -> Response[Problem]:
    problem = Problem(
        type=f"/problems/{code}" if code else "about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
        code=code,
        errors=errors,
        extra=extra or None,
    )
    return Response(problem, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    status = _KIND_STATUS.get(exc.kind, 400)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="kartka"'
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    errors = [FieldError(exc.field, exc.message)] if exc.field and status == 422 else None
    return problem_response(
        request, status, exc.message, code=exc.code, errors=errors, extra=exc.extra, headers=headers
    )


def _field_of(item: dict[str, Any]) -> str:
    """The dotted path of the field at fault: msgspec names unknown and missing fields in its message,
    and the path of the object that holds them in the key."""
    key = str(item.get("key") or "").removeprefix("$.")
    base = "" if key in ("", "data") else key
    named = _NAMED_FIELD.search(str(item.get("message") or ""))
    if named:
        return f"{base}.{named.group(1)}" if base else named.group(1)
    return base or "body"


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
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
        errors.append(FieldError("body", exc.detail))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(request, 422, f"The request is invalid: {detail}", code="validation-failed", errors=errors)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    if status >= 500:
        return _unexpected(request, exc)
    detail = exc.detail or HTTPStatus(status).phrase
    headers = dict(exc.headers or {})
    code: str | None = None
    if status == 404:
        detail = f"There is no {request.method} {request.url.path}; see /schema for the API"
    elif status == 405:
        allowed = headers.get("allow") or headers.get("Allow") or ""
        detail = f"{request.method} is not allowed on {request.url.path}" + (f"; allowed: {allowed}" if allowed else "")
    elif status == 413:
        detail = "The request body is too large"
    elif status == 400 and isinstance(exc.__cause__, SerializationException):
        code = "malformed-json"
        detail = f"The body is not valid JSON: {detail.removeprefix('JSON is malformed: ')}"
    return problem_response(request, status, detail, code=code, headers=headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, "Something went wrong on our side; it has been logged")


EXCEPTION_HANDLERS: Final[ExceptionHandlersMap] = {
    DomainError: _domain_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}

"""Domain errors. Domain code raises these; ``api.errors`` is the one place that maps them to HTTP.

Each kind says what went wrong in words a person can act on; ``code`` is a stable slug clients may
branch on, ``field`` names the input at fault when there is one, ``extra`` carries structured details.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    kind: ClassVar[str] = "invalid"
    code: ClassVar[str] = "domain-error"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra


class InvalidInput(DomainError):
    """The request is well-formed but its content cannot be accepted."""

    kind = "invalid"
    code = "invalid-input"


class NotFound(DomainError):
    kind = "not-found"
    code = "not-found"


class Conflict(DomainError):
    """The request clashes with the current state (a blocked card, a reused idempotency key, ...)."""

    kind = "conflict"
    code = "conflict"


class Unauthenticated(DomainError):
    """No credential, or not a valid one. ``challenge`` is the ``WWW-Authenticate`` value: how to
    authenticate where this was refused (RFC 9110 requires one with every 401)."""

    kind = "unauthenticated"
    code = "unauthenticated"
    challenge: str = 'Bearer realm="kartka"'

    def __init__(self, message: str, *, challenge: str | None = None, field: str | None = None, **extra: Any) -> None:
        super().__init__(message, field=field, **extra)
        if challenge is not None:
            self.challenge = challenge


class Forbidden(DomainError):
    kind = "forbidden"
    code = "forbidden"


class RateLimited(DomainError):
    kind = "rate-limited"
    code = "rate-limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnsupportedMediaType(DomainError):
    kind = "unsupported-media-type"
    code = "unsupported-media-type"


class Unavailable(DomainError):
    """Something the request needs outside this service is not answering; worth retrying later."""

    kind = "unavailable"
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

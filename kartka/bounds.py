"""Ranges for the numbers and times that come from outside, so that a value no column or clock can hold
is the client's 4xx at the edge, not a 500 from the driver or from date arithmetic.

Integers: every ``int`` a request carries is bounded by its type (``msgspec.Meta`` on body fields,
``PathParameter``/``QueryParameter`` on the others), never wider than the ``bigint`` it lands in.
Times: RFC 3339 with an offset, between :data:`EARLIEST` and :data:`LATEST` — Python's ``datetime``
stops at years 1 and 9999, so a time at either edge overflows as soon as it is moved to UTC or has a
day added. The protocol values (PassKit update tags, HTTP dates) have parsers here that answer
``None`` for anything they cannot hold, as those protocols want unknown values ignored.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, date, datetime
from typing import Annotated, Final

import msgspec

from kartka.errors import InvalidInput

INT64_MAX: Final = 2**63 - 1
#: A ``bigserial`` id in a path or body.
BigId = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]
#: Money in minor units from a client (a segment's spend bound): far beyond any real sum, within bigint.
MoneyBound = Annotated[int, msgspec.Meta(ge=0, le=10**15)]

EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)
#: A client's time: an offset is required (a bare local time means nothing to a server).
Instant = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 with an offset, between 1900 and 2200"),
]


def check_instant(value: datetime | None, field: str) -> None:
    """Raise ``ValueError`` (a 422 from a Struct's ``__post_init__``) for a time outside the range."""
    if value is None:
        return
    try:
        inside = EARLIEST <= value.astimezone(UTC) < LATEST
    except (OverflowError, ValueError):  # year 1 or 9999 with an offset: not even UTC can hold it
        inside = False
    if not inside:
        raise ValueError(f"{field}: must be between {EARLIEST.year} and {LATEST.year}")


def parse_day(text: str) -> date | None:
    """A calendar day as ``YYYY-MM-DD`` between 1900 and 2200 (a day past them overflows the arithmetic
    around it: the next midnight, a time zone), else None."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None
    return day if EARLIEST.date() <= day < LATEST.date() else None


def check_day(day: date, field: str) -> None:
    """Raise ``InvalidInput`` for a day outside 1900–2200."""
    if not EARLIEST.date() <= day < LATEST.date():
        raise InvalidInput(f"`{field}` must be between {EARLIEST.year} and {LATEST.year}", field=field)


def parse_unix_seconds(text: str | None) -> datetime | None:
    """A whole number of Unix seconds (an update tag we gave out) as a UTC time; None for anything else."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 20:
        return None
    seconds = int(text)
    return datetime.fromtimestamp(seconds, UTC) if seconds < LATEST.timestamp() else None


def parse_http_date(text: str | None) -> datetime | None:
    """An HTTP-date (``If-Modified-Since``) in UTC; None for one that is invalid or out of range, which
    RFC 9110 says to ignore."""
    if not text or len(text) > 64:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return moment if EARLIEST <= moment < LATEST else None

"""Conditional GETs (RFC 9110 §13): the one check every endpoint that sends an ``ETag`` uses.

Caches and browsers revalidate with ``If-None-Match``, which may name several entity tags (a cache
holding several variants), mark them weak (``W/"…"``, as proxies do after recompressing), or be ``*``.
For GET and HEAD the comparison is weak (§13.1.2): ``W/"x"`` matches ``"x"`` and the other way round.
"""

from __future__ import annotations

import re
from typing import Any, Final

from litestar import Request

#: One member of the list (an entity tag, weak or strong, or ``*``; empty members are allowed);
#: text that matches no member makes the field malformed.
_MEMBER: Final = re.compile(r'[ \t]*(?:(\*)|(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|$)')


def _opaque(etag: str) -> str:
    """The quoted part of an entity tag, which weak comparison compares."""
    return etag.removeprefix("W/").strip('"')


def not_modified(request: Request[Any, Any, Any], etag: str) -> bool:
    """Whether the client's ``If-None-Match`` already names ``etag``, so the answer is 304 Not Modified.

    Every field line counts (a list may be split over several). A malformed field is ignored, as
    RFC 9110 lets a server do, and the full representation is sent.
    """
    opaque = _opaque(etag)
    for value in request.headers.getall("if-none-match", []):
        position = 0
        members: list[re.Match[str]] = []
        while position < len(value):
            member = _MEMBER.match(value, position)
            if member is None or member.end() == position:
                break
            members.append(member)
            position = member.end()
        else:
            if any(m.group(1) == "*" or m.group(2) == opaque for m in members):
                return True
    return False

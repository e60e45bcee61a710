"""Text on its way into a log line: one helper, so that nothing a client sends can forge a log line,
recolour a terminal or reorder what a reader sees. The log formatters (:mod:`kartka.logs`) put every
record's message, traceback and extra fields through it, whoever logged them and however the client's
text got there (an argument, an exception's message); call sites need not escape.

Control characters (newlines, ANSI escapes, NUL), format characters (right-to-left overrides,
zero-width joiners, the BOM), separators other than the plain space, surrogates and unassigned code
points are written as Python escapes (``\\x1b``, ``\\u202e``); a backslash is doubled so an escape in
the log always means one was made. Letters of every script stay as they are.
"""

from __future__ import annotations

from typing import Final

#: Beyond this a client's text is cut (with "…"): a log line is not a place for a whole body.
MAX_LENGTH: Final = 500


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def clip(text: str, limit: int = MAX_LENGTH) -> str:
    """At most ``limit`` characters of ``text``, and "…" when there were more."""
    return text[:limit] + "…" if len(text) > limit else text


def log_text(text: str, limit: int | None = MAX_LENGTH) -> str:
    """``text`` as a log line may carry it: unsafe characters escaped, at most ``limit`` of them kept
    (``None``: all of them)."""
    if limit is not None:
        text = clip(text, limit)
    if text.isprintable() and "\\" not in text:  # the usual case, without a loop
        return text
    return "".join(char if char.isprintable() and char != "\\" else _escape(char) for char in text)

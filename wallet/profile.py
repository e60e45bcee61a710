"""Profile fields people type: names and e-mail addresses, cleaned the same way on every path."""

from __future__ import annotations

import re
import unicodedata

from kartka.errors import InvalidInput

MAX_NAME = 200
MAX_EMAIL = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s.]{2,}$")
_SPACES = re.compile(r"\s+")


def clean_name(name: str | None, *, field: str = "name") -> str | None:
    if name is None:
        return None
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", name)).strip()
    if not text:
        return None
    if len(text) > MAX_NAME:
        raise InvalidInput(f"a name has at most {MAX_NAME} characters", field=field)
    if has_control_characters(text):
        raise InvalidInput("a name cannot contain control characters", field=field)
    return text


def has_control_characters(text: str) -> bool:
    """NUL and other control characters: PostgreSQL refuses NUL in text, people never mean them."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def clean_email(email: str | None, *, field: str = "email") -> str | None:
    if email is None:
        return None
    text = email.strip()
    if not text:
        return None
    if len(text) > MAX_EMAIL or not _EMAIL.match(text) or has_control_characters(text):
        raise InvalidInput(f"{text!r} is not an e-mail address", field=field)
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"

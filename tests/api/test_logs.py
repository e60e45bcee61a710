"""What the logs may say: paths that carry a secret are redacted before anything writes them, and
text a client sends is escaped so that it cannot forge lines, recolour a terminal or reorder what a
reader sees."""

from __future__ import annotations

import logging

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.request import RedactSecrets, redact_path
from kartka.logtext import log_text

#: An ANSI colour escape, a NUL, a right-to-left override, a forged second line, a zero-width joiner.
NASTY = "\x1b[31mred\x1b[0m \x00 \u202egnp.exe\u202c\nINFO forged line \u200d\\x1b"


def test_tokens_in_paths_are_redacted() -> None:
    token = "0123456789abcdef0123456789abcdef"
    assert redact_path(f"/c/{token}") == "/c/…"
    assert redact_path(f"/c/{token}/pass.pkpass") == "/c/…/pass.pkpass"
    assert redact_path(f"/u/{token}?x=1") == "/u/…?x=1"
    assert redact_path("/v1/pos/identify") == "/v1/pos/identify"
    assert redact_path("/passkit/v1/log") == "/passkit/v1/log"


def test_the_access_log_line_is_redacted() -> None:
    # uvicorn's access logger: '%s - "%s %s HTTP/%s" %d' with (client, method, path, version, status)
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/c/0123456789abcdef0123456789abcdef", "1.1", 200),
        None,
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /c/… HTTP/1.1" 200'


def access_line(path: str) -> str:
    # uvicorn's access logger: '%s - "%s %s HTTP/%s" %d' with (client, method, path, version, status)
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", path, "1.1", 200),
        None,
    )
    assert RedactSecrets().filter(record)
    return record.getMessage()


def test_client_text_is_escaped() -> None:
    escaped = log_text(NASTY)
    assert escaped == ("\\x1b[31mred\\x1b[0m \\x00 \\u202egnp.exe\\u202c\\x0aINFO forged line \\u200d\\\\x1b")
    assert escaped.isprintable()
    assert log_text("Анна, 5 × milk") == "Анна, 5 × milk"  # letters of every script stay
    assert log_text("x" * 600).endswith("x…")
    assert len(log_text("x" * 600)) == 501


def test_the_access_log_escapes_paths_and_hides_device_ids_and_push_tokens() -> None:
    device = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    listing = access_line(f"/passkit/v1/devices/{device}/registrations/pass.by.kartka?passesUpdatedSince=1")
    assert device not in listing
    assert "/passkit/v1/devices/…/registrations/pass.by.kartka?passesUpdatedSince=1" in listing
    push = "ab" * 32
    assert push not in access_line(f"/v1/me/devices/{push}")
    line = access_line("/v1/pos/\x1b[2J\u202eidentify\nforged")
    assert line.isprintable()
    assert "\\x1b[2J\\u202eidentify\\x0aforged" in line


async def test_device_logs_are_escaped(client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kartka.passkit"):
        response = await client.post("/passkit/v1/log", json={"logs": [NASTY, "plain"]})
    assert response.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "kartka.passkit"]
    assert len(lines) == 2
    assert all(line.isprintable() for line in lines)
    assert "\\x1b[31mred" in lines[0]
    assert "\\x00" in lines[0]
    assert "\\u202e" in lines[0]
    assert lines[1] == "device log: plain"

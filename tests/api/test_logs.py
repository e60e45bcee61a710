"""What the logs may say: paths that carry a secret are redacted before anything writes them."""

from __future__ import annotations

import logging

from api.request import RedactSecrets, redact_path


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

"""What the logs may say: paths that carry a secret are redacted before anything writes them, and
text a client sends is escaped by the log formatters, so that it cannot forge lines, recolour a terminal
or reorder what a reader sees, however it reached the record (an argument, a path, an exception)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from litestar import Litestar, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from api.errors import EXCEPTION_HANDLERS
from api.request import RedactSecrets, redact_path
from boot.web import create_app
from kartka.logs import LogFormat, formatter
from kartka.logtext import log_text
from kartka.settings import Settings
from tests.served import served_here

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
    return formatter(LogFormat.TEXT).format(record)


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
    text = formatter(LogFormat.TEXT)
    lines = [text.format(r) for r in caplog.records if r.name == "kartka.passkit"]
    assert len(lines) == 2
    assert all(line.isprintable() for line in lines)
    assert "\\x1b[31mred" in lines[0]
    assert "\\x00" in lines[0]
    assert "\\u202e" in lines[0]
    assert lines[1].endswith("WARNING kartka.passkit: device log: plain")


@contextlib.contextmanager
def written(fmt: LogFormat, logger: str = "") -> Iterator[io.StringIO]:
    """What the real formatter of ``fmt`` writes of ``logger``'s records while the block runs."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(fmt))
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield out
    finally:
        target.removeHandler(handler)


def at_the_margin(text: str) -> list[str]:
    """The lines of a text log that start a record (the rest, a traceback's, are indented)."""
    return [line for line in text.splitlines() if line and not line[0].isspace()]


async def test_client_text_in_an_exception_is_escaped_in_the_message_and_the_traceback(settings: Settings) -> None:
    """Escaping used to be done where a line was logged, so text that reached a log inside an exception
    (an unexpected error's traceback, a warning quoting ``%r``) was written verbatim. The formatters
    escape now, whoever logged. Driven through the app's own error handling: an unexpected error whose
    message (and whose cause's) quotes what the client sent."""

    @post("/probe", status_code=200)
    async def probe(data: JSONBody[dict[str, str]]) -> None:
        try:
            raise KeyError(data["sku"])
        except KeyError as exc:
            raise RuntimeError(f"no such sku: {data['sku']}") from exc

    app = Litestar([probe], exception_handlers=EXCEPTION_HANDLERS, logging_config=None)
    with written(LogFormat.TEXT, "api.errors") as text, written(LogFormat.JSON, "api.errors") as as_json:
        async with AsyncTestClient(app) as client:
            response = await client.post("/probe", json={"sku": NASTY})
    assert response.status_code == 500

    written_text = text.getvalue()
    lines = written_text.splitlines()
    assert "  RuntimeError: no such sku: \\x1b[31mred\\x1b[0m \\x00 \\u202egnp.exe\\u202c" in lines
    assert "  INFO forged line \\u200d\\\\x1b" in lines  # a traceback keeps its line breaks, indented
    assert any(line.startswith("  KeyError: '\\\\x1b[31mred") for line in lines)  # the cause's, as repr'd
    assert all(line.isprintable() for line in lines)
    margin = at_the_margin(written_text)
    assert len(margin) == 1, margin  # one record: nothing in its traceback can pass for another
    assert margin[0].endswith("ERROR api.errors: unhandled error on POST /probe")

    records = [json.loads(line) for line in as_json.getvalue().splitlines()]
    assert len(records) == 1
    assert "\u202e" not in records[0]["exc_info"]  # JSON escapes control characters; bidi overrides, we do
    assert "\x1b" not in records[0]["exc_info"]
    assert "no such sku: \\x1b[31mred\\x1b[0m \\x00 \\u202egnp.exe\\u202c\nINFO forged" in records[0]["exc_info"]


async def test_a_warning_quoting_client_text_and_extra_fields_are_escaped_in_json() -> None:
    with written(LogFormat.JSON, "kartka.probe") as out:
        logging.getLogger("kartka.probe").warning("got %r", NASTY, extra={"who": "\u202eadmin"})
    record = json.loads(out.getvalue())
    assert record["message"] == "got " + log_text(repr(NASTY), limit=None)
    assert "\u202e" not in record["message"]
    assert record["who"] == "\\u202eadmin"
    with written(LogFormat.TEXT, "kartka.probe") as out:
        logging.getLogger("kartka.probe").warning("%s", "line one\nINFO forged\u202e")
    assert out.getvalue().endswith("WARNING kartka.probe: line one\\x0aINFO forged\\u202e\n")


def served(app: Litestar) -> contextlib.AbstractAsyncContextManager[str]:
    """``app`` served by uvicorn as ``kartka serve`` runs it: no logging setup of uvicorn's own, so its
    access log goes through the app's filter and ours."""
    return served_here(app, log_config=None, log_level="info")


async def test_the_served_access_log_hides_device_ids_and_escapes_paths(settings: Settings) -> None:
    """Through a served request, not only the filter alone: a phone asking for the passes of its device
    id (unauthenticated: the id is all it takes), and a path with an escape, a bidi override and a line
    break percent-encoded in it (uvicorn logs the raw path; its parser refuses them unencoded)."""
    device = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    app = create_app(settings)
    with written(LogFormat.TEXT, "uvicorn.access") as out:
        async with served(app) as base, httpx.AsyncClient(base_url=base) as http:
            listing = await http.get(
                f"/passkit/v1/devices/{device}/registrations/{settings.pass_type_id}",
                params={"passesUpdatedSince": "1"},
            )
            assert listing.status_code == 204, listing.text
            assert (await http.get("/v1/pos/%1b[2J%E2%80%AEidentify%0Aforged")).status_code == 404
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert device not in lines[0]
    assert f"/passkit/v1/devices/…/registrations/{settings.pass_type_id}?passesUpdatedSince=1" in lines[0]
    assert '"GET /v1/pos/%1b[2J%E2%80%AEidentify%0Aforged HTTP/1.1" 404' in lines[1]  # as sent (uvicorn's raw path)
    assert all(line.isprintable() for line in lines)

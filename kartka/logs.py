"""One log format for every process: the CLI, the worker, the API and uvicorn's own loggers.

Text by default (``time LEVEL logger: message``); JSON lines with ``KARTKA_LOG_FORMAT=json`` for a log
collector (python-json-logger: ``time``, ``level``, ``logger``, ``message``, and ``exc_info`` with the
traceback). Every record goes through the root logger's one handler: uvicorn is started without a
logging configuration of its own and its loggers propagate here, as do Litestar's and the libraries'.
In the API the handler writes through a queue, so a slow terminal or pipe never blocks the event loop.

Both formats escape what they write with :func:`kartka.logtext.log_text`, so client text that reached a
record by any road — an argument, a path in uvicorn's access line, an exception's message quoted by
``%r`` or in a traceback — cannot forge a line, recolour a terminal or reorder what a reader sees: the
message is one line, control characters (the line break among them), ANSI escapes, NULs and bidi
overrides written as Python escapes. A traceback keeps its line breaks, everything else on each line
escaped, and in the text format each of its lines is indented, so only a record's first line starts at
the margin and an exception message cannot pass for a record of its own. In JSON the encoder escapes
control characters anyway; the message, the traceback and any extra field get the same escaping, so
bidi overrides and the like are written as escapes there too.
"""

from __future__ import annotations

import atexit
import copy
import enum
import logging
import logging.handlers
import queue
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from kartka.logtext import log_text

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON_FIELDS = "{asctime}{levelname}{name}{message}"
_JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
#: Loggers that bring handlers of their own; theirs are removed so that each record is written once.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar")


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


#: Before each line of a traceback in the text format: a record's own first line alone starts at the margin.
_INDENT = "  "
#: Record fields that hold a traceback or a stack (their lines are kept).
_BLOCKS = frozenset({"exc_info", "stack_info"})


def _block(text: str, indent: str = "") -> str:
    """A traceback or stack as a log may carry it: its line breaks kept, the rest of each line escaped."""
    return "\n".join(indent + log_text(line, limit=None) for line in text.split("\n"))


class _TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, with the message escaped into one line and tracebacks escaped and indented."""

    def format(self, record: logging.LogRecord) -> str:
        safe = copy.copy(record)  # other handlers (a test's capture) get the record as it was
        safe.msg, safe.args = log_text(record.getMessage(), limit=None), None
        text = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        safe.exc_info, safe.exc_text = None, _block(text, _INDENT) if text else None
        safe.stack_info = _block(record.stack_info, _INDENT) if record.stack_info else None
        return super().format(safe)


class _JsonFormatter(JsonFormatter):
    """python-json-logger's, with every string it writes escaped (tracebacks keeping their lines)."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {
            key: (_block(value) if key in _BLOCKS else log_text(value, limit=None)) if isinstance(value, str) else value
            for key, value in super().process_log_record(log_data).items()
        }


def formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt is LogFormat.JSON:
        return _JsonFormatter(_JSON_FIELDS, style="{", rename_fields=_JSON_NAMES, json_ensure_ascii=False)
    return _TextFormatter(TEXT_FORMAT)


class _Handoff(logging.handlers.QueueHandler):
    """Hands records to the writing thread with their message rendered now (arguments may change later)
    but their traceback untouched, so that the JSON format still puts it in ``exc_info``. (The stock
    QueueHandler renders the whole record, traceback into the message, in the default format.)"""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        handed = copy.copy(record)
        handed.msg, handed.args = record.getMessage(), None
        return handed


_listener: logging.handlers.QueueListener | None = None


def _stop_listener() -> None:
    """Write out what is queued and stop the writing thread (at exit, or before a new setup)."""
    global _listener  # noqa: PLW0603 - one listener per process
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(_stop_listener)


def configure(level: str, fmt: LogFormat, *, background: bool = False) -> None:
    """Send every log record to standard error in ``fmt`` from ``level`` up; ``background`` writes from
    a thread (for the API's event loop). Safe to call again: the previous setup is replaced."""
    global _listener  # noqa: PLW0603 - one listener per process, replaced on reconfiguration
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter(fmt))
    handler: logging.Handler = stream
    _stop_listener()
    if background:
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handler = _Handoff(records)
        _listener = logging.handlers.QueueListener(records, stream, respect_handler_level=True)
        _listener.start()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True

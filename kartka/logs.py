"""One log format for every process: the CLI, the worker, the API and uvicorn's own loggers.

Text by default (``time LEVEL logger: message``); JSON lines with ``KARTKA_LOG_FORMAT=json`` for a log
collector (python-json-logger: ``time``, ``level``, ``logger``, ``message``, and ``exc_info`` with the
traceback). Every record goes through the root logger's one handler: uvicorn is started without a
logging configuration of its own and its loggers propagate here, as do Litestar's and the libraries'.
In the API the handler writes through a queue, so a slow terminal or pipe never blocks the event loop.
"""

from __future__ import annotations

import atexit
import copy
import enum
import logging
import logging.handlers
import queue
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON_FIELDS = "{asctime}{levelname}{name}{message}"
_JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
#: Loggers that bring handlers of their own; theirs are removed so that each record is written once.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar")


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


def formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt is LogFormat.JSON:
        return JsonFormatter(_JSON_FIELDS, style="{", rename_fields=_JSON_NAMES, json_ensure_ascii=False)
    return logging.Formatter(TEXT_FORMAT)


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

"""One logging setup for every process: structlog events and stdlib records alike.

aiohttp, aiokafka and asyncpg log through the standard library; structlog's
``ProcessorFormatter`` runs the same processors over those records, so every line a process
writes has the same JSON shape (``timestamp``, ``level``, ``logger``, ``service``, ``event``,
bound context such as ``request_id``, then fields). Values under secret-looking keys, and
passwords inside URLs, are replaced before anything is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

# Keys whose values are credentials or one-time protocol values. Substrings match anywhere in
# the lower-cased key (``registration_token``, ``x_authorization``); exact names cover short
# words that would otherwise match innocent keys (``state`` inside ``statement``).
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "private_key",
    "jwt",
    "assertion",
)
_SECRET_KEYS = frozenset({"state", "nonce", "dsn", "database_url", "kek", "key_encryption_keys"})
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[a-z0-9._~+/=-]+")


class _ClientProtocolErrors(logging.Filter):
    """aiohttp logs a request it cannot parse (a request line over 8 KiB, a malformed header)
    with ``logger.exception``: an error-level line and a traceback that any client can produce
    at will. It is the client's error, already answered with a 400, so it is kept as a warning
    with its reason and without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "aiohttp.server" and isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "bad_http_request: %s", (type(exc).__name__,)
            record.exc_info, record.exc_text = None, None
        return True


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SECRET_KEYS or any(part in lowered for part in _SECRET_KEY_PARTS)


def scrub_text(text: str) -> str:
    """Remove URL passwords and bearer tokens from free text."""
    if "@" not in text and "earer" not in text:  # cheap pre-check: most lines have neither
        return text
    text = _URL_PASSWORD.sub(r"\g<scheme>\g<user>:" + REDACTED + "@", text)
    return _BEARER.sub(r"\1 " + REDACTED, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _is_secret_key(k) else _scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: never let a secret reach a log line."""
    for key in list(event_dict):
        if key in ("event", "level", "logger", "timestamp", "service"):
            if key == "event" and isinstance(event_dict[key], str):
                event_dict[key] = scrub_text(event_dict[key])
            continue
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _add_service(service: str) -> Processor:
    def processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def _render_exception_text(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Exceptions are rendered to text and then scrubbed: a DSN or token inside an exception
    # message must not escape through a traceback.
    exc = event_dict.get("exception")
    if isinstance(exc, str):
        event_dict["exception"] = scrub_text(exc)
    return event_dict


def configure_logging(
    *,
    service: str,
    level: str = "INFO",
    fmt: str = "json",
    stream: TextIO | None = None,
) -> None:
    """Route structlog and the stdlib root logger through one JSON (or console) renderer.

    Safe to call more than once (tests do); the last call wins.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        final: list[Processor] = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ]
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _render_exception_text,
            renderer,
        ]
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(_ClientProtocolErrors())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's own access log is replaced by the structured request log of shared.web.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiokafka is chatty at INFO about every (re)connection; its warnings still come through.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))


def bind_context(**values: Any) -> None:
    """Bind values (such as ``request_id``) to every log line of the current context."""
    structlog.contextvars.bind_contextvars(**values)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger

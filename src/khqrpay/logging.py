"""Structured logging (structlog) with secrets redacted before anything is rendered.

Call `configure_logging()` once at start-up; modules take a logger with `get_logger(__name__)`.
Redaction is defence in depth: code must not log secrets in the first place, but if a token slips
into an event (a key named like a secret, a JWT or a `Bearer` header inside a message, or a value
registered with `register_secret`), it is replaced before it reaches the output.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

REDACTED = "**redacted**"

# Key names whose values are secrets whatever they look like.
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|authorization|api[_-]?key|cookie)", re.I)
# A JWT (three base64url parts, header starting `eyJ`) or an HTTP bearer credential.
_SECRET_TEXT = re.compile(
    r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|(?<=Bearer )[^\s'\",]+", re.I
)
# Shorter strings are too likely to occur by chance to be replaced wherever they appear.
_MIN_REGISTERED_LENGTH = 8

_registered_secrets: set[str] = set()
_registered_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Have `value` redacted wherever it appears in a log event from now on."""
    if len(value) >= _MIN_REGISTERED_LENGTH:
        with _registered_lock:
            _registered_secrets.add(value)


def _redact_text(text: str, secrets: frozenset[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _SECRET_TEXT.sub(REDACTED, text)


def _redact_value(value: object, secrets: frozenset[str]) -> object:
    if isinstance(value, str):
        return _redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and _SECRET_KEY.search(key)
            else _redact_value(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item, secrets) for item in value]
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """structlog processor: replace secret values (by key name, by shape, or registered)."""
    with _registered_lock:
        secrets = frozenset(_registered_secrets)
    redacted = _redact_value(event, secrets)
    assert isinstance(redacted, MutableMapping)
    return dict(redacted)


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured: test
    runners and CLI runners swap it and close their stand-ins afterwards."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: str = "INFO", *, json_output: bool = False, stream: TextIO | None = None
) -> None:
    """Configure structlog for the whole process; safe to call again (tests, CLI options)."""
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            # Last before rendering, so formatted tracebacks are redacted too.
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # structlog only writes and flushes: the stand-in is a TextIO for that purpose.
        logger_factory=structlog.WriteLoggerFactory(
            file=stream or cast("TextIO", _CurrentStderr())
        ),
        # Not cached, so a later configure_logging() also reaches loggers taken at import time.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **initial_values: Any) -> FilteringBoundLogger:
    """A logger whose events carry `logger_name=name`; configures defaults if nobody did."""
    if not structlog.is_configured():
        configure_logging()
    # Not `logger=`: structlog.get_logger reserves that keyword.
    logger: FilteringBoundLogger = structlog.get_logger(logger_name=name, **initial_values)
    return logger

"""Structured logs of the service: one JSON object per line on stderr.

Every string in an event (keys, values, tracebacks) passes through ``secrets.redact`` before
it is rendered, and the rendered line once more: JSON escaping would otherwise hide a secret
holding a quote or a backslash from a search of the finished line. Log records of the
libraries underneath (uvicorn) are rendered the same way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from lockstep.secret import redact

Log = structlog.typing.FilteringBoundLogger


def redacted(value: object) -> object:
    """``value`` as JSON-ready data with every known secret masked."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(redacted(str(k))): redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [redacted(v) for v in items]
    if isinstance(value, datetime | date):
        return value.isoformat()
    # Anything else renders through its str(); a Secret renders as ***.
    return redact(str(value))


def _redact_event(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return {str(redacted(str(k))): redacted(v) for k, v in event.items()}


def _redact_line(_: WrappedLogger, __: str, line: Any) -> Any:
    return redact(line) if isinstance(line, str) else line


def _named(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Records of the libraries underneath get the keys every line has."""
    event.setdefault("target", None)
    event.setdefault("op", event.get("logger"))
    event.setdefault("status", event.get("level"))
    return event


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
_RENDER: list[Processor] = [
    structlog.processors.format_exc_info,
    _redact_event,
    structlog.processors.JSONRenderer(sort_keys=True),
    _redact_line,
]


def configure(stream: TextIO = sys.stderr, level: int = logging.INFO) -> None:
    structlog.configure(
        processors=[*_SHARED, *_RENDER],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name, _named],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_RENDER],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(**context: Any) -> Log:
    log: Log = structlog.get_logger(**context)
    return log

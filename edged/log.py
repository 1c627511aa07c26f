"""structlog setup: JSON lines when not on a TTY (systemd's journal), readable console on a TTY."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")


def configure(level: str | None = None, stream: TextIO | None = None) -> None:
    """Configure once at start-up; `EDGED_LOG_LEVEL` overrides the default of info."""
    stream = stream or sys.stderr
    name = (level or os.environ.get("EDGED_LOG_LEVEL") or "info").lower()
    if name not in LEVELS:
        name = "info"
    numeric = logging.getLevelNamesMapping()[name.upper()]
    as_json = not stream.isatty() or os.environ.get("EDGED_LOG_FORMAT") == "json"
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        processors += [
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the standard library (paho, aiosqlite) only speak up on trouble.
    # force: python-escpos calls basicConfig on import, which would silence ours.
    logging.basicConfig(
        level=logging.WARNING, stream=stream, format="%(name)s: %(message)s", force=True
    )

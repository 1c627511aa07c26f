"""structlog setup: JSON lines when not on a TTY (systemd's journal), readable console on a TTY."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import ExceptionRenderer, ExceptionTransformer, ExcInfo

from edged.carddata import redact

LEVELS = ("debug", "info", "warning", "error", "critical")
# Tracebacks carry no local variables (a codec's locals may hold raw card data); this debug
# switch, for a technician reproducing a bug on a bench, turns them on.
LOCALS_ENV = "EDGED_LOG_LOCALS"


def _exception_dicts(show_locals: bool) -> ExceptionTransformer:
    """structlog's dict tracebacks, without locals and with digit runs in messages masked."""
    transform = ExceptionDictTransformer(show_locals=show_locals)

    def render(exc_info: ExcInfo) -> list[dict[str, object]]:
        stacks = transform(exc_info)
        for stack in stacks:
            stack["exc_value"] = redact(stack["exc_value"])
        return stacks

    return render


def _console_exceptions(show_locals: bool) -> ExceptionRenderer:
    """rich's traceback if installed (locals only on request), else the plain one."""
    if importlib.util.find_spec("rich") is not None:
        return structlog.dev.RichTracebackFormatter(show_locals=show_locals)
    return structlog.dev.plain_traceback


def configure(level: str | None = None, stream: TextIO | None = None) -> None:
    """Configure once at start-up; `EDGED_LOG_LEVEL` overrides the default of info."""
    stream = stream or sys.stderr
    name = (level or os.environ.get("EDGED_LOG_LEVEL") or "info").lower()
    if name not in LEVELS:
        name = "info"
    numeric = logging.getLevelNamesMapping()[name.upper()]
    as_json = not stream.isatty() or os.environ.get("EDGED_LOG_FORMAT") == "json"
    show_locals = os.environ.get(LOCALS_ENV) == "1"
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        processors += [
            structlog.processors.ExceptionRenderer(_exception_dicts(show_locals)),
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        processors.append(
            structlog.dev.ConsoleRenderer(exception_formatter=_console_exceptions(show_locals))
        )
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

"""structlog setup: JSON lines when not on a TTY (systemd's journal), readable console on a TTY.

Records of the standard library's loggers (asyncio, paho, aiosqlite) go through the same
renderer, so the journal holds only JSON lines, and a record repeated within
REPEAT_INTERVAL_S is dropped and counted (`suppressed` on the next one that passes): a
library in trouble cannot write a traceback storm.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import sys
import time
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
    """rich's traceback if installed (locals only on request), else the plain one; either way
    with digit runs in the exception messages masked."""
    if importlib.util.find_spec("rich") is None:
        return _plain_masked
    from rich.console import Console
    from rich.traceback import Traceback

    def render(sio: TextIO, exc_info: ExcInfo) -> None:
        # masked before rich renders: it colours each digit group apart, so the text it
        # writes could no longer be masked as one run
        trace = Traceback.extract(*exc_info, show_locals=show_locals)
        for stack in trace.stacks:
            stack.exc_value = redact(stack.exc_value)
        sio.write("\n")
        Console(file=sio, color_system="truecolor").print(Traceback(trace, show_locals=show_locals))

    return render


def _plain_masked(sio: TextIO, exc_info: ExcInfo) -> None:
    """The standard library's traceback, digit runs masked."""
    text = io.StringIO()
    structlog.dev.plain_traceback(text, exc_info)
    sio.write(redact(text.getvalue()))


# The fields that carry an exception's message or other free text, which may quote what a
# client, a device or a broker sent (`error=str(exc)`); ids, seqs and hashes have their own.
FREE_TEXT_FIELDS = frozenset({"error", "problem", "reason", "detail"})


def _mask_free_text(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Digit runs masked (carddata.redact) in FREE_TEXT_FIELDS, as in tracebacks: a card
    number in an exception's message never reaches the log."""
    for key in FREE_TEXT_FIELDS & event.keys():
        if isinstance(event[key], str):
            event[key] = redact(event[key])
    return event


REPEAT_INTERVAL_S = 10.0
_MAX_REMEMBERED = 1000  # distinct repeated records tracked at once


class RepeatFilter(logging.Filter):
    """Pass a stdlib record, then drop its repeats (same logger, level, message template)
    for REPEAT_INTERVAL_S; the next one that passes carries `suppressed`, the count dropped."""

    interval_s = REPEAT_INTERVAL_S

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.suppressed = seen[1]
        if len(self._seen) >= _MAX_REMEMBERED:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


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
    output: list[structlog.typing.Processor] = (
        [
            structlog.processors.ExceptionRenderer(_exception_dicts(show_locals)),
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
        if as_json
        else [structlog.dev.ConsoleRenderer(exception_formatter=_console_exceptions(show_locals))]
    )
    renderer: list[structlog.typing.Processor] = [_mask_free_text, *output]
    processors += renderer
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(stream, renderer)


def _route_stdlib(stream: TextIO, renderer: list[structlog.typing.Processor]) -> None:
    """Libraries that log through the standard library (asyncio, paho, aiosqlite) only speak
    up on trouble: at WARNING and above, in our format, repeats counted instead of written."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.stdlib.ExtraAdder(allow=["suppressed"]),
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    # force: python-escpos calls basicConfig on import, which would replace ours.
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)

"""structlog setup: JSON lines when not on a TTY (systemd's journal), readable console on a TTY.

Records of the standard library's loggers (asyncio, paho, aiosqlite) go through the same
renderer, so the journal holds only JSON lines, and a record repeated within
REPEAT_INTERVAL_S is dropped and counted (`suppressed` on the next one that passes): a
library in trouble cannot write a traceback storm.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")
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
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[structlog.typing.Processor] = (
        [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer(sort_keys=False)]
        if as_json
        else [structlog.dev.ConsoleRenderer()]
    )
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

"""Restart a failed component on its own, with backoff, so one fault stays local (invariant 7)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from edged.backoff import Backoff

log = structlog.get_logger(__name__)

RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a component that ran this long starts its backoff afresh


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    min_s: float = RESTART_MIN_S,
    max_s: float = RESTART_MAX_S,
) -> None:
    """Run `run()` until it returns or is cancelled; restart it after any other exception."""
    backoff = Backoff(min_s, max_s)
    while True:
        started = time.monotonic()
        try:
            await run()
        except Exception:
            if time.monotonic() - started > HEALTHY_AFTER_S:
                backoff.reset()
            delay = backoff.next_delay_s()
            log.exception("component_failed", component=name, restart_in_s=round(delay, 2))
        else:
            return
        await asyncio.sleep(delay)

"""Notice the wall clock jumping while edged runs: sales are stamped with it (created_at).

The monotonic clock never jumps; the wall clock does (a wrong manual setting, an NTP step, a
dead RTC battery corrected). Comparing their progress every few seconds tells a jump from drift.
"""

from __future__ import annotations

import asyncio
import time
from typing import NoReturn

import structlog

from edged.clock import utc_now_iso

log = structlog.get_logger(__name__)

CHECK_EVERY_S = 5.0
JUMP_S = 2.0  # more than NTP ever slews in CHECK_EVERY_S: a step, not drift


class ClockWatch:
    """Compares the wall clock's progress with the monotonic clock's between checks."""

    def __init__(self, wall: float, mono: float) -> None:
        self._wall, self._mono = wall, mono

    def check(self, wall: float, mono: float) -> float:
        """The jump since the last check in seconds (negative: back), logged if it is one."""
        jump = (wall - self._wall) - (mono - self._mono)
        self._wall, self._mono = wall, mono
        if jump < -JUMP_S:
            log.warning(
                "clock_jumped_back",
                by_s=round(-jump, 1),
                now=utc_now_iso(),
                hint="sales keep their order (seq) but are stamped in the past until the clock "
                "is right; check time sync (timedatectl) and the store's NTP server",
            )
        elif jump > JUMP_S:
            log.info("clock_jumped_forward", by_s=round(jump, 1), now=utc_now_iso())
        return jump


async def watch_clock() -> NoReturn:
    watch = ClockWatch(time.time(), time.monotonic())
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        watch.check(time.time(), time.monotonic())

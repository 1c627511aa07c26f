"""Is the daemon doing its job? Checked often; the systemd watchdog is fed only when it is.

The journal writer, the uplink and the local API each answer "what stops you making
progress right now" (None: nothing). While any of them has a problem, `WATCHDOG=1` is
withheld, so systemd restarts a daemon that stays stuck for `WatchdogSec` (invariant 10).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

import structlog

from edged.sdnotify import Notifier

log = structlog.get_logger(__name__)

CHECK_INTERVAL_S = 5.0  # without a systemd watchdog, health is still checked (for `status`)
CHECK_TIMEOUT_S = 3.0  # a check that takes longer is itself a problem

Check = Callable[[], Awaitable[str | None]]


class Health:
    """Runs the checks every interval; feeds the watchdog while none reports a problem."""

    def __init__(
        self,
        checks: dict[str, Check],
        notifier: Notifier,
        *,
        status_line: Callable[[], str],
    ) -> None:
        self._checks = checks
        self._notifier = notifier
        self._status_line = status_line
        self.interval_s = notifier.watchdog_interval_s or CHECK_INTERVAL_S
        self.problems: dict[str, str] = {}
        self.checked_at: float | None = None  # monotonic

    def snapshot(self) -> dict[str, object]:
        """For `status`: {"ok", "problems": {component: why}}."""
        return {"ok": not self.problems, "problems": dict(self.problems)}

    async def run(self) -> NoReturn:
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)

    async def check(self) -> dict[str, str]:
        """Run every check once, report changes, and feed the watchdog if all is well."""
        problems: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    problem = await check()
            except TimeoutError:
                problem = f"its health check did not answer within {CHECK_TIMEOUT_S:g} s"
            if problem is not None:
                problems[name] = problem
        self.checked_at = time.monotonic()
        if problems != self.problems:
            if problems:
                log.error("watchdog_withheld", problems=problems)
            else:
                log.info("watchdog_resumed", was=self.problems)
            self.problems = problems
            self._notifier.notify(self._status_line())
        if not problems and self._notifier.watchdog_interval_s:
            self._notifier.notify("WATCHDOG=1")
        return problems

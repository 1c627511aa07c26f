"""Bounds on what the API's clients may hold: connections, file descriptors, buffered bytes.

A till has one or two UIs; hundreds of connections or megabytes of unfinished lines are a
broken or hostile client. The bounds keep the daemon's memory and descriptors for its real
work (journal, uplink, devices), and every refusal is logged once per interval, not per event.
"""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_MAX_CLIENTS = 64
DEFAULT_MAX_BUFFERED_BYTES = 16 * 1024 * 1024  # partial lines of all clients together
# Descriptors kept for everything but the API's clients: stdio, the event loop, the journal's
# SQLite files, the uplink's socket, device ttys, the listening socket, a refused client.
FD_RESERVE = 64
REPORT_INTERVAL_S = 10.0


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("api_fd_limit_not_raised", soft=soft, hard=hard, error=str(exc))
        return soft
    return target


def effective_max_clients(wanted: int, fd_limit: int) -> int:
    """`wanted` if it fits under `fd_limit` with FD_RESERVE to spare, else as many as fit."""
    fitting = max(1, fd_limit - FD_RESERVE)
    if wanted > fitting:
        log.warning(
            "api_max_clients_lowered",
            configured=wanted,
            effective=fitting,
            fd_limit=fd_limit,
            reserve=FD_RESERVE,
            hint="raise LimitNOFILE= in the systemd unit or lower [api] max_clients",
        )
        return fitting
    return wanted


def fds_in_use() -> int:
    """Open descriptors of this process (Linux /proc; a large number elsewhere: assume full)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 1 << 20


class Tally:
    """Log an event the first time, then its count once per interval (and at close).

    Without it a flood of refused clients or malformed frames writes a line for each one.
    """

    def __init__(self, event: str, level: str = "info", **fields: Any) -> None:
        self._event = event
        self._log = getattr(log.bind(**fields), level)
        self._count = 0
        self._pending = 0
        self._last: dict[str, Any] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def count(self) -> int:
        return self._count

    def note(self, **fields: Any) -> None:
        self._count += 1
        if self._count == 1:
            self._log(self._event, **fields)
            return
        self._pending += 1
        self._last = fields
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(REPORT_INTERVAL_S, self.flush)

    def flush(self) -> None:
        """Log the count since the last line, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._log(
                self._event,
                **self._last,
                count=self._pending,
                total=self._count,
                interval_s=REPORT_INTERVAL_S,
            )
            self._pending = 0


class ByteBudget:
    """Bytes of unfinished lines held across all clients, with a fair share each.

    A client is refused only when the total is over `limit` and it holds more than its share
    (`limit / clients`): a client sending one ordinary request is never the one refused
    during a flood by others. The total stays under twice `limit`.
    """

    def __init__(self, limit: int, clients: int) -> None:
        self.limit = limit
        self.share = max(1, limit // max(1, clients))
        self.total = 0
        self.refusals = Tally("api_client_refused", "warning", reason="max_buffered_bytes")

    def change(self, before: int, after: int) -> bool:
        """Account a client's holding going from `before` to `after`; False: refuse it."""
        self.total += after - before
        return after <= self.share or self.total <= self.limit

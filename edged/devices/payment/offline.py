"""Card payments the terminal approved offline since the last end of day, for `status`.

"End of day" is the later of two moments: the last batch close edged made on the terminal
(`payment.end_of_day`, ZVT `06 50`) and the last local midnight (the terminal's own
automatic closes and Concert's are invisible to edged). The tally lives in memory; the
payment service rebuilds it from the journal's payment records at every start.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from edged.clock import utc_iso


def local_midnight_utc(now_s: float, where: dt.tzinfo) -> str:
    """The start of the day holding `now_s` in the store's zone, as the journal's UTC timestamp.

    The zone's rules for that date decide the offset (not today's), so daylight saving is right.
    """
    day = dt.datetime.fromtimestamp(now_s, where).date()
    return utc_iso(dt.datetime.combine(day, dt.time(0), tzinfo=where).timestamp())


class OfflineTally:
    """Offline-approved payments (id -> approved_at, amount) inside the current window."""

    def __init__(self, where: dt.tzinfo, clock: Callable[[], float] = time.time) -> None:
        self._where = where  # the store's zone: its midnight ends the day
        self._clock = clock
        self._closed_at: str | None = None  # the last end of day edged made
        self._approved: dict[str, tuple[str, int]] = {}
        self.loaded = False  # until the journal was read at start, nothing is known

    def since(self) -> str:
        """Where the current window starts (UTC, the journal's format)."""
        midnight = local_midnight_utc(self._clock(), self._where)
        return max(midnight, self._closed_at) if self._closed_at else midnight

    def load(self, records: list[dict[str, Any]]) -> None:
        """Start over from the journal's offline approvals since the window's start."""
        self._approved = {}
        for record in records:
            self.add(record)
        self.loaded = True

    def add(self, record: dict[str, Any]) -> bool:
        """Count `record` if it is a payment the terminal approved offline; True if it is."""
        result = record.get("result") or {}
        if (
            record.get("kind") == "payment"
            and record.get("state") == "approved"
            and result.get("authorisation") == "offline"
        ):
            self._approved[record["id"]] = (record["updated_at"], result["amount"])
            return True
        return False

    def reversed(self, payment_id: str) -> None:
        """The payment was reversed on the terminal: nothing to follow up any more."""
        self._approved.pop(payment_id, None)

    def closed(self, at: str) -> None:
        """edged closed the terminal's batch at `at`."""
        self._closed_at = at

    def report(self, currency: str) -> dict[str, Any] | None:
        """`status.payments.offline_approved`: count and total since the window's start."""
        if not self.loaded:
            return None
        since = self.since()
        amounts = [amount for at, amount in self._approved.values() if at >= since]
        return {"count": len(amounts), "total": sum(amounts), "currency": currency, "since": since}

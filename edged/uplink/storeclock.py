"""The store's clock as the terminal last heard it, carried forward with the monotonic clock.

Each ack carries the collector's clock (`at`). Carried forward from when it arrived, it says
what time the store has now; the difference from this terminal's wall clock is the offset that
`status` shows and `doctor` judges. A jump of this clock after the ack shows up in it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from edged.clock import parse_utc_iso


@dataclass(frozen=True, slots=True)
class StoreClock:
    store_at: str  # the ack's `at`, as sent
    store_epoch: float
    received_mono: float

    @classmethod
    def heard(cls, at: str | None) -> StoreClock | None:
        epoch = parse_utc_iso(at) if at else None
        if at is None or epoch is None:
            return None
        return cls(at, epoch, time.monotonic())

    def offset_s(self) -> float:
        """This terminal's clock minus the store's (positive: this terminal is ahead)."""
        store_now = self.store_epoch + (time.monotonic() - self.received_mono)
        return time.time() - store_now

    def report(self) -> dict[str, Any]:
        return {
            "last_ack_store_at": self.store_at,
            "offset_s": round(self.offset_s(), 3),
            "heard_s_ago": round(time.monotonic() - self.received_mono, 1),
        }

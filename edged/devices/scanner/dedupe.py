"""Suppress double reads: the same code again within a short interval is one scan, not two."""

from __future__ import annotations

DOUBLE_READ_S = 0.5  # shorter than a cashier needs to pass the next item of the same kind


class DoubleReadFilter:
    """Accept a code unless it equals the previous one, read less than `interval_s` ago.

    The interval runs from the previous read, accepted or not, so a label held in front of a
    presentation scanner counts once however long it stays there. A different code in
    between ends the run: A, B, A are three scans. `interval_s` 0 turns the filter off.
    The caller passes a monotonic clock reading (time.monotonic()), so tests need no sleep.
    """

    def __init__(self, interval_s: float = DOUBLE_READ_S) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.interval_s = interval_s
        self._last: str | None = None
        self._last_at = 0.0

    def accept(self, code: str, now_s: float) -> bool:
        """True if `code`, read at `now_s`, is a new scan; False for a double read."""
        double = code == self._last and now_s - self._last_at < self.interval_s
        self._last, self._last_at = code, now_s
        return not double

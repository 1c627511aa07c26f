"""Capped, jittered exponential backoff between reconnect attempts (pure; no I/O, no clock)."""

from __future__ import annotations

import random

BACKOFF_FACTOR = 2.0


class Backoff:
    """Delays grow from `min_s` by BACKOFF_FACTOR per failure up to `max_s`, jittered.

    The n-th delay (n from 0) is drawn uniformly from [cap/2, cap] with
    cap = min(max_s, min_s * 2**(n+1)), and never below `min_s`: a hundred terminals that
    lost the same broker do not come back in lockstep, and a broker that refuses at once is
    never hammered faster than `min_s`.
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError(f"need 0 < min_s <= max_s, got min_s={min_s} max_s={max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self.failures = 0

    def cap_s(self) -> float:
        """Upper bound of the next delay."""
        # min() before the power would overflow for a very long outage: clamp the exponent.
        exponent = min(self.failures + 1, 64)
        return min(self.max_s, self.min_s * BACKOFF_FACTOR**exponent)

    def next_delay_s(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        cap = self.cap_s()
        self.failures += 1
        return self._rng.uniform(max(self.min_s, cap / 2), cap)

    def reset(self) -> None:
        """Back to `min_s`, after a connection proved stable."""
        self.failures = 0

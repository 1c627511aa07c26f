"""A resend the store asked for: the terminal's side of DESIGN invariant 11.

The forwarder sends the retained journal from the requested seq, acknowledged entries included,
alongside its normal tail, with a window of the same size. A resend batch leaves the window when
the broker has it (PUBACK): the store's ack cannot count it, as a store rebuilding acknowledges
only up to its first gap. Whatever the store still lacks afterwards, it asks for again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class ResendCursor:
    """Entries after `after` up to `upto` are still to be resent; `publishing` are in flight."""

    first: int
    after: int
    upto: int
    publishing: int = 0

    def widen(self, first: int, upto: int) -> None:
        """Another request while this one runs: cover both."""
        if first - 1 < self.after:
            self.first, self.after = min(self.first, first), first - 1
        self.upto = max(self.upto, upto)

    def status(self) -> dict[str, Any]:
        return {"from": self.first, "sent_upto": self.after, "upto": self.upto}

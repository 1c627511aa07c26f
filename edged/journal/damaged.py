"""The damaged entries a running daemon came across, for `status`, events and one ERROR each.

The daemon learns them where it reads rows anyway: the forwarder reads every unsent entry
before it sends it (as a `damaged_entry`), and `sale.get` reads the one asked for. It does not
scan the whole journal at start: that takes time proportional to the journal (hashing every
entry) before the till may sell, and a damaged row that was sent before matters only as a
record, which the store keeps and `edgectl journal verify` / `doctor` find in their full walk.
"""

from __future__ import annotations

from typing import Any

import structlog

from edged.journal.rows import StoredEntry

log = structlog.get_logger(__name__)

MAX_REMEMBERED = 10_000  # seqs kept to log each once; past it, only counted (in seq order)
MAX_LISTED = 20  # seqs listed in `status`
RESTORE_HINT = (
    "the entry went to the store flagged as damaged; to recover the sale, restore it from a "
    "copy made by `edgectl journal backup`; `edgectl journal verify` lists every damaged seq"
)


class DamagedSeqs:
    """Seqs of damaged entries found since start; bounded, each logged once."""

    def __init__(self) -> None:
        self._seqs: set[int] = set()
        self._beyond = 0  # damaged entries found after MAX_REMEMBERED seqs, counted only
        self._highest = 0

    def note(self, entry: StoredEntry) -> bool:
        """Record a damaged entry; True (and logged ERROR) the first time its seq is seen.

        Past MAX_REMEMBERED, a seq counts as new only above the highest seen: the forwarder
        reads in seq order, and a resend reads again from the last ack.
        """
        assert entry.damage is not None, "only damaged entries are noted"
        full = len(self._seqs) >= MAX_REMEMBERED
        if entry.seq in self._seqs or (full and entry.seq <= self._highest):
            return False
        self._highest = max(self._highest, entry.seq)
        if full:
            self._beyond += 1
        else:
            self._seqs.add(entry.seq)
        # The problem names a column and a byte offset, never the bytes: they hold sale data.
        log.error("journal_entry_damaged", seq=entry.seq, problem=entry.damage, hint=RESTORE_HINT)
        return True

    @property
    def count(self) -> int:
        return len(self._seqs) + self._beyond

    def status(self) -> dict[str, Any]:
        """`damaged`: the lowest seqs (at most MAX_LISTED); `damaged_count`: how many in all."""
        return {"damaged": sorted(self._seqs)[:MAX_LISTED], "damaged_count": self.count}


def damaged_event(entry: StoredEntry) -> dict[str, Any]:
    """The data of the `journal` event that announces a damaged entry."""
    return {"kind": "damaged_entry", "seq": entry.seq, "problem": entry.damage}

"""Declared gaps: when the journal is behind what it once wrote or what the store holds.

A journal that lost its tail (a damaged or lost `-wal`, a restored copy, a replaced disk) must
never hand out a seq again that a lost entry or the store already has (DESIGN invariant 11).
It continues past the highest such seq with a `journal_gap` entry (edged.entrykinds) naming the
seqs it no longer holds, chained to its last entry: the loss is in the chain, for the store and
for `journal verify`, and selling goes on.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from edged.chain import canonical, entry_bytes, entry_hash
from edged.entrykinds import gap_sale

RECENT_GAPS = 10  # how many gaps `status` lists


class GapRecord(msgspec.Struct, frozen=True):
    """A gap the journal declared: seqs first..last are lost; its entry is at `seq`."""

    seq: int
    first: int
    last: int
    found_at: str
    reason: str

    def report(self, acked_upto: int) -> dict[str, Any]:
        """For `status`: whether the store has the gap entry (and so knows) too."""
        return {
            "seq": self.seq,
            "from": self.first,
            "to": self.last,
            "found_at": self.found_at,
            "reason": self.reason,
            "store_knows": self.seq <= acked_upto,
        }


class GapEntry(msgspec.Struct, frozen=True):
    """The entry row that declares a gap, ready to insert before a group's sales."""

    record: GapRecord
    sale_id: str
    receipt_no: str
    sale_json: bytes
    prev_hash: bytes
    hash: bytes

    def row(self) -> tuple[Any, ...]:
        """In the journal's _COLUMNS order."""
        r = self.record
        return (
            r.seq,
            self.sale_id,
            self.receipt_no,
            r.found_at,
            self.sale_json.decode(),
            self.prev_hash,
            self.hash,
        )


def gap_entry(
    last_seq: int, last_hash: bytes, *, skip_past: int, reason: str, receipt_no: str, now: str
) -> GapEntry:
    """The entry at skip_past + 1 declaring last_seq + 1 .. skip_past lost, after `last_hash`."""
    seq = skip_past + 1
    record = GapRecord(seq, last_seq + 1, skip_past, now, reason)
    sale_id = str(uuid.uuid4())
    sale_json = canonical(gap_sale(record.first, record.last, reason))
    digest = entry_hash(last_hash, entry_bytes(seq, sale_id, receipt_no, now, sale_json))
    return GapEntry(record, sale_id, receipt_no, sale_json, last_hash, digest)

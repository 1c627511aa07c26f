"""Journal entries that are not sales: a declared gap, and a damaged entry forwarded as such.

Both travel as ordinary entries (same seq, chain and wire format) whose `sale` is an object with
exactly one of these keys, a shape no valid sale has (a sale needs `id`, `lines`, ...):

- `{"journal_gap": {"from": A, "to": B, "reason": TEXT}}`: the terminal's journal lost seqs
  A..B (a damaged or lost -wal, a journal restored from backup) and will never send them; it
  continues at B+1 with this entry, chained to its last entry before A. Its hash is computed
  like any entry's, so the store and `journal verify` check it. With `"adopted": true` it is
  the first entry of a new journal that took over a replaced till's seqs 1..B from the store:
  nothing was lost, the store holds them.
- `{"damaged_entry": {"raw": BASE64, "problem": TEXT}}`: the journal row at this seq can no
  longer be read as it was written (not UTF-8, not JSON, hash mismatch). The forwarder sends its
  stored bytes as they are, with the row's own prev_hash and hash, so that the store records
  the problem and the stream goes on; the hash does not verify, by nature.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

GAP_KEY = "journal_gap"
DAMAGED_KEY = "damaged_entry"


class JournalGap(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    rename={"first": "from"},
):
    first: int
    to: int
    reason: str
    adopted: bool = False  # a new journal took over the store's seqs: nothing was lost here


class DamagedEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    raw: str  # base64 of the row's stored sale bytes
    problem: str

    def raw_bytes(self) -> bytes:
        return base64.b64decode(self.raw)


class _Special(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    journal_gap: JournalGap | None = None
    damaged_entry: DamagedEntry | None = None


def gap_sale(first: int, to: int, reason: str, *, adopted: bool = False) -> dict[str, Any]:
    """The `sale` object of a gap entry, ready for `chain.canonical`."""
    gap: dict[str, Any] = {"from": first, "to": to, "reason": reason}
    if adopted:
        gap["adopted"] = True
    return {GAP_KEY: gap}


def damaged_sale(raw: bytes, problem: str) -> dict[str, Any]:
    """The `sale` object that forwards a damaged row's bytes."""
    return {DAMAGED_KEY: {"raw": base64.b64encode(raw).decode("ascii"), "problem": problem}}


def special_of(sale_json: bytes) -> JournalGap | DamagedEntry | None:
    """The gap or damaged-entry record a sale's JSON holds, or None for anything else.

    Cheap for real sales: only an object whose first key is one of ours is decoded.
    """
    head = sale_json[:20].lstrip()
    if not (head.startswith(b'{"journal_gap"') or head.startswith(b'{"damaged_entry"')):
        return None
    try:
        special = msgspec.json.decode(sale_json, type=_Special)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if (special.journal_gap is None) == (special.damaged_entry is None):
        return None  # exactly one of the two, or it is no record of ours
    return special.journal_gap or special.damaged_entry

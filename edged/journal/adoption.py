"""Adopting a replaced till: a new journal takes over the store's seqs for its terminal id.

A till whose disk was replaced has the same store and terminal id and an empty journal. Were
it to start at seq 1 it would collide with the store's history for that id forever. So a new
journal on a terminal with an uplink starts *pending*: it sells at once, but its entries are
provisional — their receipt numbers carry `-P{token}`, so no printed number can match one of
the old till's — and nothing is sent. When the store answers (its retained ack names the seqs
it holds), the entries are renumbered in one transaction after a first `journal_gap` entry
with `"adopted": true` declaring seqs 1..N as the store's; receipt numbers, ids, times and
sales stay as they were, the chain is recomputed. Only then is anything sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from edged.chain import GENESIS_HASH, canonical, entry_bytes, entry_hash
from edged.entrykinds import gap_sale

PROVISIONAL_MARK = "-P{token}"  # appended to a pending journal's receipt numbers


def adoption_reason(store_upto: int) -> str:
    return (
        f"adopted: the store holds seqs 1..{store_upto} for this terminal id (a replaced till "
        "or a new journal); this journal continues after them"
    )


def renumbered(
    entries: Sequence[tuple[str, str, str, str]],
    *,
    store_upto: int,
    receipt_no: str,
    now: str,
) -> tuple[list[Any], int, bytes]:
    """The rows (in the journal's column order, flattened) of the adoption entry at
    store_upto + 1 and of `entries` (id, receipt_no, created_at, sale) after it, chained from
    the genesis hash; and the new head's seq and hash."""
    seq, prev = store_upto + 1, GENESIS_HASH
    sale_json = canonical(gap_sale(1, store_upto, adoption_reason(store_upto), adopted=True))
    sale_id = str(uuid.uuid4())
    digest = entry_hash(prev, entry_bytes(seq, sale_id, receipt_no, now, sale_json))
    params: list[Any] = [seq, sale_id, receipt_no, now, sale_json.decode(), prev, digest]
    prev = digest
    for sale_id, receipt, created_at, sale in entries:
        seq += 1
        digest = entry_hash(prev, entry_bytes(seq, sale_id, receipt, created_at, sale.encode()))
        params += (seq, sale_id, receipt, created_at, sale, prev, digest)
        prev = digest
    return params, seq, prev

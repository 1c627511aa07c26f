"""Valid journal entries built from the spec alone, as a terminal would forward them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from edged.chain import GENESIS_HASH, canonical, entry_bytes, entry_hash
from edged.wire import Entry

CREATED_AT = "2026-11-23T09:41:00.123Z"


def make_chain(
    store: str,
    terminal: str,
    n: int,
    *,
    start: int = 1,
    prev: bytes = GENESIS_HASH,
    tag: str = "",
    created_at: str = CREATED_AT,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> list[Entry]:
    """A valid hash chain of n entries from seq `start`; `tag` varies the sales' content."""
    entries = []
    for seq in range(start, start + n):
        sale_id = new_id()
        total = 1000 + seq
        sale = {
            "id": sale_id,
            "currency": "EUR",
            "total": total,
            "lines": [{"sku": f"sku-{seq}{tag}", "qty": "0.350", "amount": total}],
            "payments": [{"method": "card", "amount": total, "masked_pan": "411111******1111"}],
        }
        sale_json = canonical(sale)
        receipt_no = f"{store}-{terminal}-{seq:06d}"
        digest = entry_hash(prev, entry_bytes(seq, sale_id, receipt_no, created_at, sale_json))
        entries.append(
            Entry(
                seq=seq,
                id=sale_id,
                receipt_no=receipt_no,
                created_at=created_at,
                prev_hash=prev.hex(),
                hash=digest.hex(),
                sale=msgspec.Raw(sale_json),
            )
        )
        prev = digest
    return entries


def sale_entry(
    store: str, terminal: str, seq: int, prev_hex: str, sale: dict[str, Any], *, sale_id: str
) -> Entry:
    """One entry whose hash is right for these fields, whatever the sale (a forgery, a gap)."""
    receipt_no = f"{store}-{terminal}-{seq:06d}"
    sale_json = canonical(sale)
    digest = entry_hash(
        bytes.fromhex(prev_hex), entry_bytes(seq, sale_id, receipt_no, CREATED_AT, sale_json)
    )
    return Entry(
        seq, sale_id, receipt_no, CREATED_AT, prev_hex, digest.hex(), msgspec.Raw(sale_json)
    )

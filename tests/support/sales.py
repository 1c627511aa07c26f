"""A valid sale as a POS UI sends it: one line, paid in cash, a fresh id each call."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Sale ids chosen
    this way follow each other in the store's sale-id index (README, `sale.commit`)."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | raw[6] & 0x0F  # version 7
    raw[8] = 0x80 | raw[8] & 0x3F  # the RFC's variant
    return str(uuid.UUID(bytes=bytes(raw)))


def cash_sale(total: int = 250, pad: int = 0) -> dict[str, Any]:
    """`pad` characters of `meta` make the entry bigger (to fill a disk sooner)."""
    sale: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": total,
        "lines": [{"sku": "4006381333931", "qty": 1, "amount": total}],
        "payments": [{"method": "cash", "amount": total}],
    }
    if pad:
        sale["meta"] = {"pad": "x" * pad}
    return sale

"""A valid sale as a POS UI sends it: one line, paid in cash, a fresh id each call."""

from __future__ import annotations

import uuid
from typing import Any


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

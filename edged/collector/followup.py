"""Card payments the store should follow up: those a terminal's payment device approved offline.

A sale's payment says so with `"authorisation": "offline"` (README: offline-approved card
payments); the collector stores the sale as sent, so this is a read of `transactions`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

MAX_LISTED = 1000  # newest first; the count covers them all

# Canonical JSON (RFC 8785) has no blanks, so this text is in every body that can match.
_CANDIDATES = """
    FROM transactions t, json_each(t.body, '$.sale.payments') p
    WHERE t.body LIKE '%"authorisation":"offline"%'
      AND json_extract(p.value, '$.authorisation') = 'offline'
"""


def offline_payments(conn: sqlite3.Connection, limit: int = MAX_LISTED) -> dict[str, Any]:
    """`{count, total_by_currency, payments: [...]}`; each payment names its sale and terminal."""
    count = conn.execute(f"SELECT count(*) {_CANDIDATES}").fetchone()[0]
    totals = conn.execute(
        "SELECT json_extract(t.body, '$.sale.currency'), "
        f"sum(json_extract(p.value, '$.amount')) {_CANDIDATES} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    rows = conn.execute(
        "SELECT t.store_id, t.terminal_id, t.seq, t.receipt_no, t.id, t.created_at, p.key, "
        "json_extract(t.body, '$.sale.currency'), p.value "
        f"{_CANDIDATES} ORDER BY t.created_at DESC, t.rowid DESC, p.key LIMIT ?",
        (limit,),
    ).fetchall()
    listed = []
    for store_id, terminal_id, seq, receipt_no, sale_id, created_at, index, currency, raw in rows:
        payment = _object(raw)
        listed.append(
            {
                "store_id": store_id,
                "terminal_id": terminal_id,
                "seq": seq,
                "receipt_no": receipt_no,
                "sale_id": sale_id,
                "created_at": created_at,
                "payment_index": index,
                "amount": payment.get("amount"),
                "currency": currency,
                **{k: payment[k] for k in _FOLLOW_UP_KEYS if k in payment},
            }
        )
    return {
        "count": count,
        "total_by_currency": {currency: total for currency, total in totals},
        "payments": listed,
    }


# What identifies the payment at the acquirer; all of it allowed by DESIGN invariant 6.
_FOLLOW_UP_KEYS = ("method", "payment_id", "card", "masked_pan", "auth_code", "terminal_ref")


def _object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}

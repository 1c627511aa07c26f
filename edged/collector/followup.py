"""Card payments the store should follow up: those a terminal's payment device approved offline.

A sale's payment says so with `"authorisation": "offline"` (README: offline-approved card
payments); the collector stores the sale as sent, so this is a read of `transactions`, the same
SQL on SQLite and PostgreSQL: the text filter finds the few candidate bodies, Python reads them.
"""

from __future__ import annotations

import json
from typing import Any

from edged.collector.dialect import Conn

MAX_LISTED = 1000  # newest first; the count covers them all

# Canonical JSON (RFC 8785) has no blanks, so this text is in every body that can match.
_MARK = '%"authorisation":"offline"%'
# What identifies the payment at the acquirer; all of it allowed by DESIGN invariant 6.
_FOLLOW_UP_KEYS = ("method", "payment_id", "card", "masked_pan", "auth_code", "terminal_ref")


def offline_payments(conn: Conn, limit: int = MAX_LISTED) -> dict[str, Any]:
    """`{count, total_by_currency, payments: [...]}`; each payment names its sale and terminal."""
    rows = conn.execute(
        "SELECT store_id, terminal_id, seq, receipt_no, id, created_at, body "
        "FROM transactions WHERE body LIKE ?",
        (_MARK,),
    ).fetchall()
    found: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    for store_id, terminal_id, seq, receipt_no, sale_id, created_at, body in rows:
        sale = _object(_object(body).get("sale"))
        currency = sale.get("currency")
        payments = sale.get("payments")
        for index, payment in enumerate(payments if isinstance(payments, list) else []):
            if not isinstance(payment, dict) or payment.get("authorisation") != "offline":
                continue
            amount = payment.get("amount")
            if isinstance(currency, str) and isinstance(amount, int):
                totals[currency] = totals.get(currency, 0) + amount
            found.append(
                {
                    "store_id": store_id,
                    "terminal_id": terminal_id,
                    "seq": seq,
                    "receipt_no": receipt_no,
                    "sale_id": sale_id,
                    "created_at": created_at,
                    "payment_index": index,
                    "amount": amount,
                    "currency": currency,
                    **{k: payment[k] for k in _FOLLOW_UP_KEYS if k in payment},
                }
            )
    found.sort(key=lambda p: (p["created_at"], p["seq"], -p["payment_index"]), reverse=True)
    return {
        "count": len(found),
        "total_by_currency": dict(sorted(totals.items())),
        "payments": found[:limit],
    }


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}

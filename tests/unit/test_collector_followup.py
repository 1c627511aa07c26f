"""The collector's follow-up list: sale payments marked `"authorisation": "offline"`."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edged.chain import canonical
from edged.collector.followup import offline_payments
from edged.collector.schema import prepare


def stored(tmp_path: Path, *sales: dict[str, Any]) -> sqlite3.Connection:
    path = str(tmp_path / "store.db")
    conn = sqlite3.connect(path, isolation_level=None)
    prepare(conn, path)
    conn.execute("DELETE FROM transactions")
    for seq, sale in enumerate(sales, start=1):
        body = canonical({"seq": seq, "id": f"id-{seq}", "sale": sale}).decode()
        conn.execute(
            "INSERT INTO transactions (store_id, terminal_id, seq, id, receipt_no, created_at, "
            "prev_hash, hash, body, received_at, received_by) "
            "VALUES ('S1', 'T1', ?, ?, ?, ?, '', '', ?, '', 'test')",
            (seq, f"id-{seq}", f"S1-T1-{seq:06d}", f"2026-12-07T10:00:0{seq}.000Z", body),
        )
    return conn


def sale(*payments: Any, currency: str = "EUR") -> dict[str, Any]:
    return {"currency": currency, "payments": list(payments)}


def test_only_offline_payments_are_listed_newest_first(tmp_path: Path) -> None:
    conn = stored(
        tmp_path,
        sale({"method": "card", "amount": 1250, "authorisation": "offline", "payment_id": "p1"}),
        sale({"method": "card", "amount": 300, "authorisation": "online"}),
        sale({"method": "cash", "amount": 100}, "not an object", {"note": "authorisation"}),
        sale(
            {"method": "cash", "amount": 50},
            {"method": "card", "amount": 700, "authorisation": "offline", "auth_code": "X1"},
            currency="CHF",
        ),
        {"journal_gap": {"from": 9, "to": 9}},  # not a sale with payments
    )
    report = offline_payments(conn)
    assert report["count"] == 2
    assert report["total_by_currency"] == {"CHF": 700, "EUR": 1250}
    newest, oldest = report["payments"]
    assert (newest["seq"], newest["payment_index"], newest["currency"]) == (4, 1, "CHF")
    assert (newest["auth_code"], newest["method"]) == ("X1", "card")
    assert (oldest["seq"], oldest["payment_id"], oldest["receipt_no"]) == (1, "p1", "S1-T1-000001")
    assert offline_payments(conn, limit=1)["payments"] == [newest]


@given(st.lists(st.sampled_from(["offline", "online", "unknown", None]), max_size=6))
def test_the_count_is_the_offline_payments(marks: list[str | None]) -> None:
    payments = [
        {"method": "card", "amount": 10} | ({"authorisation": m} if m else {}) for m in marks
    ]
    with tempfile.TemporaryDirectory() as workdir:
        conn = stored(Path(workdir), sale(*payments))
        report = offline_payments(conn)
        conn.close()
    assert report["count"] == marks.count("offline")
    assert sum(p["amount"] for p in report["payments"]) == 10 * marks.count("offline")

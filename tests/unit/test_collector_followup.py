"""The collector's follow-up list: sale payments marked `"authorisation": "offline"`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edged.chain import canonical
from edged.collector.followup import offline_payments
from edged.collector.store import CollectorStore
from tests.support.collectordb import CollectorDb, fresh_collector_db


def stored(db: CollectorDb, *sales: dict[str, Any]) -> CollectorStore:
    """A collector store (its schema on db's backend) holding `sales` as terminal T1's."""
    store = CollectorStore.open(db.target, received_by="test")
    for seq, sale in enumerate(sales, start=1):
        body = canonical({"seq": seq, "id": f"id-{seq}", "sale": sale}).decode()
        db.query(
            "INSERT INTO transactions (store_id, terminal_id, seq, id, receipt_no, created_at, "
            "prev_hash, hash, body, received_at, received_by) "
            "VALUES ('S1', 'T1', ?, ?, ?, ?, '', '', ?, '', 'test')",
            (seq, f"id-{seq}", f"S1-T1-{seq:06d}", f"2026-12-07T10:00:0{seq}.000Z", body),
        )
    return store


def sale(*payments: Any, currency: str = "EUR") -> dict[str, Any]:
    return {"currency": currency, "payments": list(payments)}


def test_only_offline_payments_are_listed_newest_first(collector_db: CollectorDb) -> None:
    store = stored(
        collector_db,
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
    try:
        report = offline_payments(store._conn)
        first_only = offline_payments(store._conn, limit=1)
    finally:
        store.close()
    assert report["count"] == 2
    assert report["total_by_currency"] == {"CHF": 700, "EUR": 1250}
    newest, oldest = report["payments"]
    assert (newest["seq"], newest["payment_index"], newest["currency"]) == (4, 1, "CHF")
    assert (newest["auth_code"], newest["method"]) == ("X1", "card")
    assert (oldest["seq"], oldest["payment_id"], oldest["receipt_no"]) == (1, "p1", "S1-T1-000001")
    assert first_only["payments"] == [newest]


@given(st.lists(st.sampled_from(["offline", "online", "unknown", None]), max_size=6))
def test_the_count_is_the_offline_payments(marks: list[str | None]) -> None:
    payments = [
        {"method": "card", "amount": 10} | ({"authorisation": m} if m else {}) for m in marks
    ]
    with (
        tempfile.TemporaryDirectory() as workdir,
        fresh_collector_db("sqlite", Path(workdir)) as db,
    ):
        store = stored(db, sale(*payments))
        try:
            report = offline_payments(store._conn)
        finally:
            store.close()
    assert report["count"] == marks.count("offline")
    assert sum(p["amount"] for p in report["payments"]) == 10 * marks.count("offline")

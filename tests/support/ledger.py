"""An in-memory PaymentLedger that keeps records as JSON text, as a journal would."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec


class MemoryLedger:
    """PaymentLedger for tests; `gate`, when set and clear, holds every write until it is set."""

    def __init__(self, *records: dict[str, Any]) -> None:
        self.rows: dict[str, bytes] = {r["id"]: msgspec.json.encode(r) for r in records}
        self.writes: list[dict[str, Any]] = []  # every record written, in order
        self.gate: asyncio.Event | None = None

    async def put_payment(self, record: dict[str, Any]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        text = msgspec.json.encode(record)  # fails on anything that is not plain JSON
        self.rows[record["id"]] = text
        self.writes.append(msgspec.json.decode(text))

    async def get_payment(self, payment_id: str) -> dict[str, Any] | None:
        text = self.rows.get(payment_id)
        return None if text is None else msgspec.json.decode(text)

    async def unfinished_payments(self) -> list[dict[str, Any]]:
        records = [msgspec.json.decode(text) for text in self.rows.values()]
        return sorted(
            (r for r in records if r["state"] == "in_progress"), key=lambda r: r["created_at"]
        )

    async def last_settled_result(self) -> dict[str, Any] | None:
        results = [
            record["result"]
            for record in map(msgspec.json.decode, self.rows.values())
            if record["state"] != "in_progress"
            and record.get("result")
            and (record["result"].get("trace_number") or record["result"].get("receipt_no"))
        ]
        return results[-1] if results else None

    async def last_day_closed_at(self) -> str | None:
        closes = [r["updated_at"] for r in self._records() if r["kind"] == "end_of_day"]
        return max(closes, default=None)

    async def offline_approvals_since(self, since: str) -> list[dict[str, Any]]:
        records = self._records()
        reversed_ = {r.get("reverses") for r in records if r["state"] == "approved"}
        return [
            r
            for r in records
            if r["state"] == "approved"
            and r["kind"] == "payment"
            and (r.get("result") or {}).get("authorisation") == "offline"
            and r["updated_at"] >= since
            and r["id"] not in reversed_
        ]

    def _records(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(text) for text in self.rows.values()]

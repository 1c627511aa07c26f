"""The journal tables the devices keep (print jobs, card payments), adapted to their interfaces.

The daemon hands these to the printer and the payment service; every write is durable on return.
"""

from __future__ import annotations

from typing import Any

import msgspec

from edged.clock import utc_now_iso
from edged.devices.printer.jobs import JobState, PrintJob
from edged.journal.store import Journal

_JOB_COLUMNS = "job, document, copy, state, sale_id, created_at"


def _job(row: tuple[Any, ...]) -> PrintJob:
    job, document, copy, state, sale_id, created_at = row
    return PrintJob(
        job_id=job,
        document=msgspec.json.decode(document),
        copy=bool(copy),
        state=JobState(state),
        sale_id=sale_id,
        created_at=created_at,
    )


class PrintJobs:
    """PrintJobStore (edged.devices.printer.jobs) on the journal's `print_jobs` table."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    async def add_print_job(
        self, document: dict[str, Any], *, copy: bool, sale_id: str | None
    ) -> PrintJob:
        now = utc_now_iso()
        rows = await self._journal.execute(
            "INSERT INTO print_jobs (sale_id, document, copy, state, created_at, updated_at) "
            f"VALUES (?, ?, ?, 'queued', ?, ?) RETURNING {_JOB_COLUMNS}",
            (sale_id, msgspec.json.encode(document).decode(), int(copy), now, now),
        )
        return _job(rows[0])

    async def unfinished_print_jobs(self) -> list[PrintJob]:
        rows = await self._journal.execute(
            f"SELECT {_JOB_COLUMNS} FROM print_jobs WHERE state IN ('queued', 'sending') "
            "ORDER BY job"
        )
        return [_job(row) for row in rows]

    async def set_print_job_state(self, job_id: int, state: JobState) -> None:
        await self._journal.execute(
            "UPDATE print_jobs SET state = ?, updated_at = ? WHERE job = ?",
            (str(state), utc_now_iso(), job_id),
        )

    async def times_printed(self, sale_id: str) -> int:
        rows = await self._journal.execute(
            "SELECT count(*) FROM print_jobs WHERE sale_id = ?", (sale_id,)
        )
        return int(rows[0][0])

    async def get_print_job(self, job_id: int) -> PrintJob | None:
        rows = await self._journal.execute(
            f"SELECT {_JOB_COLUMNS} FROM print_jobs WHERE job = ?", (job_id,)
        )
        return _job(rows[0]) if rows else None


class Payments:
    """PaymentLedger (edged.devices.payment.service) on the journal's `payments` table."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    async def put_payment(self, record: dict[str, Any]) -> None:
        now = utc_now_iso()
        await self._journal.execute(
            "INSERT INTO payments (id, state, record, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "state = excluded.state, record = excluded.record, updated_at = excluded.updated_at",
            (record["id"], record["state"], msgspec.json.encode(record).decode(), now, now),
        )

    async def get_payment(self, payment_id: str) -> dict[str, Any] | None:
        rows = await self._journal.execute(
            "SELECT record FROM payments WHERE id = ?", (payment_id,)
        )
        return msgspec.json.decode(rows[0][0]) if rows else None

    async def unfinished_payments(self) -> list[dict[str, Any]]:
        rows = await self._journal.execute(
            "SELECT record FROM payments WHERE state = 'in_progress' ORDER BY created_at"
        )
        return [msgspec.json.decode(row[0]) for row in rows]

    async def last_settled_result(self) -> dict[str, Any] | None:
        rows = await self._journal.execute(
            "SELECT json_extract(record, '$.result') FROM payments "
            "WHERE state != 'in_progress' AND (json_extract(record, '$.result.trace_number') "
            "IS NOT NULL OR json_extract(record, '$.result.receipt_no') IS NOT NULL) "
            "ORDER BY updated_at DESC, rowid DESC LIMIT 1"
        )
        return msgspec.json.decode(rows[0][0]) if rows else None

    async def last_day_closed_at(self) -> str | None:
        rows = await self._journal.execute(
            "SELECT max(json_extract(record, '$.updated_at')) FROM payments "
            "WHERE json_extract(record, '$.kind') = 'end_of_day'"
        )
        return rows[0][0] if rows else None

    async def offline_approvals_since(self, since: str) -> list[dict[str, Any]]:
        rows = await self._journal.execute(
            "SELECT p.record FROM payments p WHERE p.state = 'approved' "
            "AND json_extract(p.record, '$.kind') = 'payment' "
            "AND json_extract(p.record, '$.result.authorisation') = 'offline' "
            "AND json_extract(p.record, '$.updated_at') >= ? "
            "AND NOT EXISTS (SELECT 1 FROM payments r WHERE r.state = 'approved' "
            "AND json_extract(r.record, '$.reverses') = p.id) "
            "ORDER BY json_extract(p.record, '$.updated_at')",
            (since,),
        )
        return [msgspec.json.decode(row[0]) for row in rows]

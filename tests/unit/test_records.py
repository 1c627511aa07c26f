"""Print jobs and payments in a real journal file: durable across a reopen, migrated from v1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edged.devices.printer.jobs import JobState
from edged.journal import Journal
from edged.journal.schema import MIGRATIONS
from edged.records import Payments, PrintJobs


async def open_journal(path: Path) -> Journal:
    return await Journal.open(path, store_id="S1", terminal_id="T1")


async def test_print_jobs_survive_a_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = await open_journal(path)
    jobs = PrintJobs(journal)
    first = await jobs.add_print_job({"kind": "text", "lines": ["€ 1"]}, copy=False, sale_id=None)
    second = await jobs.add_print_job({"kind": "sale", "seq": 1}, copy=False, sale_id="s-1")
    third = await jobs.add_print_job({"kind": "sale", "seq": 1}, copy=True, sale_id="s-1")
    assert first.state == JobState.QUEUED
    assert first.job_id < second.job_id < third.job_id
    await jobs.set_print_job_state(first.job_id, JobState.PRINTED)
    await jobs.set_print_job_state(second.job_id, JobState.SENDING)
    await journal.close()

    journal = await open_journal(path)
    jobs = PrintJobs(journal)
    unfinished = await jobs.unfinished_print_jobs()
    assert [(j.job_id, j.state, j.copy) for j in unfinished] == [
        (second.job_id, JobState.SENDING, False),
        (third.job_id, JobState.QUEUED, True),
    ]
    assert unfinished[0].document == {"kind": "sale", "seq": 1}
    assert await jobs.times_printed("s-1") == 2
    assert await jobs.times_printed("other") == 0
    found = await jobs.get_print_job(first.job_id)
    assert found is not None
    assert found.document == {"kind": "text", "lines": ["€ 1"]}
    assert await jobs.get_print_job(999) is None
    await journal.close()


async def test_payments_upsert_and_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = await open_journal(path)
    ledger = Payments(journal)
    record = {"id": "p-1", "amount": 1000, "currency": "EUR", "state": "in_progress"}
    await ledger.put_payment(record)
    await ledger.put_payment({"id": "p-2", "amount": 5, "currency": "EUR", "state": "approved"})
    await journal.close()

    journal = await open_journal(path)
    ledger = Payments(journal)
    assert await ledger.unfinished_payments() == [record]
    await ledger.put_payment({**record, "state": "approved", "result": {"auth_code": "123"}})
    assert await ledger.unfinished_payments() == []
    assert await ledger.get_payment("p-1") == {
        **record,
        "state": "approved",
        "result": {"auth_code": "123"},
    }
    assert await ledger.get_payment("nope") is None
    await journal.close()


async def test_a_version_1_journal_is_migrated_and_keeps_its_sales(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
    db.execute("INSERT INTO identity VALUES (1, 'S1', 'T1', '2026-01-01T00:00:00.000Z')")
    db.close()
    journal = await open_journal(path)
    jobs = PrintJobs(journal)
    assert await jobs.unfinished_print_jobs() == []
    await journal.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()

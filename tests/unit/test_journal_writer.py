"""The journal writer survives any failure of a group, says when it is stuck or gone, and can
be restarted; real SQLite files, with a failure injected where no real one can be provoked."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from edged.errors import JournalError, JournalFullError, ValidationError
from edged.journal import Journal
from edged.journal.seqmark import SeqMark, read_mark
from edged.journal.store import WRITER_STUCK_S
from edged.journal.verify import verify_journal
from tests.support.sales import cash_sale

HANG_S = 20  # only a hang detector
FAIL_FAST_S = 5  # for an answer that needs no disk: a refusal, a dead writer


async def open_journal(path: Path) -> Journal:
    return await Journal.open(path, store_id="S1", terminal_id="T1")


async def test_a_bug_in_one_group_fails_only_that_group(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    insert = j._insert
    calls = 0

    async def broken_once(items: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected bug")
        return await insert(items)

    j._insert = broken_once  # type: ignore[method-assign]
    victim = cash_sale()
    with capture_logs() as logs:
        async with asyncio.timeout(HANG_S):
            with pytest.raises(JournalError, match="RuntimeError: injected bug") as info:
                await j.commit(victim)
            later = await j.commit(cash_sale())
            retried = await j.commit(victim)
    assert "outcome of this commit is unknown" in str(info.value)
    assert not isinstance(info.value, JournalFullError)
    failures = [entry for entry in logs if entry["event"] == "journal_write_failed"]
    assert len(failures) == 1 and failures[0]["sale_ids"] == [victim["id"]]
    assert (later.seq, retried.seq, retried.duplicate) == (1, 2, False)
    assert j.health().alive
    await j.close()
    assert verify_journal(tmp_path / "j.db").last_seq == 2


async def test_a_failure_after_the_insert_landed_reloads_the_head(tmp_path: Path) -> None:
    """The outcome was unknown and the sale is in fact on disk: the next group continues the
    chain after it, and the caller's retry gets its first result."""
    j = await open_journal(tmp_path / "j.db")
    fetch = j._fetch
    armed = True

    async def fails_after_insert(sql: str, params: Any = ()) -> Any:
        nonlocal armed
        rows = await fetch(sql, params)
        if armed and sql.startswith("INSERT INTO entries"):
            armed = False
            raise RuntimeError("lost after the write")
        return rows

    j._fetch = fails_after_insert  # type: ignore[method-assign]
    victim = cash_sale()
    forwarder_waiting = asyncio.create_task(j.wait_committed(0))
    async with asyncio.timeout(HANG_S):
        with pytest.raises(JournalError, match="outcome of this commit is unknown"):
            await j.commit(victim)
        async with asyncio.timeout(FAIL_FAST_S):
            await forwarder_waiting  # woken by the reload that found seq 1
        mark = read_mark(j.path)
        assert mark is not None and mark.seq == 1  # the seq mark follows the reloaded head
        (landed,) = await j.unacked(0, 1)
        assert j.stats().oldest_pending_created_at == landed.created_at
        after = await j.commit(cash_sale())
        retried = await j.commit(victim)
    assert after.seq == 2
    assert (retried.seq, retried.duplicate) == (1, True)
    assert read_mark(j.path) == SeqMark(2, bytes.fromhex(after.hash))
    assert j.stats().last_seq == 2
    await j.close()
    assert verify_journal(tmp_path / "j.db").last_seq == 2


async def test_a_failed_duplicate_lookup_is_a_clean_error_then_the_first_result(
    tmp_path: Path,
) -> None:
    """If even the read that finds a retried sale fails, nobody in the group is told a lie:
    the error says this request committed nothing, and the retry later gets the first result."""
    j = await open_journal(tmp_path / "j.db")
    old = cash_sale()
    first = await j.commit(old)
    lookup = j._committed_before
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]

    async def failing_lookup(items: Any) -> Any:
        raise full

    j._committed_before = failing_lookup  # type: ignore[method-assign]
    new = cash_sale()
    async with asyncio.timeout(HANG_S):
        results = await asyncio.gather(j.commit(dict(old)), j.commit(new), return_exceptions=True)
    assert all(isinstance(r, JournalFullError) for r in results)
    assert "not committed by this request" in str(results[0])
    j._committed_before = lookup  # type: ignore[method-assign]
    async with asyncio.timeout(HANG_S):
        retried, fresh = await asyncio.gather(j.commit(dict(old)), j.commit(new))
    assert retried == msgspec.structs.replace(first, duplicate=True)
    assert fresh.seq == 2
    await j.close()


async def test_a_writer_that_ended_fails_fast_and_can_be_restarted(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    assert j.ensure_writer() is False  # alive: nothing to do
    assert j._writer is not None
    waiting = asyncio.create_task(j.commit(cash_sale()))
    await asyncio.sleep(0)  # queued, the writer not yet run
    with capture_logs() as logs:
        j._writer.cancel()
        async with asyncio.timeout(FAIL_FAST_S):
            with pytest.raises(JournalError, match="journal writer stopped"):
                await waiting
    assert [entry["event"] for entry in logs] == ["journal_writer_ended"]
    assert logs[0]["log_level"] == "error" and logs[0]["reason"] == "cancelled"
    assert not j.health().alive
    with pytest.raises(JournalError, match="journal writer is not running"):
        async with asyncio.timeout(FAIL_FAST_S):
            await j.commit(cash_sale())
    assert j.ensure_writer() is True
    async with asyncio.timeout(HANG_S):
        assert (await j.commit(cash_sale())).seq == 1
    assert j.health().ok
    await j.close()
    assert not j.health().alive


async def test_health_says_stuck_while_the_writer_cannot_write(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    assert j.health() == j.health(stuck_after_s=0.0)  # nothing waiting: never stuck
    blocker = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock (busy_timeout waits)
    try:
        commit = asyncio.create_task(j.commit(cash_sale()))
        async with asyncio.timeout(HANG_S):
            while not j.health(stuck_after_s=0.05).stuck:
                await asyncio.sleep(0.01)
        health = j.health(stuck_after_s=0.05)
        assert health.alive and health.waiting == 1 and not health.ok
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    async with asyncio.timeout(HANG_S):
        assert (await commit).seq == 1
    assert not j.health(stuck_after_s=0.05).stuck
    await j.close()


async def test_two_copies_of_one_sale_in_one_group_get_its_own_answer(tmp_path: Path) -> None:
    """The second copy is a duplicate of the first, never another sale's seq."""
    j = await open_journal(tmp_path / "j.db")
    a, b = cash_sale(), cash_sale()
    async with asyncio.timeout(HANG_S):
        first, other, again = await asyncio.gather(j.commit(a), j.commit(b), j.commit(dict(a)))
    assert (first.seq, first.duplicate, other.seq) == (1, False, 2)
    assert again == msgspec.structs.replace(first, duplicate=True)
    await j.close()
    assert verify_journal(tmp_path / "j.db").last_seq == 2


async def test_a_cancelled_first_copy_still_answers_the_second(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    a = cash_sale()
    gone = asyncio.create_task(j.commit(a))
    waiting = asyncio.create_task(j.commit(dict(a)))
    await asyncio.sleep(0)  # both queued, the writer not yet run: one group
    assert len(j._queue) == 2
    gone.cancel()
    async with asyncio.timeout(HANG_S):
        result = await waiting
        later = await j.commit(cash_sale())
    assert (result.seq, later.seq) == (1, 2)
    assert j.health().alive
    await j.close()
    assert verify_journal(tmp_path / "j.db").last_seq == 2


async def test_a_failed_group_with_two_copies_fails_both_then_a_retry_commits(
    tmp_path: Path,
) -> None:
    j = await open_journal(tmp_path / "j.db")
    insert = j._insert
    armed = True

    async def fails_once(items: Any) -> Any:
        nonlocal armed
        if armed:
            armed = False
            raise sqlite3.OperationalError("disk I/O error")
        return await insert(items)

    j._insert = fails_once  # type: ignore[method-assign]
    a = cash_sale()
    with capture_logs() as logs:
        async with asyncio.timeout(HANG_S):
            results = await asyncio.gather(j.commit(a), j.commit(dict(a)), return_exceptions=True)
    assert all(isinstance(r, JournalError) for r in results)
    assert not any(isinstance(r, JournalFullError) for r in results)
    assert "write failed (disk I/O error); the outcome of this commit is unknown" in str(results[0])
    failed = [entry for entry in logs if entry["event"] == "journal_write_failed"]
    assert len(failed) == 1 and failed[0]["error"] == "disk I/O error"
    assert failed[0]["sale_ids"] == [a["id"], a["id"]]
    health = j.health()
    assert health.alive and health.failing_since is not None
    assert health.last_error == str(results[0])
    with capture_logs() as logs:
        async with asyncio.timeout(HANG_S):
            retried = await j.commit(dict(a))
    assert (retried.seq, retried.duplicate) == (1, False)
    assert [entry["event"] for entry in logs] == ["journal_write_recovered"]
    assert j.health().failing_since is None
    await j.close()


async def test_a_commit_while_closing_is_refused_and_the_queued_one_is_answered(
    tmp_path: Path,
) -> None:
    j = await open_journal(tmp_path / "j.db")
    queued = asyncio.create_task(j.commit(cash_sale()))
    await asyncio.sleep(0)  # queued, not yet written
    closing = asyncio.create_task(j.close())
    await asyncio.sleep(0)
    with pytest.raises(JournalError, match="the journal is closing"):
        async with asyncio.timeout(FAIL_FAST_S):
            await j.commit(cash_sale())
    async with asyncio.timeout(HANG_S):
        assert (await queued).seq == 1
        await closing
    assert verify_journal(tmp_path / "j.db").last_seq == 1


async def test_a_sale_without_canonical_form_is_a_validation_error(tmp_path: Path) -> None:
    """A lone surrogate passes the validator (it is a str) but has no UTF-8 form to hash."""
    j = await open_journal(tmp_path / "j.db")
    broken = cash_sale()
    broken["meta"] = {"note": "caf\ud800"}
    with pytest.raises(ValidationError) as info:
        await j.commit(broken)
    assert [(p.path, p.problem) for p in info.value.problems] == [
        ("sale", "a string holds a lone UTF-16 surrogate, which is not text")
    ]
    assert (await j.commit(cash_sale())).seq == 1
    await j.close()


async def test_a_writer_bug_that_forgets_a_caller_fails_it_at_once(tmp_path: Path) -> None:
    """A group written but not answered (a bug): its callers fail loudly, never hang."""
    j = await open_journal(tmp_path / "j.db")
    j._answer = lambda group, stored: None  # type: ignore[assignment]
    with capture_logs() as logs:
        async with asyncio.timeout(FAIL_FAST_S):
            with pytest.raises(JournalError, match="left this commit unanswered"):
                await j.commit(cash_sale())
    unanswered = [entry for entry in logs if entry["event"] == "journal_commit_unanswered"]
    assert len(unanswered) == 1 and unanswered[0]["log_level"] == "error"
    assert j.health().alive
    del j._answer
    async with asyncio.timeout(HANG_S):
        assert (await j.commit(cash_sale())).seq == 2  # the forgotten sale did land as seq 1
    await j.close()


async def test_a_writer_that_dies_while_failing_a_group_fails_its_callers_at_once(
    tmp_path: Path,
) -> None:
    j = await open_journal(tmp_path / "j.db")

    async def broken(*args: Any) -> Any:
        raise RuntimeError("injected bug")

    j._insert = broken  # type: ignore[method-assign]
    j._reload_head = broken  # type: ignore[method-assign]  # _fail_group's last step
    with capture_logs() as logs:
        async with asyncio.timeout(HANG_S):
            results = await asyncio.gather(
                j.commit(cash_sale()), j.commit(cash_sale()), return_exceptions=True
            )
            assert j._writer is not None
            await asyncio.wait([j._writer])  # it ends once _fail_group raised
    assert all(isinstance(r, JournalError) for r in results), results
    assert not j.health().alive
    assert [e["event"] for e in logs if e["log_level"] == "error"][-1] == "journal_writer_ended"
    with pytest.raises(JournalError, match="journal writer is not running"):
        async with asyncio.timeout(FAIL_FAST_S):
            await j.commit(cash_sale())
    await j.close()


async def test_a_writer_ending_at_close_is_no_error(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    await j.commit(cash_sale())
    with capture_logs() as logs:
        await j.close()
    assert [e["event"] for e in logs if e["log_level"] == "error"] == []
    assert [e["event"] for e in logs] == ["journal_closed"]


async def test_a_restarted_writer_continues_after_what_the_dead_one_wrote(
    tmp_path: Path,
) -> None:
    """The writer died after its INSERT landed but before it moved the head: the new writer
    reads the head from the file, and the next sale follows it at once."""
    j = await open_journal(tmp_path / "j.db")
    fetch = j._fetch
    armed = True

    async def dies_after_insert(sql: str, params: Any = ()) -> Any:
        nonlocal armed
        rows = await fetch(sql, params)
        if armed and sql.startswith("INSERT INTO entries"):
            armed = False
            raise asyncio.CancelledError  # not an Exception: the writer ends
        return rows

    j._fetch = dies_after_insert  # type: ignore[method-assign]
    first = cash_sale()
    async with asyncio.timeout(HANG_S):
        with pytest.raises(JournalError, match="journal writer stopped"):
            await j.commit(first)
    assert j.ensure_writer() is True
    async with asyncio.timeout(HANG_S):
        assert (await j.commit(cash_sale())).seq == 2
        retried = await j.commit(first)
    assert (retried.seq, retried.duplicate) == (1, True)
    await j.close()
    assert verify_journal(tmp_path / "j.db").last_seq == 2


async def test_a_failed_head_reload_leaves_the_writer_running(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    fetch = j._fetch
    failing = {"INSERT INTO entries", "SELECT seq, hash FROM entries"}

    async def fails_once_each(sql: str, params: Any = ()) -> Any:
        hit = next((prefix for prefix in failing if sql.startswith(prefix)), None)
        if hit is not None:
            failing.discard(hit)
            raise sqlite3.OperationalError("disk I/O error")
        return await fetch(sql, params)

    j._fetch = fails_once_each  # type: ignore[method-assign]
    with capture_logs() as logs:
        async with asyncio.timeout(HANG_S):
            with pytest.raises(JournalError, match="outcome of this commit is unknown"):
                await j.commit(cash_sale())
            assert (await j.commit(cash_sale())).seq == 1  # the writer went on
    assert "journal_head_reload_failed" in [e["event"] for e in logs]
    assert j.health().alive
    await j.close()


async def test_the_first_group_marks_a_journal_opened_on_a_full_disk_open(tmp_path: Path) -> None:
    """Opened on a full disk, the journal could not say "open" in its file; its first group
    does, so that a lost -wal is seen from then on."""
    j = await open_journal(tmp_path / "j.db")
    await j.execute("UPDATE run_state SET open = 0")
    j._open_marked = False  # as _prepare leaves it on a full disk
    await j.commit(cash_sale())
    assert await j.execute("SELECT open FROM run_state") == [(1,)]
    await j.close()


async def test_a_declared_gap_and_the_waiting_sales_share_one_transaction(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    sale = asyncio.create_task(j.commit(cash_sale()))
    await asyncio.sleep(0)  # queued, the writer woken but not yet run
    assert j.skip_past(5, "a lost tail, for the test")
    async with asyncio.timeout(HANG_S):
        assert (await sale).seq == 7  # seqs 1-5 declared lost by the gap entry, seq 6
    assert j.stats().sale_transactions == 1
    assert j.gaps()["count"] == 1
    await j.close()


async def test_nothing_past_the_head_is_read_while_the_seq_mark_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group is in the file a moment before the writer takes it as its head (the seq mark is
    written in between). An entry sent and acknowledged in that moment made the store look
    ahead of the journal, and the journal declared its own newest sale lost (found by CI)."""
    journal = await open_journal(tmp_path / "journal.db")
    entered, release = threading.Event(), threading.Event()
    write_mark = journal._write_seq_mark

    def slow_mark(seq: int, digest: bytes) -> None:
        entered.set()
        release.wait(10)
        write_mark(seq, digest)

    monkeypatch.setattr(journal, "_write_seq_mark", slow_mark)
    try:
        commit = asyncio.create_task(journal.commit(cash_sale()))
        assert await asyncio.to_thread(entered.wait, 10)
        assert journal.stats().last_seq == 0  # in the file, not yet the head
        assert await journal.unacked(0, 10) == []
        assert await journal.retained(0, 10, 10) == []
        release.set()
        result = await commit
        assert [e.seq for e in await journal.unacked(0, 10)] == [result.seq]
    finally:
        release.set()
        await journal.close()


async def test_writer_problem_names_a_stuck_then_a_dead_writer(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    assert j.writer_problem() is None
    blocker = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer waits on the lock (busy_timeout)
    try:
        commit = asyncio.create_task(j.commit(cash_sale()))
        async with asyncio.timeout(FAIL_FAST_S):
            while not j._in_flight:
                await asyncio.sleep(0.01)
        assert j.writer_problem() is None  # waiting, not yet for long
        for item in j._in_flight:  # as if queued longer ago than the watchdog's bound
            item.queued_at -= WRITER_STUCK_S + 1
        assert j.writer_problem() == "commits have waited more than 15 s for the journal writer"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    async with asyncio.timeout(HANG_S):
        assert (await commit).seq == 1
    assert j.writer_problem() is None
    assert j._writer is not None
    j._writer.cancel()
    await asyncio.wait([j._writer])
    assert j.writer_problem() == "the journal writer is not running"
    await j.close()


async def test_watch_writer_restarts_a_dead_writer_and_raises_when_it_ends(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    assert j._writer is not None
    j._writer.cancel()
    await asyncio.wait([j._writer])
    watcher = asyncio.create_task(j.watch_writer())
    await asyncio.sleep(0)
    assert j.health().alive  # started again by the watcher
    j._writer.cancel()  # the writer ends unasked
    async with asyncio.timeout(FAIL_FAST_S):
        with pytest.raises(JournalError, match="the journal writer stopped unexpectedly"):
            await watcher
    watcher = asyncio.create_task(j.watch_writer())
    await asyncio.sleep(0)
    watcher.cancel()  # its caller stops: the writer goes on
    with pytest.raises(asyncio.CancelledError):
        await watcher
    assert j.health().alive
    async with asyncio.timeout(HANG_S):
        assert (await j.commit(cash_sale())).seq == 1
    await j.close()
    assert j.ensure_writer() is False  # closed: never started again
    with pytest.raises(JournalError, match="closed"):
        await j.watch_writer()

"""A new journal never starts at seq 1 over a store's history for its terminal id (issue 11).

Its entries stay provisional (receipt numbers marked -P{token}, nothing sent) until the store's
retained ack says which seqs it holds; then they are renumbered after them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

from structlog.testing import capture_logs

from edged.journal import Journal
from edged.journal.seqmark import read_mark
from edged.journal.verify import verify_journal
from tests.support.forwarding import bare_forwarder
from tests.support.sales import cash_sale
from tests.support.waiting import until

ACK = "edged/v1/S1/T1/ack"
ADOPTED_S = 5  # an adoption is one local transaction: a wait past this fails the test


async def new_journal(path: Path) -> Journal:
    return await Journal.open(path, store_id="S1", terminal_id="T1", adopt=True)


async def test_provisional_entries_are_renumbered_after_the_stores_seqs(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await new_journal(path)
    sales = [cash_sale(), cash_sale()]
    provisional = [await j.commit(one) for one in sales]
    assert j.adoption_pending
    assert [r.seq for r in provisional] == [1, 2]
    assert all("-P" in r.receipt_no for r in provisional)
    with capture_logs() as logs:
        await bare_forwarder(j).handle_ack(ACK, b'{"v":1,"upto":5}', retained=True)
        # Its last step: adoption_pending turns False a moment before the head is renumbered.
        await until(lambda: any(e["event"] == "journal_adopted" for e in logs), "", ADOPTED_S)
    assert not j.adoption_pending
    assert [e["log_level"] for e in logs if e["event"] == "journal_adopted"] == ["warning"]
    assert j.last_seq == 8  # 6: the adoption entry, 7 and 8: the two sales
    for one, before in zip(sales, provisional, strict=True):
        found = await j.get(one["id"])
        assert found is not None
        entry, acked = found
        assert entry.receipt_no == before.receipt_no  # printed receipts stay true
        assert entry.seq == before.seq + 6 and not acked
    assert j.stats().pending == 3
    again = await j.commit(sales[0])  # a retry after adoption: the renumbered result
    assert (again.seq, again.duplicate) == (7, True)
    later = await j.commit(cash_sale())
    assert later.seq == 9 and "-P" not in later.receipt_no
    await j.close()

    report = verify_journal(path)
    assert report.lost == ()
    assert report.adopted is not None and (report.adopted.first, report.adopted.last) == (1, 5)
    assert (report.first_seq, report.last_seq, report.entries) == (1, 9, 4)
    j = await new_journal(path)  # adopted once: not pending after a restart
    assert not j.adoption_pending
    await j.close()


async def test_no_history_at_the_store_keeps_the_seqs(tmp_path: Path) -> None:
    j = await new_journal(tmp_path / "j.db")
    first = await j.commit(cash_sale())
    j.resolve_adoption(0)
    await until(lambda: not j.adoption_pending, "resolved", ADOPTED_S)
    assert j.last_seq == 1
    assert j.gaps()["count"] == 0
    nxt = await j.commit(cash_sale())
    assert nxt.seq == 2 and "-P" not in nxt.receipt_no and "-P" in first.receipt_no
    await j.close()


async def test_a_pending_adoption_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await new_journal(path)
    await j.commit(cash_sale())
    await j.close()
    j = await Journal.open(path, store_id="S1", terminal_id="T1")
    assert j.adoption_pending  # the journal says so, not the caller
    j.resolve_adoption(2)
    await until(lambda: j.last_seq == 4, "renumbered after a restart", ADOPTED_S)
    await j.close()


async def test_seqs_an_adoption_declared_are_not_offered_for_a_resend(tmp_path: Path) -> None:
    """A store that lost its database asks for everything; the seqs this journal took over
    from the store (or lost) were never in it: it must say so, not send nothing silently."""
    j = await new_journal(tmp_path / "j.db")
    assert await j.retained_from() == 1
    j.resolve_adoption(5)
    await until(lambda: not j.adoption_pending, "adopted", ADOPTED_S)
    assert await j.retained_from() == 6  # 6 is the adoption entry itself, which it holds
    await j.close()


async def test_a_journal_lost_beside_its_seq_mark_is_not_adopted(tmp_path: Path) -> None:
    """The seq mark knows this terminal's seqs: the new journal goes on after them (a gap),
    with final receipt numbers, instead of asking the store to adopt it."""
    path = tmp_path / "j.db"
    j = await new_journal(path)
    j.resolve_adoption(0)
    await until(lambda: not j.adoption_pending, "resolved", ADOPTED_S)
    for _ in range(3):
        await j.commit(cash_sale())
    await j.close()
    path.unlink()  # the journal lost, its seq mark left
    j = await new_journal(path)
    assert not j.adoption_pending
    after = await j.commit(cash_sale())
    assert (after.seq, after.receipt_no) == (5, "S1-T1-000005")  # 4: the gap entry
    await j.close()


async def test_wait_adopted_returns_once_the_store_answered(tmp_path: Path) -> None:
    j = await new_journal(tmp_path / "j.db")
    waiting = asyncio.create_task(j.wait_adopted())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # pending: the first sale must wait for the store's answer
    j.resolve_adoption(0)
    async with asyncio.timeout(5):
        await waiting
    await j.close()
    j = await Journal.open(tmp_path / "j.db", store_id="S1", terminal_id="T1")
    async with asyncio.timeout(1):
        await j.wait_adopted()  # resolved before: at once
    await j.close()


async def test_a_journal_with_no_adoption_pending_ignores_the_stores_seqs(tmp_path: Path) -> None:
    """A retained ack reaches every journal: only a pending one is renumbered after it."""
    j = await Journal.open(tmp_path / "j.db", store_id="S1", terminal_id="T1")
    first = await j.commit(cash_sale())
    j.resolve_adoption(5)
    second = await j.commit(cash_sale())  # the writer saw the answer before this group
    assert (first.seq, second.seq, second.receipt_no) == (1, 2, "S1-T1-000002")
    entries = await j.unacked(0, 10)
    assert [e.receipt_no for e in entries] == ["S1-T1-000001", "S1-T1-000002"]
    await j.close()


async def test_more_provisional_entries_than_one_insert_holds_are_all_renumbered(
    tmp_path: Path,
) -> None:
    """Renumbered entries are written back MAX_GROUP rows per statement: 300 take two."""
    path = tmp_path / "j.db"
    j = await new_journal(path)
    await asyncio.gather(*(j.commit(cash_sale()) for _ in range(300)))
    with capture_logs() as logs:
        j.resolve_adoption(5)
        await until(lambda: any(e["event"] == "journal_adopted" for e in logs), "", ADOPTED_S)
    assert j.last_seq == 306
    assert read_mark(path) == (306, (await j.unacked(305, 1))[0].hash)
    assert j.gaps()["count"] == 1
    first = (await j.unacked(0, 1))[0]
    assert first.seq == 6 and j.stats().oldest_pending_created_at == first.created_at
    assert first.receipt_no.startswith("S1-T1-000006")  # the adoption entry, numbered as its seq
    await j.close()
    report = verify_journal(path)
    assert (report.first_seq, report.last_seq, report.entries) == (1, 306, 301)


async def test_an_adoption_that_fails_stays_pending_and_is_tried_again(tmp_path: Path) -> None:
    """A statement of the renumbering refused (a trigger here, a full disk in life): nothing
    changes, no transaction stays open, and the store's next answer adopts the journal."""
    path = tmp_path / "j.db"
    j = await new_journal(path)
    await j.commit(cash_sale())
    refuse = "SELECT RAISE(ABORT, 'refused')"
    await j.execute(f"CREATE TRIGGER refuse BEFORE DELETE ON entries BEGIN {refuse}; END")
    with capture_logs() as logs:
        j.resolve_adoption(5)
        await until(lambda: any(e["event"] == "journal_adoption_failed" for e in logs), "")
    assert j.adoption_pending and j.last_seq == 1
    assert not j._db.in_transaction
    await j.execute("DROP TRIGGER refuse")
    j.resolve_adoption(7)  # asked again: the first answer is the one tried again
    await until(lambda: j.last_seq == 7, "adopted after the store's 5 seqs", ADOPTED_S)
    assert not j.adoption_pending
    await j.close()
    assert verify_journal(path).last_seq == 7


async def test_a_damaged_provisional_entry_is_not_renumbered(tmp_path: Path) -> None:
    """Renumbering would hash damaged bytes anew: the journal goes on after the store's seqs
    with a gap instead, its own entries keep their seqs."""
    path = tmp_path / "j.db"
    j = await new_journal(path)
    for _ in range(3):
        await j.commit(cash_sale())
    await j.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE entries SET sale = substr(sale, 1, 20) WHERE seq = 2")
    j = await new_journal(path)
    with capture_logs() as logs:
        j.resolve_adoption(5)
        await until(lambda: j.last_seq == 6, "the gap after the store's seqs", ADOPTED_S)
    assert [e["event"] for e in logs if e["event"].startswith("journal_adopt")] == [
        "journal_adoption_refused"
    ]
    assert not j.adoption_pending and j.gaps()["count"] == 1
    assert [e.seq for e in await j.unacked(0, 10)] == [1, 2, 3, 6]
    await j.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT state, store_upto FROM adoption").fetchall() == [("none", 5)]


async def test_a_store_holding_one_seq_adopts_the_journal_after_it(tmp_path: Path) -> None:
    j = await new_journal(tmp_path / "j.db")
    await j.commit(cash_sale())
    forwarder_waiting = asyncio.create_task(j.wait_committed(1))
    with capture_logs() as logs:
        j.resolve_adoption(1)
        await until(lambda: any(e["event"] == "journal_adopted" for e in logs), "", ADOPTED_S)
    assert j.last_seq == 3  # 2: the adoption entry, 3: the sale
    async with asyncio.timeout(ADOPTED_S):
        await forwarder_waiting  # the renumbered entries are new to it: woken
    await j.close()


async def test_a_gap_declared_before_the_adoption_is_renumbered_with_its_entry(
    tmp_path: Path,
) -> None:
    j = await new_journal(tmp_path / "j.db")
    await j.commit(cash_sale())
    assert j.skip_past(3, "a lost tail, for the test")
    await j.commit(cash_sale())  # 4: the gap entry, 5: the sale
    with capture_logs() as logs:
        j.resolve_adoption(5)
        await until(lambda: any(e["event"] == "journal_adopted" for e in logs), "", ADOPTED_S)
    entries = {e.seq for e in await j.unacked(0, 10)}
    assert entries == {6, 7, 8, 9}
    assert {gap["seq"] for gap in j.gaps()["recent"]} <= entries  # none left at its old seq
    await j.close()


async def test_a_live_ack_while_adopting_only_tells_the_stores_seqs(tmp_path: Path) -> None:
    """Not retained, but the journal is still provisional: the ack renumbers it, and neither
    acknowledges provisional entries nor declares them lost behind the store (the one gap
    is the adoption's own: seqs 1..5 are the store's)."""
    j = await new_journal(tmp_path / "j.db")
    for _ in range(2):
        await j.commit(cash_sale())
    await bare_forwarder(j).handle_ack(ACK, b'{"v":1,"upto":5}')
    await until(lambda: not j.adoption_pending and j.stats().pending == 3, "adopted")
    assert (j.last_seq, j.stats().acked_upto) == (8, 0)
    gaps = j.gaps()
    assert gaps["count"] == 1 and gaps["recent"][0]["reason"].startswith("adopted")
    await j.close()


async def test_whoever_waited_for_the_adoption_sees_the_adopted_journal(tmp_path: Path) -> None:
    """wait_adopted() returns once the head, the gaps and the outbox are the adopted ones:
    a first sale or a status read in between never sees the provisional seqs."""
    j = await new_journal(tmp_path / "j.db")
    for _ in range(2):
        await j.commit(cash_sale())
    seen: list[tuple[int, int, int]] = []

    async def first_in_line() -> None:
        await j.wait_adopted()
        seen.append((j.last_seq, j.stats().pending, j.gaps()["count"]))

    waiter = asyncio.create_task(first_in_line())
    j.resolve_adoption(5)
    async with asyncio.timeout(ADOPTED_S):
        await waiter
    assert seen == [(8, 3, 1)]  # 6: the adoption's gap entry, 7 and 8: the two sales
    await j.close()


async def test_the_adopted_head_and_the_end_of_pending_are_seen_together(tmp_path: Path) -> None:
    """A reader between two steps of the event loop never sees the adopted seqs while the
    journal still says its adoption is pending (status would show a head it does not have)."""
    j = await new_journal(tmp_path / "j.db")
    await j.commit(cash_sale())
    seen: set[tuple[int, bool, int]] = set()
    j.resolve_adoption(5)
    async with asyncio.timeout(ADOPTED_S):
        while j.adoption_pending or j.last_seq == 1:
            seen.add((j.last_seq, j.adoption_pending, j.gaps()["count"]))
            await asyncio.sleep(0)
    seen.add((j.last_seq, j.adoption_pending, j.gaps()["count"]))
    assert seen == {(1, True, 0), (7, False, 1)}  # 6: the adoption's gap entry, 7: the sale
    await j.close()

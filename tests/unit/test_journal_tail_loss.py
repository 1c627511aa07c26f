"""A journal behind what it wrote (its seq mark) or behind the store never reuses a seq.

Issue 10 item 2, DESIGN invariant 11: the loss is declared with a journal_gap entry naming the
seqs, reported (log, status, verify, event), and selling goes on after them.
"""

from __future__ import annotations

import os
from pathlib import Path

from structlog.testing import capture_logs

from edged.chain import entry_bytes, entry_hash
from edged.entrykinds import JournalGap, special_of
from edged.events import EventHub
from edged.journal import Journal
from edged.journal.backup import backup_journal
from edged.journal.seqmark import mark_path, read_mark
from edged.journal.verify import LostSeqs, verify_journal
from tests.support.forwarding import bare_forwarder
from tests.support.sales import cash_sale
from tests.support.waiting import until


async def open_journal(path: Path) -> Journal:
    return await Journal.open(path, store_id="S1", terminal_id="T1")


def restore(copy: Path, path: Path) -> None:
    """Put a backup copy in place of the journal, as an admin restoring it would."""
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(copy, path)


async def test_the_seq_mark_follows_every_commit(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    assert read_mark(path) == (0, bytes(32))
    for _ in range(3):
        result = await j.commit(cash_sale())
    assert read_mark(path) == (3, bytes.fromhex(result.hash))
    assert oct(mark_path(path).stat().st_mode & 0o777) == "0o640"
    await j.close()


async def test_a_journal_restored_from_a_copy_declares_the_seqs_it_lost(tmp_path: Path) -> None:
    path, copy = tmp_path / "j.db", tmp_path / "copy.db"
    j = await open_journal(path)
    for _ in range(5):
        await j.commit(cash_sale())
    backup_journal(path, copy)
    for _ in range(3):  # seqs 6..8: only the seq mark remembers them after the restore
        await j.commit(cash_sale())
    await j.close()
    restore(copy, path)

    with capture_logs() as logs:
        j = await open_journal(path)
        await until(lambda: j.last_seq == 9, "the gap entry written at start", timeout_s=5)
    lost = [e for e in logs if e["event"] == "journal_tail_lost"]
    assert [(e["log_level"], e["missing_from"], e["missing_to"]) for e in lost] == [("error", 6, 8)]
    assert (await j.commit(cash_sale())).seq == 10  # selling goes on after the gap
    assert j.stats().pending == 7  # 5 sales, the gap entry and the new sale: no phantom seqs
    (gap,) = j.gaps()["recent"]
    assert (gap["seq"], gap["from"], gap["to"], gap["store_knows"]) == (9, 6, 8, False)

    entry = (await j.unacked(8, 1))[0]
    assert special_of(entry.sale_json) == JournalGap(6, 8, gap["reason"])
    body = entry_bytes(9, entry.id, entry.receipt_no, entry.created_at, entry.sale_json)
    assert entry_hash(entry.prev_hash, body) == entry.hash  # an ordinary link of the chain
    await j.close()

    report = verify_journal(path)
    assert (report.last_seq, report.entries) == (10, 7)
    assert [(lost.first, lost.last, lost.gap_seq) for lost in report.lost] == [(6, 8, 9)]

    with capture_logs() as logs:  # declared once: the next start finds nothing to declare
        j = await open_journal(path)
        assert j.last_seq == 10
        await j.close()
    assert not [e for e in logs if e["event"] == "journal_tail_lost"]


async def test_verify_names_a_lost_tail_not_declared_yet(tmp_path: Path) -> None:
    path, copy = tmp_path / "j.db", tmp_path / "copy.db"
    j = await open_journal(path)
    await j.commit(cash_sale())
    backup_journal(path, copy)
    await j.commit(cash_sale())
    await j.commit(cash_sale())
    await j.close()
    restore(copy, path)
    (lost,) = verify_journal(path).lost
    assert (lost.first, lost.last, lost.gap_seq) == (2, 3, None)
    assert "seqs 2..3 lost" in lost.describe()
    assert isinstance(lost, LostSeqs)


async def test_a_journal_behind_the_store_continues_past_the_stores_last_seq(
    tmp_path: Path,
) -> None:
    """A replaced or restored journal learns the store's high-water mark from the retained ack
    the moment it subscribes; a retained ack acknowledges nothing itself."""
    j = await open_journal(tmp_path / "j.db")
    await j.commit(cash_sale())
    await j.commit(cash_sale())
    events = EventHub()
    seen = events.subscribe(("journal",), maxsize=8)
    fwd = bare_forwarder(j, events)
    retained = b'{"v":1,"upto":9,"last_seq":9,"last_hash":"' + b"ab" * 32 + b'"}'
    with capture_logs() as logs:
        await fwd.handle_ack("edged/v1/S1/T1/ack", retained, retained=True)
        await until(lambda: j.last_seq == 10, "the gap after the store's seqs", timeout_s=5)
    assert j.stats().acked_upto == 0  # the retained ack said nothing about seqs 1..2 as sent
    (gap,) = j.gaps()["recent"]
    assert (gap["seq"], gap["from"], gap["to"]) == (10, 3, 9)
    assert [e["log_level"] for e in logs if e["event"] == "journal_tail_lost"] == ["error"]
    assert [e["log_level"] for e in logs if e["event"] == "journal_seqs_may_collide"] == ["warning"]
    event = await anext(aiter(seen))
    seen.close()
    assert (event.type, event.data) == (
        "journal",
        {"kind": "behind_store", "missing_from": 3, "missing_to": 9, "last_seq": 2},
    )
    assert (await j.commit(cash_sale())).seq == 11
    await fwd.handle_ack("edged/v1/S1/T1/ack", b'{"v":1,"upto":11}')
    assert j.stats().acked_upto == 11
    assert j.stats().pending == 0
    await j.close()


async def test_seqs_the_store_holds_past_a_gap_are_reported_not_jumped(tmp_path: Path) -> None:
    """Until entries are signed, a seq past a gap at the store may be a forgery: one entry
    at seq 2**53 - 1 must not end this terminal's seqs."""
    j = await open_journal(tmp_path / "j.db")
    await j.commit(cash_sale())
    fwd = bare_forwarder(j)
    forged = b'{"v":1,"upto":1,"last_seq":9007199254740991,"last_hash":"' + b"ab" * 32 + b'"}'
    with capture_logs() as logs:
        for _ in range(2):
            await fwd.handle_ack("edged/v1/S1/T1/ack", forged)
    assert [e["log_level"] for e in logs if e["event"] == "store_holds_seqs_past_a_gap"] == [
        "warning"
    ]
    assert j.stats().acked_upto == 1
    assert (await j.commit(cash_sale())).seq == 2
    assert j.gaps()["count"] == 0
    await j.close()


async def test_the_stores_clock_is_kept_with_the_ack(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    await j.commit(cash_sale())
    fwd = bare_forwarder(j)
    await fwd.handle_ack("edged/v1/S1/T1/ack", b'{"v":1,"upto":1,"at":"2026-12-06T10:00:00.000Z"}')
    assert j.last_ack_store_at == "2026-12-06T10:00:00.000Z"
    assert fwd.store_clock is not None
    assert fwd.store_clock.offset_s() > 0  # this clock is later than 10:00 that day
    await j.close()
    j = await open_journal(path)
    assert j.last_ack_store_at == "2026-12-06T10:00:00.000Z"
    await j.close()


async def test_a_seq_mark_that_cannot_be_written_never_stops_selling(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    mark_path(path).mkdir()  # not a file: it can be neither read nor written
    with capture_logs() as logs:
        j = await open_journal(path)
        assert (await j.commit(cash_sale())).seq == 1
        await j.close()
    assert [e["log_level"] for e in logs if e["event"] == "journal_seq_mark_failed"] == ["error"]


async def test_a_seq_mark_failing_after_open_is_logged_once_per_spell(tmp_path: Path) -> None:
    """The mark's file descriptor turned read-only under it (a write error no disk gives on
    demand): sales go on, the failure is logged when it starts, and again only after the mark
    was written once more."""
    path = tmp_path / "j.db"
    await (await open_journal(path)).close()
    j = await open_journal(path)  # the mark matches: not written at this open
    assert j._seq_mark is not None
    fd = j._seq_mark._fd

    def swap_fd(flags: int, target: str) -> None:
        other = os.open(target, flags)
        os.dup2(other, fd)
        os.close(other)

    with capture_logs() as logs:
        swap_fd(os.O_RDONLY, os.devnull)
        assert [(await j.commit(cash_sale())).seq for _ in range(2)] == [1, 2]
        assert read_mark(path) == (0, bytes(32))
        swap_fd(os.O_WRONLY, str(mark_path(path)))
        third = await j.commit(cash_sale())
        assert read_mark(path) == (3, bytes.fromhex(third.hash))
        swap_fd(os.O_RDONLY, os.devnull)
        assert (await j.commit(cash_sale())).seq == 4
    failures = [e for e in logs if e["event"] == "journal_seq_mark_failed"]
    assert [(e["log_level"], e["seq"]) for e in failures] == [("error", 1), ("error", 4)]
    await j.close()


async def test_declared_gaps_are_known_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    await j.commit(cash_sale())
    assert j.skip_past(4, "a lost tail, for the test")
    assert (await j.commit(cash_sale())).seq == 6  # 2-4 lost, 5: the gap entry
    await j.close()
    j = await open_journal(path)
    gaps = j.gaps()
    assert gaps["count"] == 1 and len(gaps["recent"]) == 1
    assert j.stats().pending == 3  # seqs 1, 5 and 6: the lost ones are not pending
    await j.close()


async def test_the_oldest_pending_sale_is_found_past_seqs_declared_lost(tmp_path: Path) -> None:
    """The first seq after the ack may be one the journal never held (a declared gap, an
    adoption): the outbox's age is still that of its oldest pending entry, never None while
    sales wait (the backlog alarm would stay silent)."""
    path = tmp_path / "j.db"
    j = await open_journal(path)
    for _ in range(2):
        await j.commit(cash_sale())
    assert j.skip_past(5, "a lost tail, for the test")
    await j.commit(cash_sale())  # 6: the gap entry, 7: the sale
    gap_entry = (await j.unacked(5, 1))[0]
    assert (gap_entry.seq, gap_entry.receipt_no) == (6, "S1-T1-000006")
    await j.mark_acked(2)
    assert j.stats().pending == 2
    assert j.stats().oldest_pending_created_at == gap_entry.created_at
    await j.mark_acked(5)  # the store acknowledged the lost seqs too: the gap entry waits
    assert (j.stats().pending, j.stats().oldest_pending_created_at) == (2, gap_entry.created_at)
    await j.close()
    j = await open_journal(path)
    assert (j.stats().pending, j.stats().oldest_pending_created_at) == (2, gap_entry.created_at)
    await j.close()

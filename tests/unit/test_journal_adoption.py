"""A new journal never starts at seq 1 over a store's history for its terminal id (issue 11).

Its entries stay provisional (receipt numbers marked -P{token}, nothing sent) until the store's
retained ack says which seqs it holds; then they are renumbered after them.
"""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from edged.journal import Journal
from edged.journal.verify import verify_journal
from tests.support.forwarding import bare_forwarder
from tests.support.sales import cash_sale
from tests.support.waiting import until

ACK = "edged/v1/S1/T1/ack"


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
        await until(lambda: not j.adoption_pending, "the adoption written")
        # said once the head is reloaded, a step after adoption_pending turned False
        await until(lambda: any(e["event"] == "journal_adopted" for e in logs), "said")
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
    await until(lambda: not j.adoption_pending, "resolved")
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
    await until(lambda: j.last_seq == 4, "renumbered after a restart")
    await j.close()


async def test_seqs_an_adoption_declared_are_not_offered_for_a_resend(tmp_path: Path) -> None:
    """A store that lost its database asks for everything; the seqs this journal took over
    from the store (or lost) were never in it: it must say so, not send nothing silently."""
    j = await new_journal(tmp_path / "j.db")
    assert await j.retained_from() == 1
    j.resolve_adoption(5)
    await until(lambda: not j.adoption_pending, "adopted")
    assert await j.retained_from() == 6  # 6 is the adoption entry itself, which it holds
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

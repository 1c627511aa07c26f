"""A till's journal loses its tail, and later the store loses its database: the rebuilt store
gets back every seq the journal still holds and names exactly the seqs it lost; nothing is
silently lost, duplicated or stuck (README "Rebuilding from the terminals")."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any

import pytest

from edged.collector import collector_report
from edged.entrykinds import JournalGap
from tests.fault.chaos import CHAOS_DISK_KIB, DRAIN_TIMEOUT_S
from tests.fault.rig import Seller, Store
from tests.fault.storage import damage_wal
from tests.fault.trust import lose_collector_db
from tests.support.checker import journal_gaps
from tests.support.waiting import until

pytestmark = pytest.mark.fault

SALES = 60  # before the journal's loss, between it and the store's, and after that
TRIES = 5  # truncations of the -wal until one cuts sales off


def _terminal(store: Store) -> dict[str, Any] | None:
    """The collector's report on the till (None while its new database knows nothing of it)."""
    terminals = collector_report(store.collector.db)["terminals"]
    return terminals[0] if terminals else None


async def _sell(seller: Seller, what: str) -> None:
    count = len(seller.committed)
    await until(lambda: len(seller.committed) >= count + SALES, what)


async def _lose_both(store: Store, seller: Seller) -> tuple[str, JournalGap]:
    """The journal loses its tail (a truncated -wal), then, acked past that, the store its
    database; returns the journal's step and its declared gap once the store has asked."""
    rng = random.Random(10)
    for _ in range(TRIES):  # a cut past the -wal's live frames (after a checkpoint) loses none
        await _sell(seller, "sales before the journal's loss")
        step = await damage_wal(store, rng, "truncate")
        with contextlib.suppress(AssertionError):
            await store.wait("a gap declared", lambda s: s["journal"]["gaps"]["count"], 5.0)
            break
    (gap,) = journal_gaps(store.till.journal)
    assert gap.first > 1, f"{step}: the journal kept none of its sales"
    await _sell(seller, "sales after the journal's loss")
    await store.wait("acked past the gap", lambda s: s["outbox"]["acked_upto"] > gap.to + 1)
    problems: list[str] = []
    await lose_collector_db(store, 0.5, problems)
    assert not problems, problems

    def answered() -> bool:
        report = _terminal(store)
        return bool(report and report["rebuild"] and report["rebuild"]["answered_at"])

    await until(answered, "the till answered the rebuilt store's resend request")
    await _sell(seller, "sales after the store's loss")
    return step, gap


async def test_store_rebuilt_after_a_journal_lost_its_tail_names_exactly_the_lost_seqs(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path, journal_disk_kib=CHAOS_DISK_KIB) as store:
        await store.wait("online", lambda s: s["link"]["state"] == "online")
        seller = Seller(store.till.socket)
        seller.start()
        try:
            step, gap = await _lose_both(store, seller)
        finally:
            await seller.stop()
        report = _terminal(store)
        assert report is not None
        # No seq the journal still holds may become a permanent gap for an admin to accept.
        assert report["permanent_gaps"] == [], report
        status = await store.drained(timeout_s=DRAIN_TIMEOUT_S)
        assert status["outbox"]["acked_upto"] == status["journal"]["last_seq"], status
        assert status["link"]["store_permanent_gap"] is None, status

        report = _terminal(store)
        assert report is not None
        # Exactly the seqs the journal lost, declared by its own journal_gap entry.
        assert report["lost"] == [[gap.first, gap.to]], report
        assert report["gaps"] == [] and report["chain_broken_at"] is None, report
        assert report["rebuild"]["remaining"] == 0, report

        result = store.reconcile(seller)
        assert result.ok, f"{step}: {result}"
        lost = [c.seq for c in seller.committed if gap.first <= c.seq <= gap.to]
        assert sorted(result.reported_lost) == lost, result
        assert result.stored_once == result.committed - len(lost), result
        consistency = store.consistency()
        assert consistency.ok, f"{step}: journal vs store: {consistency}"

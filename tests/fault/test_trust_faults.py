"""The trust faults against a whole store while a till sells: the store's database lost and
rebuilt from the terminal, a till replaced by one with an empty journal, a rogue client
forging entries and acks. Nothing lost, duplicated, changed or forged; nothing stuck."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.fault.rig import Seller, Store
from tests.fault.test_storage_faults import sell_through
from tests.fault.trust import lose_collector_db, replace_till, rogue_forger
from tests.support.checker import journal_gaps

pytestmark = pytest.mark.fault


async def test_collector_database_lost_mid_drain_is_rebuilt_from_the_till(
    tmp_path: Path,
) -> None:
    async def fault(store: Store, seller: Seller, problems: list[str]) -> str:
        return await lose_collector_db(store, 0.5, problems)

    result = await sell_through(tmp_path, fault, unsent=40)  # a backlog when the store dies
    assert not result.reported_lost, result
    assert result.stored_once == result.committed


async def test_replaced_till_adopts_the_stores_seqs_and_its_old_sales_count_as_stored(
    tmp_path: Path,
) -> None:
    """The old journal's sales are checked against the store (Store.consistency) at the end."""

    async def fault(store: Store, seller: Seller, problems: list[str]) -> str:
        step = await replace_till(store, seller, problems)
        (old,) = store.retired_journals
        with closing(sqlite3.connect(f"file:{old}?mode=ro", uri=True)) as conn:
            (old_last,) = conn.execute("SELECT max(seq) FROM entries").fetchone()
        adopted = [gap for gap in journal_gaps(store.till.journal) if gap.adopted]
        assert [(gap.first, gap.to) for gap in adopted] == [(1, old_last)], step
        return step

    result = await sell_through(tmp_path, fault)
    assert not result.reported_lost, result


async def test_rogue_client_stores_no_forgery_and_no_till_acts_on_a_forged_ack(
    tmp_path: Path,
) -> None:
    async def fault(store: Store, seller: Seller, problems: list[str]) -> str:
        return await rogue_forger(store, random.Random(11), 2.0, problems)

    result = await sell_through(tmp_path, fault)
    assert not result.reported_lost, result

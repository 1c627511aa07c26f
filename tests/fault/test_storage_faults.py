"""Storage faults against a whole store, each done for real on the files while a till sells.

Every sale the seller was told was committed must be stored once, or named as lost by the
system itself (a journal_gap entry, a damaged_entry at the store, a refusal overridden with
`journal init --force`); never lost silently, duplicated or changed, and nothing stuck.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.fault.chaos import CHAOS_DISK_KIB, DRAIN_TIMEOUT_S
from tests.fault.rig import Seller, Store
from tests.fault.storage import damage_entry, damage_wal, fill_disk, lose_wal, swap_collector_db
from tests.support.checker import Reconciliation
from tests.support.waiting import until

pytestmark = pytest.mark.fault

BEFORE = 60  # sales committed before the fault
AFTER = 60  # and after it: selling goes on
Fault = Callable[[Store, Seller, list[str]], Awaitable[str]]


async def sell_through(tmp_path: Path, fault: Fault, *, unsent: int = 0) -> Reconciliation:
    """Sell, do `fault` (after `unsent` more sales over a dead link), sell on, drain, check."""
    async with Store(tmp_path, journal_disk_kib=CHAOS_DISK_KIB) as store:
        await store.wait("online", lambda s: s["link"]["state"] == "online")
        seller = Seller(store.till.socket)
        seller.start()
        await until(lambda: len(seller.committed) >= BEFORE, "sales before the fault")
        if unsent:
            await store.proxy.set_mode("blackhole")
            count = len(seller.committed)
            await until(lambda: len(seller.committed) >= count + unsent, "unsent sales")
        problems: list[str] = []
        step = await fault(store, seller, problems)
        await store.proxy.set_mode("pass")
        count = len(seller.committed)
        await until(lambda: len(seller.committed) >= count + AFTER, f"selling after {step}")
        await seller.stop()
        await store.drained(timeout_s=DRAIN_TIMEOUT_S)
        assert not problems, problems
        result = store.reconcile(seller)
        assert result.ok, f"{step}: {result}"
        consistency = store.consistency()
        assert consistency.ok, f"{step}: journal vs store: {consistency}"
        return result


async def test_lost_wal_is_refused_then_init_force_continues_past_the_store(
    tmp_path: Path,
) -> None:
    async def fault(store: Store, seller: Seller, problems: list[str]) -> str:
        step = await lose_wal(store, seller, problems)
        assert store.refusals, step
        return step

    await sell_through(tmp_path, fault)


@pytest.mark.parametrize("how", ["truncate", "flip"])
async def test_damaged_wal_tail_is_reported_as_a_gap_and_selling_goes_on(
    tmp_path: Path, how: str
) -> None:
    async def fault(store: Store, seller: Seller, problems: list[str]) -> str:
        return await damage_wal(store, random.Random(10), how)

    result = await sell_through(tmp_path, fault, unsent=150)
    assert result.reported_lost, "the damage cut nothing off the journal's tail"


async def test_damaged_unsent_entry_is_stored_as_damaged_and_the_stream_goes_on(
    tmp_path: Path,
) -> None:
    damaged: list[str] = []

    async def fault(store: Store, seller: Seller, problems: list[str]) -> str:
        damaged.append(await damage_entry(store, random.Random(10)))
        return damaged[0]

    result = await sell_through(tmp_path, fault)
    assert len(result.reported_lost) == 1, f"{damaged}: {result}"


async def test_full_journal_disk_while_selling_loses_nothing(tmp_path: Path) -> None:
    async def fault(store: Store, seller: Seller, problems: list[str]) -> str:
        retries = seller.retries
        step = await fill_disk(store, 1.0)
        assert seller.retries > retries, "no commit met the full disk"
        return step

    result = await sell_through(tmp_path, fault)
    assert not result.reported_lost, result


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_collector_database_swapped_under_it_exits_and_restored_loses_nothing(
    tmp_path: Path, how: str
) -> None:
    async def fault(store: Store, seller: Seller, problems: list[str]) -> str:
        return await swap_collector_db(store, how, problems)

    result = await sell_through(tmp_path, fault)
    assert not result.reported_lost, result

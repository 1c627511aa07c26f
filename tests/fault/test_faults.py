"""Faults against a whole store on loopback: counts of lost and duplicated sales, never times."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest

from edged.client import ApiClient
from tests.fault.chaos import CHAOS_DISK_KIB, FAULTS, run_schedule
from tests.fault.rig import KEEPALIVE_S, Seller, Store, sale

pytestmark = pytest.mark.fault

# Generous slack over the 2 x keepalive bound: the bound is the product's, the slack the CI's.
DETECTION_SLACK_S = 3.0


async def commit(store: Store, count: int, clients: int = 4) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    async def one(offset: int) -> None:
        async with ApiClient(store.till.socket) as client:
            for n in range(offset, count, clients):
                results.append(await client.call("sale.commit", {"sale": sale(n)}))

    await asyncio.gather(*(one(i) for i in range(clients)))
    return results


def assert_consistent(store: Store, expected: int | None = None) -> None:
    report = store.consistency()
    assert report.ok, str(report)
    assert report.acked_upto == report.journal_entries
    if expected is not None:
        assert report.stored == expected


async def test_end_to_end_every_sale_stored_once(tmp_path: Path) -> None:
    async with Store(tmp_path) as store:
        await commit(store, 400)
        status = await store.drained()
        assert status["outbox"]["acked_upto"] == 400
        assert_consistent(store, 400)


async def test_broker_outage_sales_go_on_and_drain_by_themselves(tmp_path: Path) -> None:
    async with Store(tmp_path) as store:
        await commit(store, 50)
        await store.wait("online", lambda s: s["link"]["state"] == "online")
        await store.drained()
        store.broker.stop()
        results = await commit(store, 150)  # selling never waits for the link
        assert len(results) == 150
        await store.wait(
            "offline within 2 x keepalive",
            lambda s: s["link"]["state"] == "offline",
            timeout_s=2 * KEEPALIVE_S + DETECTION_SLACK_S,
        )
        assert (await store.status())["outbox"]["pending"] == 150
        store.broker.start()  # same port; nobody calls sync.now
        await store.drained()
        assert_consistent(store, 200)


@pytest.mark.parametrize(
    ("mode", "seconds"),
    [("refuse", 0), ("reset", 0), ("blackhole", 0), ("drop_upstream", 0), ("delay", 0.2)],
)
async def test_network_fault_recovers_with_nothing_lost(
    tmp_path: Path, mode: str, seconds: float
) -> None:
    async with Store(tmp_path) as store:
        await store.wait("online", lambda s: s["link"]["state"] == "online")
        seller = Seller(store.till.socket)
        seller.start()
        await asyncio.sleep(0.5)
        await store.proxy.set_mode(mode, seconds=seconds)  # type: ignore[arg-type]
        await asyncio.sleep(3 * KEEPALIVE_S)
        if mode in ("blackhole", "drop_upstream"):
            await store.wait(
                "offline on a half-open link",
                lambda s: s["link"]["state"] == "offline",
                timeout_s=2 * KEEPALIVE_S + DETECTION_SLACK_S,
            )
        await store.proxy.set_mode("pass")
        await asyncio.sleep(0.5)
        await seller.stop()
        await store.drained()
        assert_consistent(store, len(seller.confirmed))


# Batches of 50, not the default 1000: 3000 sales then drain in 60 round trips over the slow
# line, long enough to be caught mid-drain (in 3 batches the drain can end between two polls).
DRAIN_BATCH_MAX = 50


async def test_kill_9_daemon_mid_drain(tmp_path: Path) -> None:
    async with Store(tmp_path, batch_max=DRAIN_BATCH_MAX) as store:
        await store.proxy.set_mode("refuse")
        await commit(store, 3000, clients=8)
        await store.proxy.set_mode("delay", seconds=0.05)  # a slow line: the drain takes a while
        await store.wait(
            "mid-drain", lambda s: 0 < s["outbox"]["acked_upto"] < s["journal"]["last_seq"]
        )
        store.till.kill()
        await store.proxy.set_mode("pass")
        await store.restart_daemon()
        await store.drained()
        assert_consistent(store, 3000)


async def test_kill_9_collector_during_drain(tmp_path: Path) -> None:
    async with Store(tmp_path, batch_max=DRAIN_BATCH_MAX) as store:
        await store.proxy.set_mode("refuse")
        await commit(store, 3000, clients=8)
        await store.proxy.set_mode("delay", seconds=0.02)
        rng = random.Random(7)
        for _ in range(3):
            await store.wait(
                "draining", lambda s: s["outbox"]["acked_upto"] < s["journal"]["last_seq"]
            )
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            store.collector.kill()
            await asyncio.sleep(0.3)
            await store.restart_collector()
        await store.proxy.set_mode("pass")
        await store.drained()
        assert_consistent(store, 3000)


SEEDS = [int(s) for s in os.environ.get("EDGED_CHAOS_SEEDS", "").split(",") if s] or [
    random.SystemRandom().randrange(1 << 30) for _ in range(3)
]


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_fault_schedule(tmp_path: Path, seed: int) -> None:
    """Every fault once, storage faults included, in an order the seed decides.

    Set EDGED_CHAOS_SEEDS=1,2,3 to replay; the seed is in the test id and the output.
    """
    async with Store(tmp_path, journal_disk_kib=CHAOS_DISK_KIB) as store:
        await store.wait("online", lambda s: s["link"]["state"] == "online")
        result = await run_schedule(store, seed, steps=len(FAULTS))
        assert result.ok, (
            f"seed {seed}: {result.reconciliation}; journal vs store: {result.consistency}; "
            f"problems {result.problems}; steps {result.steps}"
        )
        assert result.confirmed > 0

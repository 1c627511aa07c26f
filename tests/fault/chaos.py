"""A randomized fault schedule (one seed, logged) against a whole store, then a full check."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fault.rig import Seller, Store
from tests.support.checker import Consistency

FAULTS = (
    "broker_restart",
    "proxy_refuse",
    "proxy_reset",
    "proxy_blackhole",
    "proxy_drop_upstream",
    "proxy_delay",
    "daemon_kill",
    "collector_kill",
)


@dataclass
class ChaosResult:
    seed: int
    steps: list[str] = field(default_factory=list)
    confirmed: int = 0
    retries: int = 0
    consistency: Consistency | None = None
    missing_confirmed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.consistency and self.consistency.ok and not self.missing_confirmed)


async def _fault(store: Store, name: str, rng: random.Random) -> str:
    hold_s = rng.uniform(0.2, 2.5)
    if name == "broker_restart":
        store.broker.stop()
        await asyncio.sleep(hold_s)
        store.broker.start()
    elif name == "daemon_kill":
        store.till.kill()
        await asyncio.sleep(hold_s / 4)
        await store.restart_daemon()
    elif name == "collector_kill":
        store.collector.kill()
        await asyncio.sleep(hold_s)
        await store.restart_collector()
    else:
        mode = name.removeprefix("proxy_")
        delay_s = rng.uniform(0.02, 0.3)
        await store.proxy.set_mode(mode, seconds=delay_s)  # type: ignore[arg-type]
        await asyncio.sleep(hold_s)
        await store.proxy.set_mode("pass")
    return f"{name} {hold_s:.2f}s"


async def run_schedule(
    store: Store, seed: int, steps: int, log: Callable[[str], None] = print
) -> ChaosResult:
    """Faults one after another while a seller keeps committing; heal; drain; compare."""
    rng = random.Random(seed)
    result = ChaosResult(seed)
    log(f"chaos seed {seed}: {steps} steps")
    seller = Seller(store.till.socket)
    seller.start()
    for _ in range(steps):
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        step = await _fault(store, rng.choice(FAULTS), rng)
        result.steps.append(step)
        log(f"  seed {seed}: {step}")
    await seller.stop()
    await store.drained(timeout_s=90)
    result.confirmed, result.retries = len(seller.confirmed), seller.retries
    result.consistency = store.consistency()
    with sqlite3.connect(f"file:{store.till.journal}?mode=ro", uri=True) as conn:
        journal = dict(conn.execute("SELECT id, seq FROM entries").fetchall())
    result.missing_confirmed = [
        sale_id for sale_id, seq in seller.confirmed.items() if journal.get(sale_id) != seq
    ]
    log(
        f"  seed {seed}: {result.consistency}; confirmed {result.confirmed}, "
        f"retried {result.retries}, missing {len(result.missing_confirmed)}"
    )
    return result

"""A randomized fault schedule (one seed, logged) against a whole store, then a full check.

The faults are dealt from a shuffled deck, so each kind comes once in every len(FAULTS)
steps, in an order the seed decides. The storage faults (tests/fault/storage.py) need the
journal on its own small disk: Store(..., journal_disk_kib=CHAOS_DISK_KIB); the trust faults
(tests/fault/trust.py) lose the store's database, replace the till, and forge.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fault.rig import Seller, Store
from tests.fault.storage import STORAGE_FAULTS, storage_fault
from tests.fault.trust import TRUST_FAULTS, trust_fault
from tests.support.checker import Consistency, Reconciliation

NETWORK_AND_PROCESS_FAULTS = (
    "broker_restart",
    "proxy_refuse",
    "proxy_reset",
    "proxy_blackhole",
    "proxy_drop_upstream",
    "proxy_delay",
    "daemon_kill",
    "collector_kill",
)
FAULTS = NETWORK_AND_PROCESS_FAULTS + STORAGE_FAULTS + TRUST_FAULTS
CHAOS_DISK_KIB = 64 * 1024  # the journal's tmpfs: far more than a schedule sells
DRAIN_TIMEOUT_S = 90.0  # a hang detector: a stream that never drains is stuck


@dataclass
class ChaosResult:
    seed: int
    steps: list[str] = field(default_factory=list)
    confirmed: int = 0
    retries: int = 0
    consistency: Consistency | None = None
    reconciliation: Reconciliation | None = None
    problems: list[str] = field(default_factory=list)  # stuck, not refused, not stopped ...

    @property
    def ok(self) -> bool:
        return bool(
            self.consistency
            and self.consistency.ok
            and self.reconciliation
            and self.reconciliation.ok
            and not self.problems
        )


# After one of these, the till's journal no longer holds every seq the store once had: a store
# that then loses its database asks for them in vain and waits for an admin's `accept-gap`
# (README "Rebuilding from the terminals"), which the schedule does not play.
JOURNAL_LOSSES = frozenset({"wal_lost", "wal_damaged", "till_replaced"})
NEEDS_WHOLE_JOURNAL = "collector_db_lost"


def plan(rng: random.Random, steps: int) -> list[str]:
    """`steps` fault names dealt from a deck of FAULTS, reshuffled whenever it runs out.

    The first deck puts NEEDS_WHOLE_JOURNAL before every JOURNAL_LOSSES fault; later decks
    leave it out (see JOURNAL_LOSSES).
    """
    names: list[str] = []
    while len(names) < steps:
        deck = [name for name in FAULTS if name != NEEDS_WHOLE_JOURNAL or not names]
        rng.shuffle(deck)
        if NEEDS_WHOLE_JOURNAL in deck:
            deck.remove(NEEDS_WHOLE_JOURNAL)
            first_loss = min(i for i, name in enumerate(deck) if name in JOURNAL_LOSSES)
            deck.insert(rng.randint(0, first_loss), NEEDS_WHOLE_JOURNAL)
        names.extend(deck)
    return names[:steps]


async def _fault(
    store: Store, seller: Seller, name: str, rng: random.Random, problems: list[str]
) -> str:
    if name in STORAGE_FAULTS:
        return await storage_fault(store, seller, name, rng, problems)
    if name in TRUST_FAULTS:
        return await trust_fault(store, seller, name, rng, problems)
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
    names = plan(rng, steps)
    result = ChaosResult(seed)
    log(f"chaos seed {seed}: {steps} steps")
    seller = Seller(store.till.socket)
    seller.start()
    for name in names:
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        step = await _fault(store, seller, name, rng, result.problems)
        result.steps.append(step)
        log(f"  seed {seed}: {step}")
    await seller.stop()
    try:
        await store.drained(timeout_s=DRAIN_TIMEOUT_S)
    except AssertionError as exc:
        result.problems.append(f"stuck: {exc}")
    result.confirmed, result.retries = len(seller.confirmed), seller.retries
    result.consistency = store.consistency()
    result.reconciliation = store.reconcile(seller)
    log(
        f"  seed {seed}: {result.reconciliation}; journal vs store: {result.consistency}; "
        f"retried {result.retries}; problems {[p.splitlines()[0] for p in result.problems]}"
    )
    return result

"""Many simulated terminals in one process: the real Journal and Uplink each, no devices.

Each terminal commits cash sales at its share of a chosen rate, remembers what the seller was
told (for the journal-versus-store checker) and when each seq was committed, and notes the time
its acknowledgement arrived: commit-to-ack latency, as a till would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from edged.config import TerminalSection, UplinkSection
from edged.events import EventHub
from edged.journal import Journal
from edged.signing import Signer
from edged.uplink import Uplink
from tests.support.checker import Committed, compare, journal_gaps, read_store, reconcile
from tests.support.sales import cash_sale

ACK_POLL_S = 0.005  # how often acks are looked for: the latency figures' resolution


@dataclass
class SimTerminal:
    """One till: its journal, its uplink, and what it was told."""

    store: str
    terminal: str
    journal: Journal
    uplink: Uplink
    committed: list[Committed] = field(default_factory=list)
    committed_at: dict[int, float] = field(default_factory=dict)  # seq -> monotonic
    acked_seen: int = 0


@dataclass
class FleetCheck:
    """The checker's verdict over every terminal of the fleet."""

    terminals: int = 0
    committed: int = 0
    stored_once: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    problems: list[str] = field(default_factory=list)  # one line per terminal that failed

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched or self.problems)


def uplink_settings(host: str, port: int, **changes: Any) -> UplinkSection:
    """A terminal's [uplink] for a loopback broker, quick to notice faults."""
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "keepalive_s": 2,
        "online_after_s": 0.2,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
        "ack_timeout_s": 3.0,
    }
    settings.update(changes)
    return UplinkSection(**settings)


class Fleet:
    """`terminals` tills of store `store` (ids t0001...), journals under `workdir`.

    async with Fleet(...) as fleet: await fleet.sell(rate, seconds); await fleet.drain(...)
    """

    def __init__(
        self,
        workdir: Path,
        uplink: UplinkSection,
        terminals: int,
        *,
        store: str = "s1",
        first: int = 1,
        seed: int = 0,
    ) -> None:
        self.workdir = workdir
        self.cfg = uplink
        self.ids = [f"t{n:04d}" for n in range(first, first + terminals)]
        self.store = store
        self.rng = random.Random(seed)
        self.members: list[SimTerminal] = []
        self.latencies: list[float] = []  # commit-to-ack, seconds, one per sale
        self._tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for terminal in self.ids:
                await self._start(terminal)
            self._tasks.append(asyncio.create_task(self._watch_acks(), name="fleet acks"))
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _start(self, terminal: str) -> None:
        journal = await Journal.open(
            self.workdir / f"{terminal}.db", store_id=self.store, terminal_id=terminal
        )
        section = TerminalSection(store_id=self.store, terminal_id=terminal)
        uplink = Uplink(self.cfg, section, journal, EventHub(), "fleet", signer=Signer.generate())
        self.members.append(SimTerminal(self.store, terminal, journal, uplink))
        self._tasks.append(asyncio.create_task(uplink.run(), name=f"uplink {terminal}"))

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for member in self.members:
            await member.journal.close()

    async def _watch_acks(self) -> None:
        while True:
            await asyncio.sleep(ACK_POLL_S)
            now = time.monotonic()
            for member in self.members:
                acked = member.journal.stats().acked_upto
                for seq in range(member.acked_seen + 1, acked + 1):
                    at = member.committed_at.pop(seq, None)
                    if at is not None:
                        self.latencies.append(now - at)
                member.acked_seen = max(member.acked_seen, acked)

    async def sell(self, rate_per_s: float, seconds: float) -> int:
        """Commit sales for `seconds`, `rate_per_s` in all (spread over the tills, each at its
        own jittered pace); returns how many were committed."""
        per_terminal_s = len(self.members) / rate_per_s
        deadline = time.monotonic() + seconds
        before = self.committed

        async def till(member: SimTerminal) -> None:
            await asyncio.sleep(self.rng.uniform(0, per_terminal_s))
            next_at = time.monotonic()
            while next_at < deadline:
                sale = cash_sale(total=self.rng.randint(100, 9999))
                result = await member.journal.commit(sale)
                member.committed.append(Committed(sale["id"], result.seq, sale))
                member.committed_at[result.seq] = time.monotonic()
                next_at += per_terminal_s * self.rng.uniform(0.5, 1.5)
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        async with asyncio.TaskGroup() as tg:
            for member in self.members:
                tg.create_task(till(member), name=f"till {member.terminal}")
        return self.committed - before

    @property
    def committed(self) -> int:
        return sum(len(m.committed) for m in self.members)

    @property
    def pending(self) -> int:
        return sum(m.journal.stats().pending for m in self.members)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every till has every sale acknowledged; False if `timeout_s` passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.pending:
                    await asyncio.sleep(0.05)
                return True
        return False

    def check(self, collector_db: str) -> FleetCheck:
        """Every till's journal against the store, and every sale the seller was told of."""
        result = FleetCheck(terminals=len(self.members))
        for member in self.members:
            journal = str(member.journal.path)
            view = read_store(collector_db, member.store, member.terminal)
            sales = reconcile(member.committed, view, journal_gaps(journal), [])
            result.committed += sales.committed
            result.stored_once += sales.stored_once
            result.lost += len(sales.lost)
            result.duplicated += len(sales.duplicated)
            result.mismatched += len(sales.mismatched)
            entries = compare(journal, collector_db, member.store, member.terminal)
            if not (sales.ok and entries.ok):
                result.problems.append(f"{member.terminal}: {sales}; {entries}")
        return result

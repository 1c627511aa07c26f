"""A whole store on loopback: mosquitto, the collector, a fault proxy and one terminal daemon.

The terminal reaches the broker only through the proxy, so a test can refuse, reset,
blackhole or delay its link; broker, collector and daemon are real processes it can SIGKILL.
With `journal_disk_kib`, the journal lives on a small tmpfs of its own that a test can fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from edged.api.codes import JOURNAL_ERROR, JOURNAL_FULL, SHUTTING_DOWN
from edged.client import ApiClient, ApiError
from tests.support.checker import (
    Committed,
    Consistency,
    Reconciliation,
    Refusal,
    compare,
    journal_gaps,
    read_store,
    reconcile,
)
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.faultproxy import FaultProxy
from tests.support.mosquitto import Mosquitto
from tests.support.tmpfs import mount_tmpfs, unmount

KEEPALIVE_S = 1
RETRY_PAUSE_S = 0.05
# What a till does on these answers: show them, and ring the same sale (same id) again.
RETRIED_CODES = frozenset({SHUTTING_DOWN, JOURNAL_FULL, JOURNAL_ERROR})


def sale(n: int) -> dict[str, Any]:
    total = 100 + n % 900
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": total,
        "lines": [{"sku": f"SKU-{n % 37}", "qty": 1 + n % 3, "amount": total}],
        "payments": [{"method": "cash", "amount": total}],
        "meta": {"n": n},
    }


class Seller:
    """A POS UI that keeps ringing sales; an unanswered commit is retried with the same id."""

    def __init__(self, socket_path: str, pause_s: float = 0.005) -> None:
        self.socket_path = socket_path
        self.pause_s = pause_s
        self.confirmed: dict[str, int] = {}  # sale id -> seq, for every commit that returned
        self.committed: list[Committed] = []  # the same, with the sale and its journal's epoch
        self.epoch = 0  # the journal's: one more after each `edgectl journal init --force`
        self.retries = 0
        self._turn = asyncio.Lock()  # held for each sale: `paused()` waits for the one ringing
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _commit(self, body: dict[str, Any]) -> int:
        while True:
            try:
                async with ApiClient(self.socket_path) as client:
                    result = await client.call("sale.commit", {"sale": body})
                    return int(result["seq"])
            except (ConnectionError, OSError, TimeoutError):
                pass
            except ApiError as exc:
                if exc.code not in RETRIED_CODES:
                    raise
            self.retries += 1
            await asyncio.sleep(RETRY_PAUSE_S)

    async def _run(self) -> None:
        for n in itertools.count():
            async with self._turn:
                if self._stop.is_set():
                    return
                body = sale(n)
                seq = await self._commit(body)
                self.confirmed[body["id"]] = seq
                self.committed.append(Committed(body["id"], seq, body, self.epoch))
            await asyncio.sleep(self.pause_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="seller")

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No sale is rung inside this block (the one being rung is finished first)."""
        async with self._turn:
            yield

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


class Store:
    """Start with `async with Store(tmp_path) as store:`; everything is stopped on exit."""

    def __init__(self, workdir: Path, journal_disk_kib: int | None = None, **uplink: Any) -> None:
        self.workdir = workdir
        self.disk = workdir / "disk" if journal_disk_kib else None
        self.journal_disk_kib = journal_disk_kib
        self.refusals: list[Refusal] = []  # lost -wal refusals overridden with init --force
        self.retired_journals: list[str] = []  # of replaced tills: their sales are at the store
        self.broker = Mosquitto(workdir)
        self.proxy = FaultProxy(self.broker.port)
        self.collector = CollectorProcess(workdir / "store", uplink_section(self.broker.port))
        self.uplink_settings = {
            "keepalive_s": KEEPALIVE_S,
            "online_after_s": 0.5,
            "ack_timeout_s": 2,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 1,
            **uplink,
        }
        self.daemon: DaemonProcess | None = None

    async def __aenter__(self) -> Self:
        if self.disk is not None and self.journal_disk_kib:
            mount_tmpfs(self.disk, self.journal_disk_kib)
        self.broker.start()
        await self.proxy.__aenter__()
        await asyncio.to_thread(self.collector.start)
        uplink = uplink_section(self.proxy.port, **self.uplink_settings)
        journal = self.disk / "journal.db" if self.disk is not None else None
        self.daemon = DaemonProcess(self.workdir / "till", uplink=uplink, journal=journal)
        await asyncio.to_thread(self.daemon.start)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for process in (self.daemon, self.collector):
            if process is not None and process.running:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(process.terminate)
        await self.proxy.__aexit__(et, e, tb)
        self.broker.stop()
        if self.disk is not None and self.disk.is_mount():
            unmount(self.disk)

    @property
    def till(self) -> DaemonProcess:
        assert self.daemon is not None
        return self.daemon

    async def status(self) -> dict[str, Any]:
        async with ApiClient(self.till.socket) as client:
            result: dict[str, Any] = await client.call("status")
            return result

    async def wait(self, what: str, check: Any, timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll the daemon's status until `check(status)` holds."""
        status: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    with contextlib.suppress(ConnectionError, OSError):
                        status = await self.status()
                        if check(status):
                            return status
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(
                f"not {what} within {timeout_s}s; last status {status}\n"
                f"--- edged ---\n{self.till.log_tail()}\n"
                f"--- collector ---\n{self.collector.log_tail()}"
            ) from None

    async def drained(self, timeout_s: float = 60.0) -> dict[str, Any]:
        return await self.wait(
            "drained",
            lambda s: s["outbox"]["pending"] == 0 and s["journal"]["last_seq"] > 0,
            timeout_s,
        )

    def consistency(self) -> Consistency:
        """The journal against the store; a replaced till's journal must be in the store too."""
        ids = (self.collector.db, self.till.store, self.till.terminal)
        report = compare(self.till.journal, *ids)
        for journal in self.retired_journals:
            old = compare(journal, *ids)
            report.lost = sorted({*report.lost, *old.lost})
            report.mismatched = sorted({*report.mismatched, *old.mismatched})
        return report

    def reconcile(self, seller: Seller) -> Reconciliation:
        """Each sale `seller` was told was committed: stored once, lost, ... (checker.py)."""
        view = read_store(self.collector.db, self.till.store, self.till.terminal)
        return reconcile(seller.committed, view, journal_gaps(self.till.journal), self.refusals)

    async def restart_daemon(self) -> None:
        await asyncio.to_thread(self.till.start)

    async def restart_collector(self) -> None:
        await asyncio.to_thread(self.collector.start)

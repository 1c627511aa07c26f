"""The only place that wires components: journal, uplink, local API, systemd notification."""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import structlog

from edged import __version__
from edged.api.server import ApiServer
from edged.clock import utc_now_iso
from edged.config import Config
from edged.devices.manager import Devices
from edged.devices.state import DeviceError
from edged.errors import DeviceNotReadyError, SaleNotFoundError
from edged.events import EventHub
from edged.journal import Journal
from edged.receipts import sale_document
from edged.records import Payments, PrintJobs
from edged.sdnotify import Notifier
from edged.simwiring import Simulators
from edged.supervise import supervise
from edged.uplink import Uplink

log = structlog.get_logger(__name__)

RETENTION_INTERVAL_S = 3600.0


class TerminalServices:
    """What the local API may reach, handed to it by the daemon."""

    def __init__(
        self,
        cfg: Config,
        journal: Journal,
        uplink: Uplink | None,
        events: EventHub,
        devices: Devices,
        *,
        simulators: Simulators,
    ) -> None:
        self._cfg = cfg
        self._journal = journal
        self._uplink = uplink
        self._devices = devices
        self._simulators = simulators
        self.events = events
        self._started = time.monotonic()
        self._since = utc_now_iso()

    async def commit_sale(self, sale: Any) -> dict[str, Any]:
        result = await self._journal.commit(sale)
        log.info("sale_committed", sale_id=sale["id"], seq=result.seq, duplicate=result.duplicate)
        if not result.duplicate and self.link_status()["state"] != "online":
            # Online, the forwarder announces the outbox; without it the tail still grew.
            self.events.publish("outbox", self._journal.stats().outbox())
        return {
            "seq": result.seq,
            "receipt_no": result.receipt_no,
            "hash": result.hash,
            "duplicate": result.duplicate,
        }

    async def get_sale(self, sale_id: str) -> dict[str, Any] | None:
        found = await self._journal.get(sale_id)
        if found is None:
            return None
        entry, acked = found
        return {
            "sale": msgspec.json.decode(entry.sale_json),
            "seq": entry.seq,
            "receipt_no": entry.receipt_no,
            "created_at": entry.created_at,
            "hash": entry.hash.hex(),
            "acked": acked,
        }

    def link_status(self) -> dict[str, Any]:
        if self._uplink is None:
            return {"state": "disabled", "since": self._since}
        return self._uplink.status()

    def status(self) -> dict[str, Any]:
        stats = self._journal.stats()
        terminal = self._cfg.terminal
        return {
            "terminal": {"store_id": terminal.store_id, "terminal_id": terminal.terminal_id},
            "link": self.link_status(),
            "outbox": {
                "pending": stats.pending,
                "oldest_created_at": stats.oldest_pending_created_at,
                "acked_upto": stats.acked_upto,
                "last_ack_at": stats.last_ack_at,
            },
            "journal": {
                "last_seq": stats.last_seq,
                "path": str(self._journal.path),
                "sale_transactions": stats.sale_transactions,
            },
            "devices": self._devices.snapshot(),
            "version": __version__,
            "uptime_s": round(time.monotonic() - self._started, 1),
        }

    async def sync_now(self) -> dict[str, Any]:
        if self._uplink is None:
            return {"link": "disabled", "pending": self._journal.stats().pending}
        return await self._uplink.sync_now()

    # -- devices -------------------------------------------------------------------------

    async def print(
        self, sale_id: str | None, receipt: dict[str, Any] | None, wait_s: float
    ) -> dict[str, Any]:
        printer = self._devices.require_printer()
        if sale_id is not None:
            found = await self._journal.get(sale_id)
            if found is None:
                raise SaleNotFoundError(sale_id)
            entry, _ = found
            terminal = self._cfg.terminal
            document = sale_document(terminal.store_id, terminal.terminal_id, entry)
        else:
            assert receipt is not None
            document = receipt
        job = await printer.submit(document, sale_id=sale_id)
        state = await printer.wait(job.job_id, wait_s) if wait_s > 0 else job.state
        return {
            "job": job.job_id,
            "copy": job.copy,
            "state": str(state),
            "printer": printer.status_snapshot(),
        }

    def printer_status(self) -> dict[str, Any]:
        printer = self._devices.require_printer()
        return printer.status_snapshot()

    async def open_drawer(self) -> dict[str, Any]:
        printer = self._devices.require_printer()
        try:
            return await printer.open_drawer()
        except DeviceError as exc:
            raise DeviceNotReadyError("printer", str(printer.status.state), str(exc)) from exc

    async def payment_start(self, payment_id: str, amount: int, currency: str) -> dict[str, Any]:
        payment = self._devices.require_payment()
        return await payment.start(payment_id, amount, currency)

    async def payment_refund(self, payment_id: str, amount: int, currency: str) -> dict[str, Any]:
        payment = self._devices.require_payment()
        return await payment.refund(payment_id, amount, currency)

    async def payment_reverse(self, payment_id: str, original_id: str) -> dict[str, Any]:
        payment = self._devices.require_payment()
        return await payment.reverse(payment_id, original_id)

    async def payment_end_of_day(self) -> dict[str, Any]:
        payment = self._devices.require_payment()
        return await payment.end_of_day()

    async def payment_cancel(self, payment_id: str) -> dict[str, Any]:
        payment = self._devices.require_payment()
        return await payment.cancel(payment_id)

    async def payment_get(self, payment_id: str) -> dict[str, Any]:
        payment = self._devices.require_payment()
        return await payment.get(payment_id)

    async def sim_scan(self, code: str, symbology: str | None) -> dict[str, Any]:
        return self._simulators.scan(code, symbology)


async def _watchdog(notifier: Notifier, interval_s: float) -> None:
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


async def _retention(journal: Journal, retain_days: float) -> None:
    while True:
        await journal.purge(retain_days)
        await asyncio.sleep(RETENTION_INTERVAL_S)


async def _report_status(notifier: Notifier, services: TerminalServices) -> None:
    """Keep `systemctl status` current: a new STATUS= line whenever link or outbox change."""
    sub = services.events.subscribe(("link", "outbox"), maxsize=64)
    last = ""
    try:
        async for _ in sub:
            line = _status_line(services)
            if line != last:
                notifier.notify(line)
                last = line
    finally:
        sub.close()


def _status_line(services: TerminalServices) -> str:
    status = services.status()
    return (
        f"STATUS=link {status['link']['state']}, {status['outbox']['pending']} pending, "
        f"last seq {status['journal']['last_seq']}"
    )


async def run(cfg: Config, notifier: Notifier | None = None) -> None:
    """Run the terminal daemon until SIGTERM or SIGINT, then shut down cleanly."""
    notifier = notifier or Notifier()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    events = EventHub()
    terminal = cfg.terminal
    journal = await Journal.open(
        cfg.journal.path,
        store_id=terminal.store_id,
        terminal_id=terminal.terminal_id,
        receipt_format=terminal.receipt_format,
    )
    try:
        uplink = Uplink(cfg.uplink, terminal, journal, events, __version__) if cfg.uplink else None
        simulators = Simulators(cfg.devices, Path(cfg.api.socket).parent / "sim")
        devices = Devices(
            simulators.devices,
            jobs=PrintJobs(journal),
            ledger=Payments(journal),
            publish=events.publish,
        )
        services = TerminalServices(cfg, journal, uplink, events, devices, simulators=simulators)
        async with ApiServer(cfg.api.socket, services), asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(
                    supervise("retention", lambda: _retention(journal, cfg.journal.retain_days)),
                    name="retention",
                )
            ]
            if uplink is not None:
                tasks.append(tg.create_task(supervise("uplink", uplink.run), name="uplink"))
            serve_devices = functools.partial(simulators.serve, devices.run)
            tasks.append(tg.create_task(supervise("devices", serve_devices), name="devices"))
            if notifier.enabled:
                tasks.append(
                    tg.create_task(
                        supervise("status", lambda: _report_status(notifier, services)),
                        name="sd-status",
                    )
                )
            if notifier.watchdog_interval_s:
                interval = notifier.watchdog_interval_s
                tasks.append(tg.create_task(_watchdog(notifier, interval), name="watchdog"))
            notifier.notify("READY=1", _status_line(services))
            log.info(
                "daemon_ready",
                store_id=terminal.store_id,
                terminal_id=terminal.terminal_id,
                socket=cfg.api.socket,
                journal=cfg.journal.path,
                uplink=f"{cfg.uplink.host}:{cfg.uplink.effective_port}" if cfg.uplink else None,
                version=__version__,
            )
            await stop.wait()
            log.info("daemon_stopping")
            notifier.notify("STOPPING=1")
            for task in tasks:
                task.cancel()
        # The API has finished its in-flight requests; the journal finishes queued commits.
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await journal.close()
        notifier.close()
    log.info("daemon_stopped")

"""The only place that wires components: journal, uplink, local API, systemd notification."""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog

from edged import __version__, localtime
from edged.api.server import ApiServer
from edged.backlog import outbox_data, watch_severity
from edged.client import ApiClient
from edged.clock import utc_now_iso
from edged.clockwatch import watch_clock
from edged.config import Config
from edged.devices.manager import Devices
from edged.devices.state import DeviceError
from edged.errors import DeviceNotReadyError, EdgedError, JournalError, SaleNotFoundError
from edged.events import EventHub
from edged.health import Check, Health
from edged.journal import Journal, StoredEntry
from edged.journal.damaged import RESTORE_HINT, damaged_event
from edged.journal.refdata import RefdataStore
from edged.keys import collector_pin_path, load_or_create, read_pin, terminal_key_path
from edged.operations import NeedsStoreError, OperationPolicy
from edged.receipts import sale_document
from edged.records import Payments, PrintJobs
from edged.refdata import Refdata, today_in
from edged.refwire import RefdataTopics
from edged.sdnotify import Notifier
from edged.simwiring import Simulators
from edged.supervise import ComponentFailed, RestartPolicy, Supervisor, supervise, unwrap
from edged.uplink import Uplink
from edged.uplink.refdata import RefdataSync

log = structlog.get_logger(__name__)

RETENTION_INTERVAL_S = 3600.0
# The vital components (journal writer, API, uplink) restart quickly after an unexpected stop
# and end the daemon after VITAL_GIVE_UP of them in a row, none followed by a healthy run.
VITAL_RESTART_MIN_S = 0.5
VITAL_RESTART_MAX_S = 10.0
VITAL_GIVE_UP = 5
SLACK_S = 10.0  # a retry overdue by this much means the component's loop is stuck


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
        key: str,
        refdata: Refdata,
    ) -> None:
        self._cfg = cfg
        self.refdata = refdata
        self._key = key  # the terminal's public signing key (hex)
        self._journal = journal
        self._uplink = uplink
        self._devices = devices
        self._simulators = simulators
        self._operations = OperationPolicy(cfg.operations)
        self._zone = localtime.zone(cfg.terminal.timezone)  # of receipts; checked by config
        self.events = events
        self._started = time.monotonic()
        self._since = utc_now_iso()
        self.health: Health | None = None  # set by the daemon once its checks exist

    async def commit_sale(self, sale: Any) -> dict[str, Any]:
        await self._operations.admit_sale(sale, self._link_state, self._committed)
        result = await self._journal.commit(sale)
        log.info("sale_committed", sale_id=sale["id"], seq=result.seq, duplicate=result.duplicate)
        if not result.duplicate and self.link_status()["state"] != "online":
            # Online, the forwarder announces the outbox; without it the tail still grew.
            self.events.publish("outbox", self.outbox_data())
        return {
            "seq": result.seq,
            "receipt_no": result.receipt_no,
            "hash": result.hash,
            "duplicate": result.duplicate,
        }

    def _link_state(self) -> str:
        state: str = self.link_status()["state"]
        return state

    async def _committed(self, sale_id: str) -> bool:
        return await self._journal.get(sale_id) is not None

    def check_operation(self, kind: str) -> dict[str, Any]:
        needs_store = self._operations.needs_store(kind, "kind")
        link = self._link_state()
        if self._operations.refused([kind], link):
            raise NeedsStoreError([kind], link)
        return {"kind": kind, "needs_store": needs_store, "link": link}

    async def _read_sale(self, sale_id: str) -> tuple[StoredEntry, bool] | None:
        """The sale's entry and whether it is acked; a damaged entry is a JournalError."""
        found = await self._journal.get(sale_id)
        if found is None or found[0].damage is None:
            return found
        entry = found[0]
        if self._journal.damaged.note(entry):
            self.events.publish("journal", damaged_event(entry))
        raise JournalError(
            f"sale {sale_id} (seq {entry.seq}) is damaged in the journal: {entry.damage}; "
            f"{RESTORE_HINT}"
        )

    async def get_sale(self, sale_id: str) -> dict[str, Any] | None:
        found = await self._read_sale(sale_id)
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

    def outbox_data(self) -> dict[str, Any]:
        """The `outbox` event's data, with the backlog's age and severity."""
        return outbox_data(self._journal.stats(), self._uplink.backlog if self._uplink else None)

    def link_status(self) -> dict[str, Any]:
        if self._uplink is None:
            return {"state": "disabled", "since": self._since}
        return self._uplink.status()

    def _collector_key(self) -> str | None:
        try:
            return read_pin(collector_pin_path(self._journal.path))
        except EdgedError as exc:
            return f"unreadable: {exc}"

    def status(self) -> dict[str, Any]:
        stats = self._journal.stats()
        backlog = self.outbox_data()
        terminal = self._cfg.terminal
        return {
            "terminal": {
                "store_id": terminal.store_id,
                "terminal_id": terminal.terminal_id,
                "key": self._key,
                "collector_key": self._collector_key(),
            },
            "link": self.link_status(),
            "outbox": {
                "pending": stats.pending,
                "oldest_created_at": stats.oldest_pending_created_at,
                "oldest_age_s": backlog["oldest_age_s"],
                "severity": backlog["severity"],
                "acked_upto": stats.acked_upto,
                "last_ack_at": stats.last_ack_at,
            },
            "journal": {
                "last_seq": stats.last_seq,
                "path": str(self._journal.path),
                "sale_transactions": stats.sale_transactions,
                "gaps": self._journal.gaps(),
                "adoption": "pending" if self._journal.adoption_pending else None,
                **self._journal.damaged.status(),
            },
            "clock": self._clock_status(),
            "devices": self._devices.snapshot(),
            "payments": self._payments_status(),
            "health": self.health.snapshot() if self.health else {"ok": True, "problems": {}},
            "version": __version__,
            "uptime_s": round(time.monotonic() - self._started, 1),
        }

    def _payments_status(self) -> dict[str, Any] | None:
        """Card payments to follow up; None without a payment terminal."""
        payment = self._devices.payment
        return None if payment is None else {"offline_approved": payment.offline_report()}

    def _clock_status(self) -> dict[str, Any]:
        """This terminal's clock against the store's, as the latest ack told it."""
        heard = self._uplink.forwarder.store_clock if self._uplink is not None else None
        if heard is not None:
            return {"now": utc_now_iso(), **heard.report()}
        return {"now": utc_now_iso(), "last_ack_store_at": self._journal.last_ack_store_at}

    async def sync_now(self) -> dict[str, Any]:
        if self._uplink is None:
            result = {"link": "disabled", "pending": self._journal.stats().pending}
        else:
            result = await self._uplink.sync_now()
        return {**result, "refdata": await self.refdata.refresh()}

    # -- devices -------------------------------------------------------------------------

    async def print(
        self, sale_id: str | None, receipt: dict[str, Any] | None, wait_s: float
    ) -> dict[str, Any]:
        printer = self._devices.require_printer()
        if sale_id is not None:
            found = await self._read_sale(sale_id)
            if found is None:
                raise SaleNotFoundError(sale_id)
            entry, _ = found
            terminal = self._cfg.terminal
            document = sale_document(terminal.store_id, terminal.terminal_id, entry, self._zone)
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


async def _retention(journal: Journal, retain_days: float, id_retain_days: float) -> None:
    while True:
        await journal.purge(retain_days, id_retain_days)
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
    line = (
        f"STATUS=link {status['link']['state']}, {status['outbox']['pending']} pending, "
        f"last seq {status['journal']['last_seq']}"
    )
    problems = status["health"]["problems"]
    if problems:
        line += "; NOT HEALTHY: " + "; ".join(f"{name}: {why}" for name, why in problems.items())
    return line


class Components:
    """The daemon's long-lived parts, each under a Supervisor, and the health of the vital ones.

    The journal writer, the uplink and the API are vital: while one of them makes no
    progress the systemd watchdog is not fed, and one that keeps failing unexpectedly ends
    the daemon (ComponentFailed) so that systemd restarts it.
    """

    def __init__(
        self, cfg: Config, journal: Journal, uplink: Uplink | None, services: TerminalServices
    ) -> None:
        self._cfg = cfg
        self._journal = journal
        self._services = services
        self.api_server: ApiServer | None = None
        vital = RestartPolicy(
            min_s=VITAL_RESTART_MIN_S, max_s=VITAL_RESTART_MAX_S, give_up_after=VITAL_GIVE_UP
        )
        self.writer = Supervisor("journal-writer", journal.watch_writer, policy=vital)
        self.api = Supervisor("api", self._serve_api, policy=vital)
        self.uplink = Supervisor("uplink", uplink.run, policy=vital) if uplink else None
        self._link = uplink.link.supervisor if uplink else None  # its connection attempts

    async def open_api(self) -> None:
        """Bind the API socket at start-up: a socket in use is an error then, not a retry."""
        self.api_server = self._new_api_server()
        await self.api_server.start()

    def _new_api_server(self) -> ApiServer:
        api = self._cfg.api
        return ApiServer(
            api.socket,
            self._services,
            max_clients=api.max_clients,
            max_buffered=api.max_buffered_bytes,
            admit_own_process=True,  # the watchdog's `status` probe (_api_problem)
        )

    async def close_api(self) -> None:
        if self.api_server is not None:
            await self.api_server.close()

    async def _serve_api(self) -> None:
        server = self.api_server or self._new_api_server()
        self.api_server = server
        try:
            await server.serve()
        finally:
            self.api_server = None  # a restart binds the socket afresh

    def checks(self) -> dict[str, Check]:
        checks: dict[str, Check] = {
            "journal-writer": self._writer_problem,
            "api": self._api_problem,
        }
        if self.uplink is not None:
            checks["uplink"] = self._uplink_problem
        return checks

    async def _writer_problem(self) -> str | None:
        now = time.monotonic()
        return self.writer.problem(now, SLACK_S) or self._journal.writer_problem()

    async def _uplink_problem(self) -> str | None:
        assert self.uplink is not None
        assert self._link is not None
        now = time.monotonic()
        return self.uplink.problem(now, SLACK_S) or self._link.problem(now, SLACK_S)

    async def _api_problem(self) -> str | None:
        """The API answers `status` on its own socket, as a POS UI would ask it."""
        problem = self.api.problem(time.monotonic(), SLACK_S)
        if problem is not None or not self.api.running:
            return problem or "the API server is starting"
        try:
            async with ApiClient(self._cfg.api.socket) as client:
                await client.call("status")
        except (OSError, EdgedError) as exc:
            return f"the API does not answer on {self._cfg.api.socket}: {exc}"
        return None


async def run(cfg: Config, notifier: Notifier | None = None) -> None:
    """Run the terminal daemon until SIGTERM or SIGINT, then shut down cleanly.

    Raises ComponentFailed when a vital component cannot be restarted.
    """
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
        adopt=cfg.journal.adopt and cfg.uplink is not None,
    )
    refdata_store = RefdataStore.open(cfg.refdata.path)
    try:
        signer = load_or_create(terminal_key_path(cfg.journal.path))
        zone = localtime.zone(cfg.terminal.timezone)  # the store's: its day, its midnight
        refdata = Refdata(refdata_store, keep=cfg.refdata.keep, today=today_in(zone))
        if cfg.uplink:
            refdata.sync = RefdataSync(
                refdata_store,
                RefdataTopics(cfg.uplink.topic_prefix, terminal.store_id),
                store_id=terminal.store_id,
                pin_path=collector_pin_path(cfg.journal.path),
                chunk_wait_s=cfg.refdata.chunk_wait_s,
                on_snapshot=refdata.arrived,
            )
        uplink = (
            Uplink(
                cfg.uplink,
                terminal,
                journal,
                events,
                __version__,
                signer=signer,
                refdata=refdata.sync,
            )
            if cfg.uplink
            else None
        )
        simulators = Simulators(cfg.devices, Path(cfg.api.socket).parent / "sim")
        devices = Devices(
            simulators.devices,
            jobs=PrintJobs(journal),
            ledger=Payments(journal),
            publish=refdata.enrich(events.publish),
            where=zone,
        )
        services = TerminalServices(
            cfg,
            journal,
            uplink,
            events,
            devices,
            simulators=simulators,
            key=signer.public_hex,
            refdata=refdata,
        )
        parts = Components(cfg, journal, uplink, services)
        health = services.health = Health(
            parts.checks(), notifier, status_line=lambda: _status_line(services)
        )
        await parts.open_api()
        try:
            async with asyncio.TaskGroup() as tg:
                vital = [parts.writer, parts.api] + ([parts.uplink] if parts.uplink else [])
                tasks = [
                    tg.create_task(part.run(), name=f"supervise-{part.name}") for part in vital
                ]
                others: dict[str, Callable[[], Awaitable[None]]] = {
                    "retention": lambda: _retention(
                        journal, cfg.journal.retain_days, cfg.journal.id_retain_days
                    ),
                }
                others["clock-watch"] = watch_clock
                others["refdata"] = refdata.run
                if devices.configured:  # else it would end at once: a stop nobody asked for
                    others["devices"] = functools.partial(simulators.serve, devices.run)
                if uplink is not None:
                    others["backlog"] = lambda: watch_severity(journal, events, uplink.backlog)
                if notifier.enabled:
                    others["sd-status"] = lambda: _report_status(notifier, services)
                tasks += [tg.create_task(supervise(n, r), name=n) for n, r in others.items()]
                tasks.append(tg.create_task(health.run(), name="health"))
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
        except ExceptionGroup as group:
            failed = unwrap(group, prefer=(ComponentFailed,))
            if isinstance(failed, ComponentFailed):
                log.critical("daemon_giving_up", error=str(failed))
            raise failed from None
        finally:
            await parts.close_api()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await journal.close()
        refdata_store.close()
        notifier.close()
    log.info("daemon_stopped")

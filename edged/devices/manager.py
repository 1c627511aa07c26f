"""The configured devices, built from `[devices.*]` and each supervised on its own.

A device section that is absent means no such device. `driver = "sim"` starts the matching
simulator in-process on a pty pair (TCP is not needed) and runs the real driver against it,
so the demo exercises exactly the code path real hardware does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edged.config import DevicesSection, PaymentSection, PrinterSection, ScannerSection
from edged.devices.state import DeviceStatus, Publish
from edged.errors import DeviceNotConfiguredError
from edged.supervise import supervise

# Drivers are imported when their section is configured: a journal-only till starts faster.
if TYPE_CHECKING:
    from edged.devices.payment.base import PaymentTerminal
    from edged.devices.payment.service import PaymentLedger, PaymentService
    from edged.devices.printer import transport
    from edged.devices.printer.driver import Printer
    from edged.devices.printer.jobs import PrintJob, PrintJobStore
    from edged.devices.scanner import EvdevScanner, SerialScanner

log = structlog.get_logger(__name__)

Runner = Callable[[], Awaitable[None]]


def _serial(section: PrinterSection | ScannerSection | PaymentSection, **defaults: Any) -> Any:
    """The section's line settings, each falling back to the driver's default."""
    chosen = {
        "baudrate": section.baudrate,
        "bytesize": section.bytesize,
        "parity": section.parity,
        "stopbits": section.stopbits,
    }
    return {key: defaults[key] if value is None else value for key, value in chosen.items()}


def _escaped(text: str) -> bytes:
    """Config strings such as "\\r\\n" (TOML gives real control characters) as bytes."""
    return text.encode("latin-1")


class Devices:
    """Builds the drivers (and simulators) the config asks for; `run()` serves them all."""

    def __init__(
        self,
        cfg: DevicesSection,
        *,
        sim_dir: Path,
        jobs: PrintJobStore,
        ledger: PaymentLedger,
        publish: Publish,
    ) -> None:
        self._publish = publish
        self._sim_dir = sim_dir
        self.statuses: dict[str, DeviceStatus] = {}
        self._runners: dict[str, Runner] = {}
        self._sims: list[Callable[[contextlib.AsyncExitStack], Awaitable[None]]] = []
        self._simulated = False  # some device is a simulator, on a pty in sim_dir
        self.sim_scanner: Any = None  # the simulated scanner, for `sim.scan`
        self.printer = self._printer(cfg.printer, jobs) if cfg.printer else None
        self.scanner = self._scanner(cfg.scanner) if cfg.scanner else None
        self.payment = self._payment(cfg.payment, ledger) if cfg.payment else None

    def _status(self, name: str) -> DeviceStatus:
        status = self.statuses[name] = DeviceStatus(name, self._publish)
        return status

    def _sim_path(self, name: str) -> str:
        self._simulated = True
        return str(self._sim_dir / name)

    # -- printer ---------------------------------------------------------------------------

    def _printer(self, cfg: PrinterSection, jobs: PrintJobStore) -> Printer:
        from edged.devices.printer import transport
        from edged.devices.printer.driver import Printer, PrinterSettings
        from edged.devices.printer.receipt import build_receipt
        from edged.receipts import receipt_layout

        layout = receipt_layout(cfg)

        def render(job: PrintJob) -> bytes:
            return build_receipt(job.document, layout, copy=job.copy)

        connect: Callable[[], Awaitable[transport.Transport]]
        if cfg.driver == "sim":
            path = self._sim_path("printer")
            connect = functools.partial(transport.open_serial_transport, path)
            self._sims.append(functools.partial(self._start_sim_printer, path, cfg.render_dir))
        elif cfg.connection == "serial":
            line = _serial(cfg, baudrate=38400, bytesize=8, parity="none", stopbits=1)
            connect = functools.partial(transport.open_serial_transport, cfg.path, **line)
        elif cfg.connection == "network":
            connect = functools.partial(transport.open_network_transport, cfg.host or "", cfg.port)
        elif cfg.connection == "file":
            connect = functools.partial(transport.open_file_transport, cfg.path)
        else:
            connect = functools.partial(
                transport.open_usb_transport, cfg.usb_vendor_id or 0, cfg.usb_product_id or 0
            )
        settings = PrinterSettings(
            status_mode=cfg.status,
            poll_interval_s=cfg.poll_s,
            confirm_timeout_s=cfg.confirm_timeout_s,
            drawer_pin=cfg.drawer_pin,
            drawer_pulse_ms=cfg.drawer_pulse_ms,
            drawer_sensor=cfg.drawer_sensor,
        )
        printer = Printer(self._status("printer"), connect, jobs, render, settings)
        self._runners["printer"] = printer.run
        return printer

    async def _start_sim_printer(
        self, path: str, render_dir: str | None, stack: contextlib.AsyncExitStack
    ) -> None:
        from edged.sim.printer import SimPrinter

        out = Path(render_dir) if render_dir else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        await stack.enter_async_context(SimPrinter.start(path, out_dir=out))

    # -- scanner ---------------------------------------------------------------------------

    def _scanner(self, cfg: ScannerSection) -> SerialScanner | EvdevScanner:
        from edged.devices.scanner import EvdevScanner, SerialScanner

        status = self._status("scanner")
        scanner: SerialScanner | EvdevScanner
        if cfg.driver == "evdev":
            scanner = EvdevScanner(
                status,
                cfg.path,
                self._on_scan,
                layout=cfg.layout,
                grab=cfg.grab,
                double_read_s=cfg.double_read_s,
            )
        else:
            path = self._sim_path("scanner") if cfg.driver == "sim" else cfg.path
            prefix, suffix = _escaped(cfg.prefix), _escaped(cfg.suffix)
            scanner = SerialScanner(
                status,
                path,
                self._on_scan,
                **_serial(cfg, baudrate=9600, bytesize=8, parity="none", stopbits=1),
                prefix=prefix,
                suffix=suffix,
                double_read_s=cfg.double_read_s,
            )
            if cfg.driver == "sim":
                self._sims.append(functools.partial(self._start_sim_scanner, path, prefix, suffix))
        self._runners["scanner"] = scanner.run
        return scanner

    async def _start_sim_scanner(
        self, path: str, prefix: bytes, suffix: bytes, stack: contextlib.AsyncExitStack
    ) -> None:
        from edged.sim.scanner import SimScanner

        self.sim_scanner = await stack.enter_async_context(
            SimScanner.start(path, prefix=prefix, suffix=suffix)
        )

    def _on_scan(self, scan: dict[str, Any]) -> None:
        log.info(
            "scanner_scan",
            symbology=scan["symbology"],
            valid=scan["valid"],
            length=len(scan["code"]),
        )
        self._publish("scanner.scan", scan)

    def sim_scan(self, code: str, symbology: str | None) -> dict[str, Any]:
        """Make the simulated scanner scan `code`, as a person would at the till."""
        if self.sim_scanner is None:
            raise DeviceNotConfiguredError(
                "scanner", ' with driver = "sim" (sim.scan is for demos)'
            )
        self.sim_scanner.scan(code, symbology)
        return {"sent": True}

    # -- payment ---------------------------------------------------------------------------

    def _payment(self, cfg: PaymentSection, ledger: PaymentLedger) -> PaymentService:
        from edged.devices.payment.concert.driver import ConcertSettings, ConcertTerminal
        from edged.devices.payment.service import PaymentService
        from edged.devices.payment.zvt.driver import ZvtTerminal

        status = self._status("payment")
        protocol = cfg.simulate if cfg.driver == "sim" else cfg.driver
        path = self._sim_path("payment") if cfg.driver == "sim" else cfg.path
        terminal: PaymentTerminal
        if protocol == "concert":
            line = _serial(cfg, baudrate=9600, bytesize=8, parity="none", stopbits=1)
            terminal = ConcertTerminal(
                status,
                ConcertSettings(
                    path=path, currency=cfg.currency, pos_number=cfg.pos_number, **line
                ),
            )
        elif cfg.connection == "tcp" and cfg.driver != "sim":
            terminal = ZvtTerminal(
                status,
                host=cfg.host,
                port=cfg.port,
                password=cfg.password,
                currency=cfg.currency,
            )
        else:
            line = _serial(cfg, baudrate=9600, bytesize=8, parity="none", stopbits=2)
            terminal = ZvtTerminal(
                status, path=path, password=cfg.password, currency=cfg.currency, **line
            )
        if cfg.driver == "sim":
            self._runners["payment-sim"] = functools.partial(_run_sim_payment, protocol, path)
        service = PaymentService(terminal, ledger, self._publish, currency=cfg.currency)
        self._runners["payment"] = service.run
        return service

    # -- running ---------------------------------------------------------------------------

    def require_printer(self) -> Printer:
        if self.printer is None:
            raise DeviceNotConfiguredError("printer")
        return self.printer

    def require_payment(self) -> PaymentService:
        if self.payment is None:
            raise DeviceNotConfiguredError("payment")
        return self.payment

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"state": str(s.state), "detail": s.detail, "since": s.since}
            for name, s in self.statuses.items()
        }

    async def run(self) -> None:
        """Start the simulators, then serve every device, each restarted on its own."""
        async with contextlib.AsyncExitStack() as stack:
            if self._simulated:
                self._sim_dir.mkdir(parents=True, exist_ok=True)
            for start in self._sims:
                await start(stack)
            async with asyncio.TaskGroup() as tasks:
                for name, runner in self._runners.items():
                    tasks.create_task(supervise(f"device-{name}", runner), name=f"device-{name}")


async def _run_sim_payment(protocol: str, path: str) -> None:
    """Serve a simulated payment terminal on a pty at `path` until cancelled."""
    if protocol == "concert":
        from edged.sim.concert import SimConcertTerminal

        await SimConcertTerminal(path).run()
    else:
        from edged.sim.zvt import SimZvtTerminal

        await SimZvtTerminal().run_pty(path)

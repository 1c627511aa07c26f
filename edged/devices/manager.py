"""The configured devices, built from `[devices.*]` and each supervised on its own.

A device section that is absent means no such device. `driver = "sim"` never reaches this
module: the daemon's wiring (edged/simwiring.py) starts the simulators and hands over the
settings of a real serial device on each simulator's pty.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Awaitable, Callable
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
    """Builds the drivers the config asks for; `run()` serves them all."""

    def __init__(
        self,
        cfg: DevicesSection,
        *,
        jobs: PrintJobStore,
        ledger: PaymentLedger,
        publish: Publish,
        where: dt.tzinfo,
    ) -> None:
        for name, section in (
            ("printer", cfg.printer),
            ("scanner", cfg.scanner),
            ("payment", cfg.payment),
        ):
            if section is not None and section.driver == "sim":
                raise ValueError(
                    f'devices.{name} has driver = "sim": pass the settings of '
                    "edged.simwiring.Simulators(...).devices, which point at the simulator"
                )
        self._publish = publish
        self._where = where  # the store's zone: the payment terminal's day ends at its midnight
        self.statuses: dict[str, DeviceStatus] = {}
        self._runners: dict[str, Runner] = {}
        self.printer = self._printer(cfg.printer, jobs) if cfg.printer else None
        self.scanner = self._scanner(cfg.scanner) if cfg.scanner else None
        self.payment = self._payment(cfg.payment, ledger) if cfg.payment else None

    def _status(self, name: str) -> DeviceStatus:
        status = self.statuses[name] = DeviceStatus(name, self._publish)
        return status

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
        if cfg.connection == "serial":
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
            scanner = SerialScanner(
                status,
                cfg.path,
                self._on_scan,
                **_serial(cfg, baudrate=9600, bytesize=8, parity="none", stopbits=1),
                prefix=_escaped(cfg.prefix),
                suffix=_escaped(cfg.suffix),
                double_read_s=cfg.double_read_s,
            )
        self._runners["scanner"] = scanner.run
        return scanner

    def _on_scan(self, scan: dict[str, Any]) -> None:
        log.info(
            "scanner_scan",
            symbology=scan["symbology"],
            valid=scan["valid"],
            length=len(scan["code"]),
        )
        self._publish("scanner.scan", scan)

    # -- payment ---------------------------------------------------------------------------

    def _payment(self, cfg: PaymentSection, ledger: PaymentLedger) -> PaymentService:
        from edged.devices.payment.concert.driver import ConcertSettings, ConcertTerminal
        from edged.devices.payment.service import PaymentService
        from edged.devices.payment.zvt.driver import ZvtTerminal

        status = self._status("payment")
        terminal: PaymentTerminal
        if cfg.driver == "concert":
            line = _serial(cfg, baudrate=9600, bytesize=8, parity="none", stopbits=1)
            terminal = ConcertTerminal(
                status,
                ConcertSettings(
                    path=cfg.path, currency=cfg.currency, pos_number=cfg.pos_number, **line
                ),
            )
        elif cfg.connection == "tcp":
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
                status, path=cfg.path, password=cfg.password, currency=cfg.currency, **line
            )
        service = PaymentService(
            terminal, ledger, self._publish, currency=cfg.currency, where=self._where
        )
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

    @property
    def configured(self) -> bool:
        """Whether any device is configured (a till may have none: a back-office terminal)."""
        return bool(self._runners)

    async def run(self) -> None:
        """Serve every device, each restarted on its own."""
        async with asyncio.TaskGroup() as tasks:
            for name, runner in self._runners.items():
                tasks.create_task(supervise(f"device-{name}", runner), name=f"device-{name}")

"""`driver = "sim"` is wiring, not a driver: start the simulators and aim real drivers at them.

The device layer never imports the simulators. For each `[devices.*]` section with
`driver = "sim"` the daemon's wiring starts the matching simulator in-process on a pty pair in
`sim_dir` and hands the device layer the section a real serial device at that path would have,
so the demo and the tests run exactly the code path real hardware does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from edged.config import DevicesSection, PaymentSection, PrinterSection, ScannerSection
from edged.errors import DeviceNotConfiguredError
from edged.supervise import supervise

# The simulators are imported when a section asks for one: a real till never loads them.
if TYPE_CHECKING:
    from edged.sim.scanner import SimScanner

Plug = Callable[[contextlib.AsyncExitStack], Awaitable[None]]


class Simulators:
    """The simulators the config asks for; `devices` is the config the device layer gets."""

    def __init__(self, cfg: DevicesSection, sim_dir: Path) -> None:
        self._dir = sim_dir
        self._plugs: list[Plug] = []
        self._payment: Callable[[], Awaitable[None]] | None = None
        self._scanner: SimScanner | None = None
        self.devices = msgspec.structs.replace(
            cfg,
            printer=self._printer(cfg.printer),
            scanner=self._scanner_section(cfg.scanner),
            payment=self._payment_section(cfg.payment),
        )

    def _path(self, name: str) -> str:
        return str(self._dir / name)

    def _printer(self, cfg: PrinterSection | None) -> PrinterSection | None:
        if cfg is None or cfg.driver != "sim":
            return cfg
        path = self._path("printer")
        self._plugs.append(functools.partial(_plug_printer, path, cfg.render_dir))
        return msgspec.structs.replace(cfg, driver="escpos", connection="serial", path=path)

    def _scanner_section(self, cfg: ScannerSection | None) -> ScannerSection | None:
        if cfg is None or cfg.driver != "sim":
            return cfg
        path = self._path("scanner")
        prefix, suffix = cfg.prefix.encode("latin-1"), cfg.suffix.encode("latin-1")
        self._plugs.append(functools.partial(self._plug_scanner, path, prefix, suffix))
        return msgspec.structs.replace(cfg, driver="serial", path=path)

    def _payment_section(self, cfg: PaymentSection | None) -> PaymentSection | None:
        if cfg is None or cfg.driver != "sim":
            return cfg
        path = self._path("payment")
        self._payment = functools.partial(_run_payment, cfg.simulate, path)
        return msgspec.structs.replace(cfg, driver=cfg.simulate, connection="serial", path=path)

    async def _plug_scanner(
        self, path: str, prefix: bytes, suffix: bytes, stack: contextlib.AsyncExitStack
    ) -> None:
        from edged.sim.scanner import SimScanner

        self._scanner = await stack.enter_async_context(
            SimScanner.start(path, prefix=prefix, suffix=suffix)
        )

    async def serve(self, devices: Callable[[], Awaitable[None]]) -> None:
        """Plug the simulators in, then run `devices` against them; unplug when it ends."""
        async with contextlib.AsyncExitStack() as stack:
            if self._plugs or self._payment is not None:
                self._dir.mkdir(parents=True, exist_ok=True)
            for plug in self._plugs:
                await plug(stack)
            async with asyncio.TaskGroup() as tasks:
                if self._payment is not None:
                    name = "device-payment-sim"
                    tasks.create_task(supervise(name, self._payment), name=name)
                await devices()

    def scan(self, code: str, symbology: str | None) -> dict[str, Any]:
        """Make the simulated scanner scan `code`, as a person would at the till."""
        if self._scanner is None:
            raise DeviceNotConfiguredError(
                "scanner", ' with driver = "sim" (sim.scan is for demos)'
            )
        self._scanner.scan(code, symbology)
        return {"sent": True}


async def _plug_printer(
    path: str, render_dir: str | None, stack: contextlib.AsyncExitStack
) -> None:
    from edged.sim.printer import SimPrinter

    out = Path(render_dir) if render_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    await stack.enter_async_context(SimPrinter.start(path, out_dir=out))


async def _run_payment(protocol: str, path: str) -> None:
    """Serve a simulated payment terminal on a pty at `path` until cancelled."""
    if protocol == "concert":
        from edged.sim.concert import SimConcertTerminal

        await SimConcertTerminal(path).run()
    else:
        from edged.sim.zvt import SimZvtTerminal

        await SimZvtTerminal().run_pty(path)

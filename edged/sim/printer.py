"""A virtual ESC/POS receipt printer on a pty pair (or any asyncio byte stream).

It reads what the driver sends as a printer does: real-time requests (`DLE EOT n`) are
answered on reception, from the printer's side of edged.devices.printer.status, even while it
is offline; everything else goes into its buffer and is "printed" in order (edged.sim.escpos
parses, edged.sim.render lays out). When the paper runs out or the cover opens it stops where
it is and keeps the rest — `GS r` replies wait behind it — and carries on when it can, so an
interrupted receipt still comes out whole. Each cut ends a `Receipt` (text and operations; a
PNG on request, written with the text to `out_dir` as NNNN.txt/NNNN.png).

Switches: `set_paper("ok" | "near_end" | "out")`, `run_out_after(lines)`, `set_cover_open`,
`set_offline`, `set_error`, `set_drawer_open` (the drawer sensor), `power_off()` /
`power_on()` / `power_cycle()` (the buffer is lost, the line stays), `unplug()` (the link goes
away as in a power cut: the master closes, so the driver's reads fail, and the udev-like
symlink disappears) and `replug()` (a new pty pair, the symlink re-pointed at its slave).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from edged.devices.printer.status import (
    ErrorKind,
    Paper,
    PrinterStatus,
    RealTimeScanner,
    encode_asb,
    encode_printed_mark,
    encode_real_time,
)
from edged.sim import escpos, escpos_ops
from edged.sim.cable import PtyPair, point
from edged.sim.render import DEFAULT_WIDTH_DOTS, Layout, Page

log = structlog.get_logger(__name__)

READ_CHUNK = 65536
# Operations that move paper; with `run_out_after(n)` the paper ends after n of them.
_PAPER_OPS = (
    escpos_ops.LineFeed,
    escpos_ops.Feed,
    escpos_ops.FeedDots,
    escpos_ops.Cut,
    escpos_ops.Raster,
    escpos_ops.QrCode,
    escpos_ops.Barcode,
)
_RECEIPT_FILE = re.compile(r"^(\d{4,})\.txt$")


@dataclass(frozen=True, slots=True)
class Receipt:
    number: int
    text: str
    ops: tuple[escpos_ops.Op, ...]
    page: Page
    complete: bool = True  # False: torn off by a power cut before its cut

    def png(self) -> bytes:
        return self.page.png()


class SimPrinter:
    """An ESC/POS printer's behaviour; attach it to a pty (`start`) or a stream (`serve`)."""

    def __init__(
        self, *, width_dots: int = DEFAULT_WIDTH_DOTS, out_dir: Path | None = None
    ) -> None:
        self.width_dots = width_dots
        self.out_dir = out_dir
        self.receipts: list[Receipt] = []
        self.torn: list[Receipt] = []  # partly printed when the power went
        self.drawer_kicks: list[escpos_ops.DrawerKick] = []
        self.unknown: list[escpos_ops.Unknown] = []
        self.paper: Paper = "ok"
        self.cover_open = False
        self.offline = False  # forced offline (e.g. a printer switched to offline mode)
        self.error: ErrorKind | None = None
        self.drawer_open = False
        self.drawer_springs_open = True  # a kick opens the drawer (the sensor follows)
        self._paper_left: int | None = None  # paper-moving operations until the roll ends
        self._send: Callable[[bytes], None] | None = None
        self._pty: _Pty | None = None
        self._link_path: Path | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (receipt count, future)
        self._next_number = _first_free_number(out_dir)
        self._running = False
        self.powered = True
        self._reset()

    def _reset(self) -> None:
        """The state after switching on: empty buffer, power-on settings, ASB off."""
        self._parser = escpos.EscPosParser()
        self._scanner = RealTimeScanner()
        self._queue: deque[escpos_ops.Op] = deque()
        self._layout = Layout(self.width_dots)
        self._ops: list[escpos_ops.Op] = []  # of the receipt being printed
        self._asb_items = 0
        self._last_asb = b""

    # --- the printer's state and switches ---------------------------------------------------

    @property
    def status(self) -> PrinterStatus:
        return PrinterStatus(
            online=self._can_print(),
            cover_open=self.cover_open,
            paper=self.paper,
            drawer_pin3_high=self.drawer_open,
            error=self.error,
        )

    @property
    def buffered(self) -> int:
        """Operations received but not printed yet."""
        return len(self._queue)

    def set_paper(self, paper: Paper) -> None:
        self.paper = paper
        if paper != "out":
            self._paper_left = None
        self._changed()

    def run_out_after(self, operations: int) -> None:
        """The roll ends after this many more paper-moving operations (LF, feed, image, cut)."""
        self._paper_left = operations
        self._changed()

    def set_cover_open(self, cover_open: bool) -> None:
        self.cover_open = cover_open
        self._changed()

    def set_offline(self, offline: bool) -> None:
        self.offline = offline
        self._changed()

    def set_error(self, error: ErrorKind | None) -> None:
        self.error = error
        self._changed()

    def set_drawer_open(self, drawer_open: bool) -> None:
        self.drawer_open = drawer_open
        self._changed()

    def power_off(self) -> None:
        """Switched off (the line stays): it answers nothing and loses what it had not printed."""
        page = self._layout.tear_off()
        if page is not None:
            self._keep(page, complete=False, into=self.torn)
        self._reset()
        self.powered = False
        log.info("sim_printer_power_off")

    def power_on(self) -> None:
        self.powered = True
        log.info("sim_printer_power_on")

    def power_cycle(self) -> None:
        """Switched off and on: whatever was not printed is lost; ASB is off again."""
        self.power_off()
        self.power_on()

    async def wait_for_receipts(self, count: int, timeout_s: float = 10.0) -> list[Receipt]:
        """The receipts once at least `count` have been printed (TimeoutError otherwise)."""
        if len(self.receipts) < count:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            try:
                async with asyncio.timeout(timeout_s):
                    await future
            finally:
                self._waiters.remove((count, future))
        return list(self.receipts)

    # --- links ----------------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        link_path: str | Path,
        *,
        width_dots: int = DEFAULT_WIDTH_DOTS,
        out_dir: Path | None = None,
    ) -> AsyncIterator[SimPrinter]:
        """A printer on a new pty pair; `link_path` is a symlink to its slave (like udev's)."""
        sim = cls(width_dots=width_dots, out_dir=out_dir)
        sim._link_path = Path(link_path)
        sim.replug()
        try:
            yield sim
        finally:
            sim._disconnect()

    @property
    def path(self) -> str | None:
        """The slave tty the driver opens, while plugged in."""
        return self._pty.path if self._pty else None

    def unplug(self) -> None:
        """Gone as in a power cut: the master closes, the symlink goes, the buffer is lost."""
        self._disconnect()
        self.power_cycle()  # the data in its buffer does not survive
        log.info("sim_printer_unplugged")

    def replug(self) -> None:
        """Back on a new pty pair; the symlink points at the new slave."""
        if self._link_path is None:
            raise RuntimeError("replug() needs a printer started with SimPrinter.start()")
        self._disconnect()
        self._pty = _Pty(self.receive)
        self._send = self._pty.write
        point(self._link_path, self._pty.path)
        log.info("sim_printer_plugged", path=str(self._link_path), tty=self._pty.path)

    def _disconnect(self) -> None:
        if self._pty is not None:
            self._pty.close()
            self._pty = None
            self._send = None
        if self._link_path is not None:
            self._link_path.unlink(missing_ok=True)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Be the printer at the other end of a stream (e.g. a TCP connection) until it ends."""
        self._send = writer.write
        try:
            # A host that goes away ends the session, as on a real network printer.
            with contextlib.suppress(OSError):
                while data := await reader.read(READ_CHUNK):
                    self.receive(data)
        finally:
            self._send = None
            writer.close()

    # --- the printer at work ----------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes from the host: answer real-time requests now, buffer and print the rest."""
        if not self.powered:
            return
        for n in self._scanner.feed(data):
            self._reply(bytes((encode_real_time(n, self.status),)))
        self._queue.extend(self._parser.feed(data))
        self._run()

    def _reply(self, data: bytes) -> None:
        if self._send is not None:
            self._send(data)

    def _can_print(self) -> bool:
        return (
            self.paper != "out" and not self.cover_open and not self.offline and self.error is None
        )

    def _changed(self) -> None:
        """After a switch: tell the host (ASB) and carry on printing if possible."""
        self._announce()
        self._run()

    def _announce(self) -> None:
        """With Automatic Status Back on, send the status if it differs from the last sent."""
        if self._asb_items:
            frame = encode_asb(self.status)
            if frame != self._last_asb:
                self._last_asb = frame
                self._reply(frame)

    def _run(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            while self._queue and self._can_print():
                op = self._queue[0]
                if isinstance(op, _PAPER_OPS) and self._paper_left is not None:
                    if self._paper_left <= 0:
                        self.paper, self._paper_left = "out", None
                        log.info("sim_printer_paper_out", buffered=len(self._queue))
                        self._announce()
                        break
                    self._paper_left -= 1
                self._queue.popleft()
                self._execute(op)
        finally:
            self._running = False

    def _execute(self, op: escpos_ops.Op) -> None:
        if isinstance(op, escpos_ops.StatusRequest):
            if op.n == 1:
                self._reply(bytes((encode_printed_mark(self.status),)))
            elif op.n == 2:
                self._reply(bytes((int(self.drawer_open),)))
            return
        if isinstance(op, escpos_ops.AsbRequest):
            self._asb_items = op.items & 0x0F
            self._last_asb = b""
            self._announce()
            return
        if isinstance(op, escpos_ops.RealTime):
            return  # answered when it was received
        if isinstance(op, escpos_ops.DrawerKick):
            self.drawer_kicks.append(op)
            if self.drawer_springs_open and not self.drawer_open:
                self.drawer_open = True
                self._announce()
        if isinstance(op, escpos_ops.Unknown):
            self.unknown.append(op)
        self._ops.append(op)
        page = self._layout.apply(op)
        if page is not None:
            self._keep(page, complete=True, into=self.receipts)

    def _keep(self, page: Page, *, complete: bool, into: list[Receipt]) -> None:
        receipt = Receipt(self._next_number, page.text(), tuple(self._ops), page, complete)
        self._next_number += 1
        self._ops = []
        into.append(receipt)
        log.info("sim_printer_receipt", number=receipt.number, complete=complete)
        if self.out_dir is not None:
            stem = self.out_dir / f"{receipt.number:04d}{'' if complete else '-torn'}"
            stem.with_suffix(".txt").write_text(receipt.text, encoding="utf-8")
            stem.with_suffix(".png").write_bytes(receipt.png())
        for count, future in self._waiters:
            if len(self.receipts) >= count and not future.done():
                future.set_result(None)


def _first_free_number(out_dir: Path | None) -> int:
    """Receipt files go on from the highest number already in `out_dir`."""
    if out_dir is None or not out_dir.is_dir():
        return 1
    numbers = [int(m[1]) for p in out_dir.iterdir() if (m := _RECEIPT_FILE.match(p.name))]
    return max(numbers, default=0) + 1


class _Pty:
    """The printer's end of a pty pair: the master, read and written without blocking."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._pair = PtyPair()
        self.master = self._pair.master
        self.path = self._pair.tty
        self._on_data = on_data
        self._out = bytearray()
        self._loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self._on_data(data)

    def write(self, data: bytes) -> None:
        self._out += data
        self._flush()

    def _flush(self) -> None:
        try:
            written = os.write(self.master, self._out)
        except BlockingIOError:
            written = 0
        del self._out[:written]
        if self._out:
            self._loop.add_writer(self.master, self._flush)
        else:
            self._loop.remove_writer(self.master)

    def close(self) -> None:
        self._loop.remove_reader(self.master)
        self._loop.remove_writer(self.master)
        self._pair.close()

"""Device measurements for scripts/bench.py: the scanner and the printer over real ptys.

Each function returns raw samples (seconds) and leaves reporting to bench.py. The checks here
raise BenchError: a run that printed the wrong receipts or delivered the wrong codes has no
figures worth reporting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import sqlite3
import time
import tty
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.client import ApiClient
from edged.devices.printer.layout import ReceiptLayout
from edged.devices.printer.receipt import build_receipt
from edged.devices.printer.status import paper_sensor_status
from edged.devices.scanner.codec import AIM_IDS
from edged.devices.scanner.driver import SerialScanner
from edged.devices.scanner.gtin import gtin_check_digit
from edged.devices.state import DeviceStatus
from edged.sim.printer import SimPrinter
from edged.sim.scanner import SimScanner
from tests.support.daemon import DaemonProcess

HANG_S = 60.0  # only to stop a broken run from hanging; nothing is asserted on time
SYMBOLOGY = "ean-13"
SUFFIX = b"\r"  # the scanner's default suffix, as `[devices.scanner]` configures it
PRINTED_MARK_REPLY = b"\x12"  # one byte back, like the printer's GS r reply


class BenchError(Exception):
    """The run did not do what it claims to measure."""


def ean13(n: int) -> str:
    """A distinct valid EAN-13 per n, so the double-read filter never drops one."""
    body = f"400{n:09d}"
    return body + str(gtin_check_digit(body))


def scan_frame(code: str) -> bytes:
    """The bytes a scanner sends for `code`: AIM identifier, code, suffix."""
    return (AIM_IDS[SYMBOLOGY] + code).encode() + SUFFIX


@contextlib.contextmanager
def raw_pty() -> Iterator[tuple[int, int]]:
    """(master, slave) of a fresh pty pair, both raw and non-blocking, closed afterwards."""
    master, slave = os.openpty()
    try:
        for fd in (master, slave):
            tty.setraw(fd)
            os.set_blocking(fd, False)
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def _transfer(src: int, dst: int, data: bytes) -> None:
    """Write `data` to `src` and read it all back from `dst`, never blocking on a full pty."""
    sent = received = 0
    while received < len(data):
        writable = [src] if sent < len(data) else []
        readable, ready, _ = select.select([dst], writable, [], HANG_S)
        if not readable and not ready:
            raise BenchError(f"pty baseline: {received} of {len(data)} bytes came through")
        if ready:
            sent += os.write(src, data[sent:])
        if readable:
            received += len(os.read(dst, 65536))


def pty_latencies(frames: list[bytes]) -> list[float]:
    """Baseline: each frame written to a pty master and read whole on its slave, one thread."""
    out = []
    with raw_pty() as (master, slave):
        for frame in frames:
            t0 = time.perf_counter()
            _transfer(master, slave, frame)
            out.append(time.perf_counter() - t0)
    return out


async def asyncio_pty_latencies(frames: list[bytes]) -> list[float]:
    """Baseline: the same, read by an asyncio reader callback (what one loop wakeup adds)."""
    loop = asyncio.get_running_loop()
    arrivals: asyncio.Queue[float] = asyncio.Queue()
    out = []
    with raw_pty() as (master, slave):
        pending = bytearray()

        def readable() -> None:
            pending.extend(os.read(slave, 65536))
            if pending.endswith(SUFFIX):
                pending.clear()
                arrivals.put_nowait(time.perf_counter())

        loop.add_reader(slave, readable)
        try:
            for frame in frames:
                t0 = time.perf_counter()
                os.write(master, frame)
                async with asyncio.timeout(HANG_S):
                    out.append(await arrivals.get() - t0)
        finally:
            loop.remove_reader(slave)
    return out


async def driver_scan_latencies(work: Path, codes: list[str]) -> list[float]:
    """SimScanner -> SerialScanner in this process: bytes written -> `on_scan` called."""
    ready = asyncio.Event()
    scans: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

    def publish(kind: str, data: dict[str, Any]) -> None:
        if data["state"] == "ready":
            ready.set()

    def on_scan(scan: dict[str, Any]) -> None:
        scans.put_nowait((time.perf_counter(), scan))

    out = []
    async with SimScanner.start(work / "scanner", suffix=SUFFIX) as sim:
        driver = SerialScanner(DeviceStatus("scanner", publish), sim.path, on_scan, suffix=SUFFIX)
        task = asyncio.create_task(driver.run(), name="bench-scanner")
        try:
            async with asyncio.timeout(HANG_S):
                await ready.wait()
            for code in codes:
                frame = scan_frame(code)
                t0 = time.perf_counter()
                sim.send(frame)
                async with asyncio.timeout(HANG_S):
                    t1, scan = await scans.get()
                _check_scan(scan, code)
                out.append(t1 - t0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return out


def _check_scan(scan: dict[str, Any], code: str) -> None:
    if (scan["code"], scan["symbology"], scan["valid"]) != (code, SYMBOLOGY, True):
        raise BenchError(f"scanned {code} ({SYMBOLOGY}) but got {scan}")


def scanner_daemon(work: Path) -> DaemonProcess:
    """`edged run` with the simulated serial scanner (`driver = "sim"`) in its own process."""
    daemon = DaemonProcess(work)
    with daemon.config.open("a") as config:
        config.write('[devices.scanner]\ndriver = "sim"\n')
    return daemon


async def until_ready(client: ApiClient, device: str) -> None:
    async with asyncio.timeout(HANG_S):
        while (await client.call("status"))["devices"].get(device, {}).get("state") != "ready":
            await asyncio.sleep(0.02)


async def daemon_scan_latencies(socket: str, codes: list[str]) -> tuple[list[float], list[float]]:
    """`sim.scan` sent -> `scanner.scan` event received, and -> `sim.scan` answered."""
    events, replies = [], []
    async with ApiClient(socket) as client:
        await until_ready(client, "scanner")
        await client.call("subscribe", {"events": ["scanner.scan"]})
        stream = client.events()
        for code in codes:
            t0 = time.perf_counter()
            reply = asyncio.create_task(
                _timed(client.call("sim.scan", {"code": code, "symbology": SYMBOLOGY}))
            )
            async with asyncio.timeout(HANG_S):
                event = await anext(stream)
            events.append(time.perf_counter() - t0)
            replies.append(await reply - t0)
            if event["type"] != "scanner.scan":
                raise BenchError(f"expected a scanner.scan event, got {event}")
            _check_scan(event["data"], code)
    return events, replies


async def _timed(call: Awaitable[Any]) -> float:
    """Await `call`; the time it finished at."""
    await call
    return time.perf_counter()


# --- printer ------------------------------------------------------------------------------


def printer_daemon(work: Path, printer_path: str) -> DaemonProcess:
    """`edged run` with its real ESC/POS driver on `printer_path` (the simulator's pty)."""
    daemon = DaemonProcess(work)
    with daemon.config.open("a") as config:
        config.write(f'[devices.printer]\nconnection = "serial"\npath = "{printer_path}"\n')
    return daemon


async def print_sequential(client: ApiClient, sale_ids: list[str]) -> list[float]:
    """One `printer.print {sale_id, wait_s}` after another, each until confirmed printed."""
    out = []
    for sale_id in sale_ids:
        t0 = time.perf_counter()
        result = await client.call("printer.print", {"sale_id": sale_id, "wait_s": 30})
        out.append(time.perf_counter() - t0)
        _check_print(result, sale_id)
    return out


async def print_burst(socket: str, sale_ids: list[str], clients: int = 8) -> list[float]:
    """All `printer.print` calls sent at once (over `clients` connections, each call inside
    the daemon's per-connection limit); per call, sent -> confirmed printed."""

    async def one(client: ApiClient, sale_id: str, t0: float) -> float:
        result = await client.call("printer.print", {"sale_id": sale_id, "wait_s": 30})
        _check_print(result, sale_id)
        return time.perf_counter() - t0

    async with contextlib.AsyncExitStack() as stack:
        pool = [await stack.enter_async_context(ApiClient(socket)) for _ in range(clients)]
        t0 = time.perf_counter()
        return list(
            await asyncio.gather(
                *(one(pool[i % clients], sale_id, t0) for i, sale_id in enumerate(sale_ids))
            )
        )


def _check_print(result: dict[str, Any], sale_id: str) -> None:
    if (result["state"], result["copy"]) != ("printed", False):
        raise BenchError(f"printer.print of sale {sale_id} answered {result}")


@dataclass(frozen=True)
class JobRows:
    """What the journal holds about the run's print jobs."""

    rows: int
    printed: int
    copies: int
    document_bytes: int


def job_rows(journal: str) -> JobRows:
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        rows, printed, copies, size = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'printed'), sum(copy), "
            "sum(length(document)) FROM print_jobs"
        ).fetchone()
    return JobRows(rows, printed, copies or 0, size or 0)


def check_printed(sim: SimPrinter, jobs: JobRows, receipt_nos: list[str]) -> None:
    """Exactly one complete original at the printer per sale, and a journal that agrees."""
    problems = []
    if len(sim.receipts) != len(receipt_nos):
        problems.append(f"{len(sim.receipts)} receipts came out for {len(receipt_nos)} sales")
    if sim.torn:
        problems.append(f"{len(sim.torn)} receipts were torn off")
    copies = [r.number for r in sim.receipts if "COPY" in r.text]
    if copies:
        problems.append(f"receipts {copies[:5]} say COPY")
    found = sorted(no for r in sim.receipts for no in receipt_nos if no in r.text)
    if found != sorted(receipt_nos):
        problems.append("the receipt numbers printed are not one per sale")
    if (jobs.rows, jobs.printed, jobs.copies) != (len(receipt_nos), len(receipt_nos), 0):
        problems.append(f"print_jobs in the journal: {jobs}")
    if problems:
        raise BenchError("print run: " + "; ".join(problems))


def rendered_receipts(journal: str) -> list[bytes]:
    """The bytes the driver sent for each job: its document rendered as the daemon does (the
    default `[devices.printer]` layout), followed by `GS r 1`."""
    layout = ReceiptLayout()
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        documents = [json.loads(d) for (d,) in conn.execute("SELECT document FROM print_jobs")]
    return [build_receipt(d, layout, copy=False) + paper_sensor_status() for d in documents]


def sim_receipt_latencies(payloads: list[bytes]) -> list[float]:
    """Baseline: the simulated printer's own work per receipt (parse, lay out; no I/O), which
    a job waits for before the printer's GS r reply."""
    sim = SimPrinter()
    out = []
    for payload in payloads:
        t0 = time.perf_counter()
        sim.receive(payload)
        out.append(time.perf_counter() - t0)
    if len(sim.receipts) != len(payloads):
        raise BenchError(f"sim baseline: {len(sim.receipts)} receipts of {len(payloads)}")
    return out


def pty_receipt_latencies(payloads: list[bytes]) -> list[float]:
    """Baseline: each receipt written to a pty slave, read whole on the master, and one reply
    byte sent back and read: the transport's round trip with nothing parsed or stored."""
    out = []
    with raw_pty() as (master, slave):
        for payload in payloads:
            t0 = time.perf_counter()
            _transfer(slave, master, payload)
            _transfer(master, slave, PRINTED_MARK_REPLY)
            out.append(time.perf_counter() - t0)
    return out

"""The printer driver against the simulated printer, over a real pty (and TCP, and a file)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import os
import time
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from edged.devices.printer.driver import Printer, PrinterSettings
from edged.devices.printer.jobs import JobState, PrintJob
from edged.devices.printer.status import ErrorKind
from edged.devices.printer.transport import (
    TransportFactory,
    open_file_transport,
    open_network_transport,
    open_serial_transport,
    open_usb_transport,
)
from edged.devices.state import DeviceError, DeviceState, DeviceStatus
from edged.sim.escpos_ops import DrawerKick
from edged.sim.printer import SimPrinter
from tests.support.printjobs import MemoryPrintJobs

FAST = PrinterSettings(poll_interval_s=0.05, status_timeout_s=2.0, confirm_timeout_s=1.0)
HANG_S = 15.0  # only to stop a broken test from hanging; nothing here is timed


def render(job: PrintJob) -> bytes:
    """A small receipt: init, COPY banner when a copy, the document's lines, feed and cut."""
    out = b"\x1b@"
    if job.copy:
        out += b"\x1ba\x01*** COPY ***\n\x1ba\x00"
    for line in job.document["lines"]:
        out += line.encode("cp437") + b"\n"
    return out + b"\x1dVA\x03"


def receipt(n: int = 10, title: str = "Receipt") -> dict[str, Any]:
    return {"lines": [title] + [f"line {i}" for i in range(1, n)]}


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    printer: Printer
    store: MemoryPrintJobs
    status: DeviceStatus
    events: list[dict[str, Any]] = field(default_factory=list)

    def states(self) -> list[tuple[str, str]]:
        return [(e["state"], e["detail"]) for e in self.events]

    async def wait_state(self, state: DeviceState, detail: str | None = None) -> None:
        def reached() -> bool:
            return self.status.state == state and detail in (None, self.status.detail)

        try:
            await until(reached, f"{state} {detail or ''}".strip())
        except AssertionError as exc:
            now = f"{self.status.state}: {self.status.detail}"
            raise AssertionError(f"{exc}; the printer is {now}") from None


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "printer"


@pytest.fixture
async def sim(link: Path, tmp_path: Path) -> AsyncIterator[SimPrinter]:
    async with SimPrinter.start(link, out_dir=tmp_path) as sim:
        yield sim


def absent(path: Path) -> str:
    return f"{path} does not exist (unplugged, or check the udev rule/path)"


def serial(link: Path) -> TransportFactory:
    return functools.partial(open_serial_transport, str(link), baudrate=19200)


@contextlib.asynccontextmanager
async def running(
    connect: TransportFactory,
    settings: PrinterSettings = FAST,
    render: Callable[[PrintJob], bytes] = render,
    store: MemoryPrintJobs | None = None,
) -> AsyncIterator[Rig]:
    """A Printer with an in-memory job store, run() in the background; events recorded."""
    store = store or MemoryPrintJobs()
    events: list[dict[str, Any]] = []
    status = DeviceStatus("printer", lambda kind, data: events.append(data))
    rig = Rig(Printer(status, connect, store, render, settings), store, status, events)
    task = asyncio.create_task(rig.printer.run(), name="printer-under-test")
    try:
        yield rig
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- printing ---------------------------------------------------------------------------------


async def test_prints_one_receipt(sim: SimPrinter, link: Path, tmp_path: Path) -> None:
    async with running(serial(link)) as rig:
        await rig.wait_state(DeviceState.READY)
        job = await rig.printer.submit(receipt(5), sale_id="s-1")
        assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
        await rig.wait_state(DeviceState.READY)
        snapshot = rig.printer.status_snapshot()
    (printed,) = sim.receipts
    assert printed.text == "Receipt\nline 1\nline 2\nline 3\nline 4\n"
    assert rig.store.jobs[job.job_id].state is JobState.PRINTED
    assert rig.store.history == [(1, JobState.QUEUED), (1, JobState.SENDING), (1, JobState.PRINTED)]
    assert ("busy", "printing job 1") in rig.states()
    assert rig.states()[-1] == ("ready", "")
    assert snapshot == {
        "state": "ready",
        "detail": "",
        "paper": "ok",
        "cover_open": False,
        "online": True,
        "drawer_open": None,
        "queued": 0,
        "last_printed_job": 1,
    }
    assert (tmp_path / "0001.txt").read_text() == printed.text
    assert (tmp_path / "0001.png").read_bytes().startswith(b"\x89PNG")


async def test_paper_out_mid_receipt_then_back_prints_it_once(sim: SimPrinter, link: Path) -> None:
    async with running(serial(link)) as rig:
        await rig.wait_state(DeviceState.READY)
        sim.run_out_after(4)
        job = await rig.printer.submit(receipt(12))
        await rig.wait_state(DeviceState.ERROR, "paper out")
        assert rig.store.jobs[job.job_id].state is JobState.SENDING
        assert sim.receipts == []
        assert sim.buffered > 0  # the rest of the receipt waits in the printer
        assert rig.printer.status_snapshot()["paper"] == "out"
        sim.set_paper("ok")
        assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
        await rig.wait_state(DeviceState.READY)
    (printed,) = sim.receipts
    assert printed.text == "Receipt\n" + "".join(f"line {i}\n" for i in range(1, 12))
    assert "COPY" not in printed.text
    assert sim.torn == []
    assert [s for _, s in rig.store.history].count(JobState.SENDING) == 1
    assert ("error", "paper out") in rig.states()


async def test_unplug_during_a_job_then_replug_prints_a_copy(sim: SimPrinter, link: Path) -> None:
    async with running(serial(link)) as rig:
        await rig.wait_state(DeviceState.READY)
        sim.run_out_after(2)
        job = await rig.printer.submit(receipt(8))
        await rig.wait_state(DeviceState.ERROR, "paper out")
        sim.unplug()
        await rig.wait_state(DeviceState.ABSENT, absent(link))
        assert rig.printer.status_snapshot()["queued"] == 1
        sim.set_paper("ok")
        sim.replug()
        assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
    (torn,) = sim.torn  # two lines came out before the paper ran out and the power went
    assert torn.text == "Receipt\nline 1\n"
    (printed,) = sim.receipts
    assert printed.text.startswith(" " * 15 + "*** COPY ***\nReceipt\nline 1\n")
    assert printed.text.endswith("line 7\n")
    assert rig.store.jobs[job.job_id].copy is False  # the same job, printed again as a copy


async def test_printer_that_lost_its_buffer_prints_a_copy(sim: SimPrinter, link: Path) -> None:
    async with running(serial(link)) as rig:
        await rig.wait_state(DeviceState.READY)
        sim.run_out_after(3)
        job = await rig.printer.submit(receipt(8))
        await rig.wait_state(DeviceState.ERROR, "paper out")
        sim.power_cycle()  # switched off and on to "fix" it: the rest of the job is gone
        sim.set_paper("ok")
        assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
    (printed,) = sim.receipts
    assert "*** COPY ***" in printed.text
    assert printed.text.endswith("line 7\n")
    assert len(sim.torn) == 1
    assert any("did not confirm job 1" in detail for _, detail in rig.states())


async def test_jobs_wait_while_the_cover_is_open(sim: SimPrinter, link: Path) -> None:
    sim.set_cover_open(True)
    async with running(serial(link)) as rig:
        await rig.wait_state(DeviceState.ERROR, "cover open")
        job = await rig.printer.submit(receipt(3))
        await asyncio.sleep(0.2)
        assert rig.store.jobs[job.job_id].state is JobState.QUEUED  # held back, not sent
        assert await rig.printer.wait(job.job_id, 0.01) is JobState.QUEUED
        sim.set_cover_open(False)
        assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
    assert len(sim.receipts) == 1


async def test_a_sale_printed_again_is_a_copy(sim: SimPrinter, link: Path) -> None:
    async with running(serial(link)) as rig:
        first = await rig.printer.submit(receipt(2), sale_id="sale-7")
        second = await rig.printer.submit(receipt(2), sale_id="sale-7")
        assert (first.copy, second.copy) == (False, True)
        assert await rig.printer.wait(second.job_id, HANG_S) is JobState.PRINTED
        assert await rig.printer.wait(first.job_id, HANG_S) is JobState.PRINTED
    assert ["COPY" in r.text for r in sim.receipts] == [False, True]


async def test_absent_printer_never_blocks_submit(sim: SimPrinter, link: Path) -> None:
    sim.unplug()
    async with running(serial(link)) as rig:
        await rig.wait_state(DeviceState.ABSENT, absent(link))
        job = await rig.printer.submit(receipt(2))
        assert job.state is JobState.QUEUED
        assert await rig.printer.wait(job.job_id, 0.05) is JobState.QUEUED
        sim.replug()
        assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
    assert len(sim.receipts) == 1


async def test_a_job_that_cannot_be_rendered_fails_and_the_next_prints(
    sim: SimPrinter, link: Path
) -> None:
    def picky(job: PrintJob) -> bytes:
        if job.document.get("broken"):
            raise KeyError("lines")
        return render(job)

    async with running(serial(link), render=picky) as rig:
        bad = await rig.printer.submit({"broken": True})
        good = await rig.printer.submit(receipt(2))
        assert await rig.printer.wait(bad.job_id, HANG_S) is JobState.FAILED
        assert await rig.printer.wait(good.job_id, HANG_S) is JobState.PRINTED
    assert len(sim.receipts) == 1
    with pytest.raises(LookupError):
        await rig.printer.wait(99, 0.01)


async def test_jobs_left_sending_by_a_restart_print_as_copies(sim: SimPrinter, link: Path) -> None:
    store = MemoryPrintJobs()
    old = await store.add_print_job(receipt(2), copy=False, sale_id=None)
    await store.set_print_job_state(old.job_id, JobState.SENDING)
    async with running(serial(link), store=store) as rig:
        assert await rig.printer.wait(old.job_id, HANG_S) is JobState.PRINTED
    assert "*** COPY ***" in sim.receipts[0].text


async def test_image_data_holding_a_status_request_keeps_replies_in_step(
    sim: SimPrinter, link: Path
) -> None:
    def with_logo(job: PrintJob) -> bytes:
        # A raster row whose bytes read 10 04 01: the printer answers it like a request.
        return b"\x1b@\x1dv0\x00\x03\x00\x02\x00\x10\x04\x01\x10\x04\x03" + render(job)

    async with running(serial(link), render=with_logo) as rig:
        for _ in range(3):
            job = await rig.printer.submit(receipt(2))
            assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
        await rig.wait_state(DeviceState.READY)
    assert len(sim.receipts) == 3
    assert all(state != "error" for state, _ in rig.states()[2:])


# --- status -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["poll", "asb"])
async def test_status_changes_become_device_states(
    sim: SimPrinter, link: Path, mode: Literal["poll", "asb"]
) -> None:
    settings = PrinterSettings(
        status_mode=mode,
        poll_interval_s=0.05 if mode == "poll" else 5.0,
    )
    async with running(serial(link), settings) as rig:
        await rig.wait_state(DeviceState.READY, "")
        sim.set_paper("near_end")
        await rig.wait_state(DeviceState.READY, "paper near end")
        assert rig.printer.status_snapshot()["paper"] == "near_end"
        sim.set_cover_open(True)
        await rig.wait_state(DeviceState.ERROR, "cover open")
        assert rig.printer.status_snapshot()["cover_open"] is True
        sim.set_cover_open(False)
        sim.set_error(ErrorKind.AUTOCUTTER)
        await rig.wait_state(DeviceState.ERROR, "autocutter error — open and close the cover")
        sim.set_error(ErrorKind.UNRECOVERABLE)
        await rig.wait_state(
            DeviceState.ERROR, "unrecoverable error — switch the printer off and on"
        )
        sim.set_error(None)
        sim.set_offline(True)
        await rig.wait_state(DeviceState.ERROR, "printer offline")
        sim.set_offline(False)
        sim.set_paper("ok")
        await rig.wait_state(DeviceState.READY, "")


async def test_a_printer_that_stops_answering_is_reopened(sim: SimPrinter, link: Path) -> None:
    settings = PrinterSettings(poll_interval_s=0.05, status_timeout_s=0.5)
    async with running(serial(link), settings) as rig:
        await rig.wait_state(DeviceState.READY)
        sim.power_off()  # a serial printer switched off: the line stays, nothing answers
        await rig.wait_state(DeviceState.ERROR)
        assert "does not answer status requests" in rig.status.detail
        sim.power_on()
        await rig.wait_state(DeviceState.READY)


# --- the cash drawer --------------------------------------------------------------------------


async def test_drawer_kick_uses_the_configured_pin_and_pulse(sim: SimPrinter, link: Path) -> None:
    settings = PrinterSettings(poll_interval_s=0.05, drawer_pin=5, drawer_pulse_ms=120)
    async with running(serial(link), settings) as rig:
        await rig.wait_state(DeviceState.READY)
        result = await rig.printer.open_drawer()
        await until(lambda: bool(sim.drawer_kicks), "the kick")
    assert result == {"pin": 5, "pulse_ms": 120, "drawer_open": None}
    assert sim.drawer_kicks == [DrawerKick(pin=5, on_ms=120, off_ms=120)]
    assert rig.printer.drawer_open is None


async def test_drawer_sensor_reports_open_and_closed(sim: SimPrinter, link: Path) -> None:
    settings = PrinterSettings(poll_interval_s=0.05, drawer_sensor=True)
    async with running(serial(link), settings) as rig:
        await rig.wait_state(DeviceState.READY)
        assert rig.printer.drawer_open is False
        result = await rig.printer.open_drawer()
        assert result["drawer_open"] is True
        assert sim.drawer_kicks == [DrawerKick(pin=2, on_ms=100, off_ms=100)]
        sim.set_drawer_open(False)  # the cashier closes it
        await until(lambda: rig.printer.drawer_open is False, "the sensor to read closed")
        assert rig.printer.status_snapshot()["drawer_open"] is False


async def test_drawer_sensor_that_reads_low_when_open(sim: SimPrinter, link: Path) -> None:
    settings = PrinterSettings(poll_interval_s=0.05, drawer_sensor=True, drawer_open_high=False)
    async with running(serial(link), settings) as rig:
        await rig.wait_state(DeviceState.READY)
        assert rig.printer.drawer_open is True  # pin 3 low


async def test_drawer_needs_a_connected_printer(sim: SimPrinter, link: Path) -> None:
    sim.unplug()
    async with running(serial(link)) as rig:
        await rig.wait_state(DeviceState.ABSENT, absent(link))
        with pytest.raises(DeviceError, match="not connected"):
            await rig.printer.open_drawer()
        sim.replug()
        sim.set_cover_open(True)
        await rig.wait_state(DeviceState.ERROR, "cover open")
        with pytest.raises(DeviceError, match="cannot open the drawer: cover open"):
            await rig.printer.open_drawer()
    assert sim.drawer_kicks == []


def test_settings_reject_a_bad_drawer_pulse() -> None:
    with pytest.raises(ValueError, match="drawer pulse 600 ms is out of range"):
        PrinterSettings(drawer_pulse_ms=600)
    with pytest.raises(ValueError, match="poll_interval_s must be > 0"):
        PrinterSettings(poll_interval_s=0)


# --- other transports -------------------------------------------------------------------------


async def test_network_printer(tmp_path: Path) -> None:
    sim = SimPrinter()
    server = await asyncio.start_server(sim.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        connect = functools.partial(open_network_transport, "127.0.0.1", port)
        async with running(connect) as rig:
            job = await rig.printer.submit(receipt(3))
            assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
            sim.set_paper("out")
            await rig.wait_state(DeviceState.ERROR, "paper out")
    finally:
        server.close()
        await server.wait_closed()
    assert len(sim.receipts) == 1


async def test_network_printer_refusing(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with running(functools.partial(open_network_transport, "127.0.0.1", port)) as rig:
        await rig.wait_state(DeviceState.ERROR)
        assert f"127.0.0.1:{port}: cannot connect" in rig.status.detail


async def test_file_device_that_answers(sim: SimPrinter, link: Path) -> None:
    async with running(functools.partial(open_file_transport, str(link))) as rig:
        job = await rig.printer.submit(receipt(3))
        assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
        assert rig.printer.status_snapshot()["paper"] == "ok"
    assert len(sim.receipts) == 1


async def test_file_device_that_never_answers(tmp_path: Path) -> None:
    master, slave = os.openpty()  # a device that takes bytes and says nothing, like many lp
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    settings = PrinterSettings(poll_interval_s=0.05, status_timeout_s=0.2)
    try:
        async with running(functools.partial(open_file_transport, path), settings) as rig:
            await rig.wait_state(
                DeviceState.READY, "status unknown (the printer does not report it)"
            )
            job = await rig.printer.submit(receipt(2))
            assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
            assert rig.printer.status_snapshot()["paper"] is None
        received = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(master, 65536):
                received += chunk
    finally:
        os.close(master)
        os.close(slave)
    assert received.startswith(b"\x10\x04\x01\x10\x04\x02")  # it asked once
    assert received.endswith(render(PrintJob(1, receipt(2), False, JobState.QUEUED)))


async def test_file_that_is_a_plain_file_is_written_only(tmp_path: Path) -> None:
    capture = tmp_path / "capture.bin"
    capture.touch()
    settings = PrinterSettings(status_mode="none")
    async with running(functools.partial(open_file_transport, str(capture)), settings) as rig:
        job = await rig.printer.submit(receipt(2))
        assert await rig.printer.wait(job.job_id, HANG_S) is JobState.PRINTED
    assert capture.read_bytes() == render(PrintJob(1, receipt(2), False, JobState.QUEUED))


async def test_missing_file_device_is_absent(tmp_path: Path) -> None:
    async with running(functools.partial(open_file_transport, str(tmp_path / "lp0"))) as rig:
        await rig.wait_state(DeviceState.ABSENT, absent(tmp_path / "lp0"))


# --- the simulator on the wire ----------------------------------------------------------------


async def test_sim_answers_real_time_requests_while_offline_and_holds_gs_r(
    sim: SimPrinter, link: Path
) -> None:
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    try:
        sim.set_paper("out")
        os.write(fd, b"Hello\n\x1dr\x01\x10\x04\x04\x10\x04\x01")
        assert await read_exactly(fd, 2) == b"\x7e\x1a"  # near end and paper end; offline
        sim.set_paper("ok")
        assert await read_exactly(fd, 1) == b"\x00"  # GS r, once "Hello" is printed
        os.write(fd, b"\x1da\x0f")
        assert await read_exactly(fd, 4) == b"\x10\x00\x00\x00"  # ASB at once
        sim.set_cover_open(True)
        assert await read_exactly(fd, 4) == b"\x38\x00\x00\x00"  # offline, cover open
    finally:
        os.close(fd)


async def read_exactly(fd: int, count: int) -> bytes:
    data = b""
    deadline = time.monotonic() + HANG_S
    while len(data) < count:
        try:
            data += os.read(fd, count - len(data))
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {data!r}, wanted {count} bytes") from None
            await asyncio.sleep(0.01)
    return data


async def test_garbage_from_the_printer_is_a_protocol_error(tmp_path: Path) -> None:
    master, slave = os.openpty()  # e.g. a scale or a modem on the printer's port
    tty.setraw(master)
    tty.setraw(slave)
    link = tmp_path / "printer"
    link.symlink_to(os.ttyname(slave))
    os.set_blocking(master, False)

    def answer_garbage() -> None:
        os.read(master, 1024)
        os.write(master, b"\xff")

    asyncio.get_running_loop().add_reader(master, answer_garbage)
    try:
        async with running(serial(link)) as rig:
            await until(lambda: "0xFF" in rig.status.detail, "the protocol error")
            assert rig.status.state is DeviceState.ERROR
            assert rig.status.detail == (
                "printer: byte 0xFF at offset 0 cannot be a status byte "
                "(wrong baud rate or not an ESC/POS printer?)"
            )
    finally:
        asyncio.get_running_loop().remove_reader(master)
        os.close(master)
        os.close(slave)


async def test_usb_without_pyusb_says_what_to_install() -> None:
    if importlib.util.find_spec("usb") is not None:
        pytest.skip("pyusb is installed here")
    with pytest.raises(DeviceError, match=r"pip install edged\[usb\]"):
        await open_usb_transport(0x04B8, 0x0202)

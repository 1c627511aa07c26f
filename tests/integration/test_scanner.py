"""SerialScanner against SimScanner over a real pty: scans, double reads, garbage, unplug."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from edged.backoff import Backoff
from edged.devices.scanner.driver import EvdevScanner, SerialScanner
from edged.devices.state import DeviceState, DeviceStatus
from edged.sim.scanner import SimScanner, SimScannerError
from tests.support.waiting import until

WAIT_S = 10.0  # generous deadline for things that happen in milliseconds
REFERENCE_GS1 = "011231231231233310ABC123\x1d99TESTING"


class Recorder:
    """The daemon's side: collects published device states and delivered scans."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.scans: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self.status = DeviceStatus("scanner", self.publish)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        assert kind == "device"
        self.states.append(data["state"])
        self._changed.set()

    def on_scan(self, scan: dict[str, Any]) -> None:
        self.scans.put_nowait(scan)

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def ready(self) -> None:
        await self.until(lambda: self.status.state == DeviceState.READY)

    async def absent(self) -> None:
        """Absent because an open found no device node (not the initial "not opened yet")."""
        await self.until(
            lambda: self.status.state == DeviceState.ABSENT and "exist" in self.status.detail
        )

    async def next_scan(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            return await self.scans.get()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@contextlib.asynccontextmanager
async def running(driver: SerialScanner | EvdevScanner) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run(), name="scanner-under-test")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def serial(recorder: Recorder, path: str, **settings: Any) -> SerialScanner:
    settings.setdefault("backoff", Backoff(0.02, 0.1))
    return SerialScanner(recorder.status, path, recorder.on_scan, **settings)


async def test_scans_arrive_as_callbacks_with_the_right_fields(
    tmp_path: Path, recorder: Recorder
) -> None:
    link = tmp_path / "usb-Datalogic_Scanner-if00"
    async with (
        SimScanner.start(link, suffix=b"\r\n") as sim,
        running(serial(recorder, sim.path, suffix=b"\r\n")),
    ):
        await recorder.ready()
        assert recorder.status.detail == str(link)
        sim.scan("2112233789657", "ean-13")
        assert await recorder.next_scan() == {
            "code": "2112233789657",
            "symbology": "ean-13",
            "aim": "]E0",
            "gs1": None,
            "valid": True,
            "problem": None,
            "device": "scanner",
        }
        sim.scan(REFERENCE_GS1, "]d2")
        assert await recorder.next_scan() == {
            "code": REFERENCE_GS1,
            "symbology": "gs1-datamatrix",
            "aim": "]d2",
            "gs1": {"01": "12312312312333", "10": "ABC123", "99": "TESTING"},
            "valid": True,
            "problem": None,
            "device": "scanner",
        }
        sim.scan("4006381333932")  # no AIM id, wrong check digit: reported, not dropped
        scan = await recorder.next_scan()
        assert (scan["symbology"], scan["valid"], scan["aim"]) == ("ean-13", False, None)
        assert "expected 1" in scan["problem"]


async def test_prefix_suffix_framing_and_a_code_split_across_writes(
    tmp_path: Path, recorder: Recorder
) -> None:
    async with SimScanner.start(tmp_path / "scanner", prefix=b"\x02", suffix=b"\x03") as sim:
        driver = serial(recorder, sim.path, prefix=b"\x02", suffix=b"\x03", baudrate=115200)
        async with running(driver):
            await recorder.ready()
            sim.send(b"\x02]E4023")
            await asyncio.sleep(0)  # let the driver read the first half on its own
            sim.send(b"45680\x03")
            scan = await recorder.next_scan()
            assert (scan["code"], scan["symbology"], scan["valid"]) == ("02345680", "ean-8", True)


async def test_a_burst_of_scans_arrives_complete_and_in_order(
    tmp_path: Path, recorder: Recorder
) -> None:
    codes = [f"ITEM-{n:04d}" for n in range(200)]
    async with (
        SimScanner.start(tmp_path / "scanner") as sim,
        running(serial(recorder, sim.path)),
    ):
        await recorder.ready()
        for code in codes:
            sim.scan(code, "code-128")
        received = [(await recorder.next_scan())["code"] for _ in codes]
    assert received == codes


async def test_double_reads_are_suppressed_and_other_codes_pass(
    tmp_path: Path, recorder: Recorder
) -> None:
    async with (
        SimScanner.start(tmp_path / "scanner") as sim,
        running(serial(recorder, sim.path, double_read_s=3600.0)),
    ):
        await recorder.ready()
        with structlog.testing.capture_logs() as logs:
            for code in ("AAA", "AAA", "AAA", "BBB", "BBB", "AAA"):
                sim.scan(code)
            received = [(await recorder.next_scan())["code"] for _ in range(3)]
        assert received == ["AAA", "BBB", "AAA"]
        suppressed = [e for e in logs if e["event"] == "scanner_double_read_suppressed"]
        assert len(suppressed) == 3
        assert all(e["log_level"] == "debug" for e in suppressed)
        assert recorder.scans.empty()


async def test_interval_zero_delivers_every_read(tmp_path: Path, recorder: Recorder) -> None:
    async with (
        SimScanner.start(tmp_path / "scanner") as sim,
        running(serial(recorder, sim.path, double_read_s=0.0)),
    ):
        await recorder.ready()
        sim.scan("AAA")
        sim.scan("AAA")
        assert [(await recorder.next_scan())["code"] for _ in range(2)] == ["AAA", "AAA"]


async def test_garbage_between_scans_is_logged_and_the_driver_carries_on(
    tmp_path: Path, recorder: Recorder
) -> None:
    async with (
        SimScanner.start(tmp_path / "scanner") as sim,
        running(serial(recorder, sim.path)),
    ):
        await recorder.ready()
        with structlog.testing.capture_logs() as logs:
            sim.scan("FIRST")
            sim.send(b"\x00\xff\xfe\r")  # line noise: not UTF-8
            sim.send(b"bell\x07\r")  # a control character inside a code
            sim.send(b"\xff" * 9000 + b"\r")  # longer than any barcode
            sim.scan("SECOND")
            assert (await recorder.next_scan())["code"] == "FIRST"
            assert (await recorder.next_scan())["code"] == "SECOND"
        garbage = [e for e in logs if e["event"] == "scanner_garbage"]
        assert [e["log_level"] for e in garbage] == ["warning"] * 3
        assert "offset 7: byte 0xff: not UTF-8" in garbage[0]["error"]
        assert "offset 14: byte 0x07: control character" in garbage[1]["error"]
        assert "no suffix b'\\r' within 8192 bytes" in garbage[2]["error"]
        assert recorder.status.state == DeviceState.READY
        assert recorder.scans.empty()


async def test_unplug_then_replug_reports_the_loss_and_scans_flow_again(
    tmp_path: Path, recorder: Recorder
) -> None:
    async with (
        SimScanner.start(tmp_path / "scanner") as sim,
        running(serial(recorder, sim.path)),
    ):
        await recorder.ready()
        sim.scan("BEFORE")
        assert (await recorder.next_scan())["code"] == "BEFORE"

        sim.unplug()
        await recorder.absent()
        lost = recorder.states[recorder.states.index("ready") + 1 :]
        assert "error" in lost  # the read failed: connection lost ...
        assert "absent" in lost  # ... and the link is gone while unplugged
        assert str(sim.link_path) in recorder.status.detail
        with pytest.raises(SimScannerError, match="unplugged"):
            sim.scan("NOBODY HEARS THIS")

        sim.replug()
        await recorder.ready()
        sim.scan("AFTER")
        assert (await recorder.next_scan())["code"] == "AFTER"


async def test_a_missing_path_is_absent(tmp_path: Path, recorder: Recorder) -> None:
    path = tmp_path / "no-such-scanner"
    async with running(serial(recorder, str(path))):
        await recorder.absent()
    assert recorder.status.detail.startswith(f"{path} does not exist")


async def test_an_absent_scanner_stays_absent_and_quiet_while_probed(
    tmp_path: Path, recorder: Recorder
) -> None:
    """No absent -> connecting -> absent flapping, no WARNING per retry: one event, one
    WARNING, then DEBUG; and it still comes up when plugged in."""
    sim = SimScanner(tmp_path / "scanner")
    with structlog.testing.capture_logs() as logs:
        async with running(serial(recorder, sim.path)):
            await recorder.absent()
            await until(
                lambda: sum(e["event"] == "device_unavailable" for e in logs) >= 5,
                "five probes of the missing node",
            )
            probes = [e for e in logs if e["event"] == "device_unavailable"]
            assert recorder.states == ["absent"]
            sim.replug()
            try:
                await recorder.ready()
            finally:
                sim.unplug()
    assert recorder.states[:2] == ["absent", "ready"]
    assert [e["log_level"] for e in probes[:5]] == ["warning"] + ["debug"] * 4
    assert probes[0]["device"] == "scanner"
    warnings = [
        e for e in logs if e["log_level"] == "warning" and e["event"] != "device_unavailable"
    ]
    assert [e["event"] for e in warnings] == ["device_state"]  # the one change to absent


async def test_a_scanner_that_appears_later_becomes_ready(
    tmp_path: Path, recorder: Recorder
) -> None:
    sim = SimScanner(tmp_path / "scanner")
    async with running(serial(recorder, sim.path)):
        await recorder.absent()
        sim.replug()
        try:
            await recorder.ready()
            sim.scan("HELLO")
            assert (await recorder.next_scan())["code"] == "HELLO"
        finally:
            sim.unplug()


async def test_a_failing_callback_is_logged_and_does_not_stop_the_driver(
    tmp_path: Path, recorder: Recorder
) -> None:
    def on_scan(scan: dict[str, Any]) -> None:
        if scan["code"] == "BOOM":
            raise RuntimeError("bug in the consumer")
        recorder.on_scan(scan)

    async with SimScanner.start(tmp_path / "scanner") as sim:
        driver = SerialScanner(recorder.status, sim.path, on_scan, backoff=Backoff(0.02, 0.1))
        async with running(driver):
            await recorder.ready()
            with structlog.testing.capture_logs() as logs:
                sim.scan("BOOM")
                sim.scan("FINE")
                assert (await recorder.next_scan())["code"] == "FINE"
            assert [e["event"] for e in logs if e["log_level"] == "error"] == [
                "scanner_callback_failed"
            ]


async def test_evdev_driver_on_a_path_that_is_not_an_input_device(
    tmp_path: Path, recorder: Recorder
) -> None:
    """The evdev driver's error paths; real key events need /dev/uinput, absent here."""
    missing = EvdevScanner(
        recorder.status, str(tmp_path / "gone"), recorder.on_scan, backoff=Backoff(0.02, 0.1)
    )
    async with running(missing):
        await recorder.absent()
    not_input = tmp_path / "plain-file"
    not_input.write_bytes(b"")
    other = Recorder()
    driver = EvdevScanner(other.status, str(not_input), other.on_scan, backoff=Backoff(0.02, 0.1))
    async with running(driver):
        await other.until(lambda: other.status.state == DeviceState.ERROR)
    assert other.status.detail.startswith(f"{not_input}: not an input device")


def test_bad_settings_are_refused_at_construction(tmp_path: Path, recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="suffix"):
        serial(recorder, str(tmp_path / "x"), suffix=b"")
    with pytest.raises(ValueError, match="unknown keyboard layout 'xx'"):
        EvdevScanner(recorder.status, str(tmp_path / "x"), recorder.on_scan, layout="xx")


async def test_the_simulator_refuses_to_replace_a_real_file(tmp_path: Path) -> None:
    real = tmp_path / "ttyS0"
    real.write_text("not a link")
    with pytest.raises(SimScannerError, match="not a symlink"):
        async with SimScanner.start(real):
            pass
    assert real.read_text() == "not a link"
    with pytest.raises(SimScannerError, match="unknown symbology 'ean-99'"):
        async with SimScanner.start(tmp_path / "scanner") as sim:
            sim.scan("1", "ean-99")

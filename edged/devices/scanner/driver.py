"""Scanner drivers: a serial port or a keyboard-wedge input device, kept open by keep_open.

Each driver reads, decodes with the sans-IO codec, drops double reads and hands every scan to
`on_scan(scan)` — synchronous and cheap (the daemon publishes a `scanner.scan` event), so a
scan reaches the callback in the same loop iteration as its last byte. A code that is
readable but wrong (bad check digit, malformed GS1) is still delivered, with `valid` False;
bytes that are not a code are logged and skipped. Unplug and re-plug are keep_open's job.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any

import structlog

from edged.backoff import Backoff
from edged.devices.scanner.codec import Scan, decode_frame, decode_text
from edged.devices.scanner.dedupe import DOUBLE_READ_S, DoubleReadFilter
from edged.devices.scanner.framing import Frame, ScanFramer
from edged.devices.scanner.keymap import KeyDecoder
from edged.devices.serialport import close_stream, open_serial
from edged.devices.state import (
    DeviceAbsent,
    DeviceError,
    DeviceGone,
    DeviceState,
    DeviceStatus,
    ProtocolError,
)
from edged.devices.supervisor import keep_open

log = structlog.get_logger(__name__)

READ_CHUNK_BYTES = 4096

# Receives {code, symbology, aim, gs1, valid, problem, device}; must not block.
OnScan = Callable[[dict[str, Any]], None]


class _Delivery:
    """What both drivers do with a decoded scan: drop double reads, call back, never raise."""

    def __init__(self, device: str, on_scan: OnScan, double_read_s: float) -> None:
        self.device = device
        self._on_scan = on_scan
        self._filter = DoubleReadFilter(double_read_s)

    def deliver(self, scan: Scan) -> None:
        # Codes are not logged: a label may carry a customer or gift-card number.
        if not self._filter.accept(scan.code, time.monotonic()):
            log.debug("scanner_double_read_suppressed", device=self.device, length=len(scan.code))
            return
        log.debug(
            "scanner_scan",
            device=self.device,
            symbology=scan.symbology,
            valid=scan.valid,
            length=len(scan.code),
        )
        try:
            self._on_scan(scan.to_event(self.device))
        except Exception:
            log.exception("scanner_callback_failed", device=self.device)

    def garbage(self, error: ProtocolError) -> None:
        log.warning("scanner_garbage", device=self.device, error=str(error))


class SerialScanner:
    """A scanner on a serial port (RS-232, USB-CDC, or the simulator's pty).

    `path` should be stable across re-plugs (/dev/serial/by-id/..., a udev symlink). The
    prefix and suffix are what the scanner is set to send around each code.
    """

    def __init__(
        self,
        status: DeviceStatus,
        path: str,
        on_scan: OnScan,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "none",
        stopbits: int = 1,
        prefix: bytes = b"",
        suffix: bytes = b"\r",
        double_read_s: float = DOUBLE_READ_S,
        backoff: Backoff | None = None,
    ) -> None:
        ScanFramer(prefix=prefix, suffix=suffix)  # refuse a bad framing now, not at first open
        self.status = status
        self.path = path
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.prefix = prefix
        self.suffix = suffix
        self._delivery = _Delivery(status.name, on_scan, double_read_s)
        self._backoff = backoff

    async def run(self) -> None:
        """Read scans forever, reopening the port after an unplug or an error."""
        await keep_open(self.status, self._session, backoff=self._backoff)

    async def _session(self) -> None:
        reader, writer = await open_serial(
            self.path,
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
        )
        framer = ScanFramer(prefix=self.prefix, suffix=self.suffix, device=self.status.name)
        try:
            self.status.set(DeviceState.READY, self.path)
            while True:
                data = await reader.read(READ_CHUNK_BYTES)
                if not data:
                    raise DeviceGone(f"{self.path}: the port closed (unplugged?)")
                for item in framer.feed(data):
                    self._handle(item)
        finally:
            await close_stream(writer)

    def _handle(self, item: Frame | ProtocolError) -> None:
        if isinstance(item, ProtocolError):
            self._delivery.garbage(item)
            return
        try:
            scan = decode_frame(item.data, device=self.status.name, offset=item.offset)
        except ProtocolError as exc:
            self._delivery.garbage(exc)
            return
        self._delivery.deliver(scan)


class EvdevScanner:
    """A USB-HID keyboard-wedge scanner read through evdev, grabbed so scans stay out of consoles.

    `path` is the event device, best /dev/input/by-id/...-event-kbd; `layout` the keyboard
    layout the scanner is set to ("us", "de"). A thin layer over keymap.KeyDecoder.
    """

    def __init__(
        self,
        status: DeviceStatus,
        path: str,
        on_scan: OnScan,
        *,
        layout: str = "us",
        grab: bool = True,
        double_read_s: float = DOUBLE_READ_S,
        backoff: Backoff | None = None,
    ) -> None:
        KeyDecoder(layout)  # refuse an unknown layout now, not at first open
        self.status = status
        self.path = path
        self.layout = layout
        self.grab = grab
        self._delivery = _Delivery(status.name, on_scan, double_read_s)
        self._backoff = backoff

    async def run(self) -> None:
        """Read scans forever, reopening the device after an unplug or an error."""
        await keep_open(self.status, self._session, backoff=self._backoff)

    async def _session(self) -> None:
        try:
            import evdev
        except ImportError:
            raise DeviceError(
                'python-evdev is not installed; install edged[evdev] to use driver = "evdev"'
            ) from None
        if not os.path.exists(self.path):
            raise DeviceAbsent(f"{self.path} does not exist (unplugged, or check the path)")
        try:
            device = evdev.InputDevice(self.path)
        except PermissionError:
            raise DeviceError(
                f"{self.path}: permission denied; add the edged user to the input group"
            ) from None
        except OSError as exc:
            raise DeviceError(f"{self.path}: not an input device: {exc.strerror or exc}") from None
        decoder = KeyDecoder(self.layout, device=self.status.name)
        try:
            if self.grab:
                try:
                    device.grab()
                except OSError as exc:
                    raise DeviceError(
                        f"{self.path}: cannot grab it ({exc.strerror}); another program "
                        "(a desktop, another edged) holds it"
                    ) from None
            self.status.set(DeviceState.READY, f"{self.path} ({device.name})")
            async for event in device.async_read_loop():
                if event.type == evdev.ecodes.EV_KEY:
                    self._key(decoder, event.code, event.value)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise DeviceGone(f"{self.path}: unplugged") from None
            raise
        finally:
            device.close()  # also releases the grab

    def _key(self, decoder: KeyDecoder, code: int, value: int) -> None:
        try:
            text = decoder.feed(code, value)
            if text is None:
                return
            scan = decode_text(text, device=self.status.name)
        except ProtocolError as exc:
            self._delivery.garbage(exc)
            return
        self._delivery.deliver(scan)

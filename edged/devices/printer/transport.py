"""The ways bytes reach an ESC/POS printer, behind one small interface.

`serial`, `network`, `file` (/dev/usb/lp0 and friends) and `usb` (libusb through
python-escpos and pyusb, blocking calls in threads). Each `open_*` returns an open Transport or
raises DeviceAbsent (not there) / DeviceError (there but unusable), with the path in the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from edged.devices.printer.escpos_cache import use_shared_cache
from edged.devices.serialport import open_serial
from edged.devices.state import DeviceAbsent, DeviceError, DeviceGone

READ_CHUNK = 4096
CONNECT_TIMEOUT_S = 5.0
DEFAULT_PORT = 9100  # "raw" / JetDirect port of network printers
EMPTY_READ_PAUSE_S = 0.05
USB_READ_TIMEOUT_MS = 200  # one blocking read in the USB reader thread
USB_WRITE_TIMEOUT_MS = 10_000


class Transport(Protocol):
    """An open connection to a printer."""

    name: str  # for messages: the path, host:port or USB ids
    # False when the device may be write-only (a plain lp device): silence to status requests
    # then means "status unknown", not "switched off".
    must_answer: bool

    async def write(self, data: bytes) -> None:
        """Send `data`; returns once the OS has taken all of it."""
        ...

    async def read(self) -> bytes:
        """Some bytes from the printer (never empty); DeviceGone when the link is lost."""
        ...

    async def close(self) -> None: ...


TransportFactory = Callable[[], Awaitable[Transport]]


class StreamTransport:
    """A printer behind asyncio streams (serial port or TCP)."""

    def __init__(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.name = name
        self.must_answer = True
        self._reader = reader
        self._writer = writer
        # drain() then waits until everything is handed to the OS, not just below 64 KiB.
        writer.transport.set_write_buffer_limits(0)

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise DeviceGone(f"{self.name}: connection closed")
        self._writer.write(data)
        try:
            await self._writer.drain()
        except OSError as exc:
            raise _gone(self.name, exc) from None

    async def read(self) -> bytes:
        try:
            data = await self._reader.read(READ_CHUNK)
        except OSError as exc:  # pyserial's SerialException is an OSError too
            raise _gone(self.name, exc) from None
        if not data:
            raise DeviceGone(f"{self.name}: connection closed by the printer")
        return data

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):  # closing a connection that is already broken
            await self._writer.wait_closed()


async def open_serial_transport(
    path: str, *, baudrate: int = 9600, bytesize: int = 8, parity: str = "none", stopbits: int = 1
) -> Transport:
    """A serial printer (or a simulator's pty) at `path`."""
    reader, writer = await open_serial(
        path, baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits
    )
    return StreamTransport(path, reader, writer)


async def open_network_transport(host: str, port: int = DEFAULT_PORT) -> Transport:
    """A network printer's raw port (9100), with Nagle off so status requests go out at once."""
    name = f"{host}:{port}"
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise DeviceError(f"{name}: no answer within {CONNECT_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise DeviceError(f"{name}: cannot connect: {exc.strerror or exc}") from None
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return StreamTransport(name, reader, writer)


class FileTransport:
    """A printer device node such as /dev/usb/lp0, read too when the kernel driver allows it."""

    def __init__(self, path: str, fd: int, readable: bool) -> None:
        self.name = path
        self.must_answer = False
        self._fd = fd
        self._readable = readable
        self._loop = asyncio.get_running_loop()
        self._closed = False

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await self._ready(self._loop.add_writer, self._loop.remove_writer)
                continue
            except OSError as exc:
                raise _gone(self.name, exc) from None
            view = view[written:]

    async def read(self) -> bytes:
        while self._readable:
            try:
                data = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                await self._ready(self._loop.add_reader, self._loop.remove_reader)
                continue
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise _gone(self.name, exc) from None
                self._readable = False  # usblp: a printer without a back channel
                break
            if data:
                return data
            await asyncio.sleep(EMPTY_READ_PAUSE_S)  # "nothing yet" from a printer class driver
        never: asyncio.Future[bytes] = self._loop.create_future()
        return await never  # write-only: nothing ever comes; ends when cancelled

    async def _ready(self, add: Callable[..., None], remove: Callable[[int], object]) -> None:
        if self._closed:
            raise DeviceGone(f"{self.name}: closed")
        ready: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add(self._fd, wake)
        try:
            await ready
        finally:
            remove(self._fd)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


async def open_file_transport(path: str) -> Transport:
    """A device node, opened read-write if possible (status), else write-only."""
    flags = os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, os.O_RDWR | flags)
            readable = True
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EINVAL, errno.EROFS):
                raise
            fd = os.open(path, os.O_WRONLY | flags)
            readable = False
    except FileNotFoundError:
        raise DeviceAbsent(
            f"{path} does not exist (unplugged, or check the udev rule/path)"
        ) from None
    except PermissionError:
        raise DeviceError(
            f"{path}: permission denied; add the edged user to the device's group (lp)"
        ) from None
    except OSError as exc:
        raise DeviceError(f"{path}: cannot open: {exc.strerror or exc}") from None
    # Only a character device can answer; a plain file (a capture) is written to, never read.
    readable = readable and stat.S_ISCHR(os.fstat(fd).st_mode)
    return FileTransport(path, fd, readable)


def _gone(name: str, exc: OSError) -> DeviceGone:
    return DeviceGone(f"{name}: connection lost: {exc.strerror or exc}")


class UsbTransport:
    """A USB printer through libusb (python-escpos finds it; pyusb moves the bytes)."""

    def __init__(self, name: str, printer: Any) -> None:
        self.name = name
        self.must_answer = True
        self._printer = printer
        self._device = printer.device
        self._closed = False

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        import usb.core

        try:
            self._device.write(self._printer.out_ep, data, USB_WRITE_TIMEOUT_MS)
        except usb.core.USBError as exc:
            raise DeviceGone(f"{self.name}: write failed: {exc}") from None

    async def read(self) -> bytes:
        while True:
            data = await asyncio.to_thread(self._read)
            if data:
                return data

    def _read(self) -> bytes:
        import usb.core

        if self._closed:
            raise DeviceGone(f"{self.name}: closed")
        try:
            return bytes(self._device.read(self._printer.in_ep, 64, USB_READ_TIMEOUT_MS))
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as exc:
            raise DeviceGone(f"{self.name}: read failed: {exc}") from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        import usb.util

        await asyncio.to_thread(usb.util.dispose_resources, self._device)


async def open_usb_transport(
    vendor_id: int, product_id: int, *, in_ep: int = 0x82, out_ep: int = 0x01
) -> Transport:
    """The USB printer with these ids (the first one found); needs `pip install edged[usb]`."""
    name = f"usb {vendor_id:04x}:{product_id:04x}"
    use_shared_cache()
    try:
        import usb.core  # noqa: F401  (only to say clearly what is missing)
        from escpos.exceptions import DeviceNotFoundError
        from escpos.printer import Usb
    except ImportError:
        raise DeviceError(
            f"{name}: USB printers need pyusb: pip install edged[usb] (and libusb-1.0)"
        ) from None
    printer = Usb(vendor_id, product_id, in_ep=in_ep, out_ep=out_ep)
    try:
        await asyncio.to_thread(printer.open)
    except DeviceNotFoundError as exc:
        raise DeviceAbsent(
            f"{name}: not found (unplugged, switched off, or no permission: check the udev "
            f"rule): {exc}"
        ) from None
    return UsbTransport(name, printer)

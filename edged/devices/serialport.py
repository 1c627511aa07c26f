"""Open a serial device (a real tty, a udev symlink or a simulator's pty) as asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
import os

import serial
import serial_asyncio_fast

from edged.devices.state import DeviceAbsent, DeviceError

CLOSE_TIMEOUT_S = 2.0  # closing a port runs in a thread; a wedged driver must not hang us

PARITIES = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD}


async def open_serial(
    path: str,
    *,
    baudrate: int,
    bytesize: int = 8,
    parity: str = "none",
    stopbits: int = 1,
    limit: int = 64 * 1024,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over `path`; DeviceAbsent when the node is missing, DeviceError otherwise."""
    if not os.path.exists(path):
        raise DeviceAbsent(f"{path} does not exist (unplugged, or check the udev rule/path)")
    try:
        return await serial_asyncio_fast.open_serial_connection(
            url=path,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=PARITIES[parity],
            stopbits=stopbits,
            limit=limit,
        )
    except serial.SerialException as exc:
        if isinstance(exc.__context__, PermissionError) or "Permission denied" in str(exc):
            raise DeviceError(
                f"{path}: permission denied; add the edged user to the device's group "
                "(dialout, lp) or fix the udev rule"
            ) from None
        raise DeviceError(f"{path}: cannot open: {exc}") from None


async def close_stream(writer: asyncio.StreamWriter) -> None:
    """Close a serial port (or a device's TCP connection) and wait until it is closed, so
    that the next open finds it free; a close that fails or hangs is given up quietly."""
    writer.close()
    with contextlib.suppress(OSError, serial.SerialException, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await writer.wait_closed()

"""The line to a ZVT terminal: serial (DLE framing, CRC, ACK/NAK) or bare APDUs over TCP.

A `Link` owns a reader task that turns whatever the PT sends into an inbox of APDUs; on
serial it answers every frame at once with ACK, or NAK when the frame is broken. `send`
writes one APDU and, on serial, waits for the PT's ACK, sending a NAKed or unacknowledged
frame again up to `retries` times. Frames are written whole, under a lock, so an abort sent
while a transaction runs never cuts another frame in half.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import serial
import structlog

from edged.devices.payment.zvt import framing
from edged.devices.payment.zvt.apdu import Apdu, ApduStreamDecoder, parse_apdu
from edged.devices.payment.zvt.errors import ZvtProtocolError
from edged.devices.payment.zvt.framing import Ack, BadFrame, Frame, Nak
from edged.devices.payment.zvt.protocol import NO_ANSWER
from edged.devices.serialport import close_stream, open_serial
from edged.devices.state import DeviceError, DeviceGone

log = structlog.get_logger(__name__)

DEFAULT_PORT = 20007
BYTE_TIMEOUT_S = 0.5  # T1: silence inside a frame before it is dropped and NAKed
ACK_TIMEOUT_S = 5.0  # T3: the PT's ACK/NAK after one of our frames
RETRIES = 3  # retransmissions of a NAKed or unacknowledged frame
COMMAND_TIMEOUT_S = 5.0  # the PT's 80 00 00 after a command
RESULT_TIMEOUT_S = 180.0  # T4: the longest silence while the PT works (cardholder at the PIN pad)
CONNECT_TIMEOUT_S = 5.0
ENQUIRY_INTERVAL_S = 60.0  # status enquiry while idle, so a dead PT is noticed
INBOX_MAX = 64  # APDUs held for the driver; the oldest is dropped (and logged) beyond this
READ_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class ZvtTimings:
    """Every timeout of the driver, in seconds; tests make them small."""

    byte_timeout_s: float = BYTE_TIMEOUT_S
    ack_timeout_s: float = ACK_TIMEOUT_S
    retries: int = RETRIES
    command_timeout_s: float = COMMAND_TIMEOUT_S
    result_timeout_s: float = RESULT_TIMEOUT_S
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    enquiry_interval_s: float | None = ENQUIRY_INTERVAL_S  # None: never poll


@dataclass(frozen=True, slots=True)
class SerialTarget:
    path: str  # a udev symlink or /dev/serial/by-id/... survives re-plugging
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "none"
    stopbits: int = 2


@dataclass(frozen=True, slots=True)
class TcpTarget:
    host: str
    port: int = DEFAULT_PORT


Target = SerialTarget | TcpTarget


class NoAnswer(DeviceError):
    """The PT did not answer in time: whether it acted on our last message is unknown."""

    def __init__(self, message: str = NO_ANSWER) -> None:
        super().__init__(message)


class LinkRejected(DeviceError):
    """The PT answered NAK to every copy of a frame: it never took the message."""


class Link(abc.ABC):
    """One open line to the PT. One sender at a time; one receiver (the driver's operation)."""

    def __init__(self, name: str, writer: asyncio.StreamWriter, timings: ZvtTimings) -> None:
        self.name = name
        self.timings = timings
        self._writer = writer
        self._send_lock = asyncio.Lock()
        self._inbox: deque[Apdu] = deque()
        self._arrived = asyncio.Event()
        self._closed = asyncio.Event()
        self.reason = ""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @abc.abstractmethod
    async def send(self, apdu: Apdu) -> None:
        """Write one APDU; raises DeviceGone, NoAnswer or LinkRejected."""

    @abc.abstractmethod
    async def run_reader(self, reader: asyncio.StreamReader) -> None:
        """Decode what arrives into the inbox until the line closes."""

    async def receive(self, timeout_s: float) -> Apdu:
        """The next APDU from the PT; NoAnswer after `timeout_s`, DeviceGone once closed."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if self._inbox:
                        return self._inbox.popleft()
                    if self.closed:
                        raise DeviceGone(self.reason)
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise NoAnswer() from None

    def stale(self) -> list[Apdu]:
        """Take what arrived while nobody listened (late answers to an earlier command)."""
        items = list(self._inbox)
        self._inbox.clear()
        return items

    def close(self, reason: str) -> None:
        """Mark the line dead; the first reason wins. The reader task ends with the context."""
        if self.closed:
            return
        self.reason = reason
        self._closed.set()
        self._arrived.set()
        log.info("zvt_link_closed", device=self.name, reason=reason)

    async def wait_closed(self, timeout_s: float | None) -> bool:
        """True once the line is closed; False if `timeout_s` passed first."""
        if timeout_s is None:
            await self._closed.wait()
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._closed.wait()
        return self.closed

    def _deliver(self, apdu: Apdu) -> None:
        if len(self._inbox) >= INBOX_MAX:
            dropped = self._inbox.popleft()
            log.warning("zvt_inbox_full", device=self.name, dropped=dropped.command)
        log.debug("zvt_received", device=self.name, command=apdu.command, size=len(apdu.data))
        self._inbox.append(apdu)
        self._arrived.set()

    def _check_open(self) -> None:
        if self.closed:
            raise DeviceGone(self.reason)

    async def _write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, serial.SerialException) as exc:
            self.close(f"connection lost: {exc}")
            raise DeviceGone(self.reason) from None


class SerialLink(Link):
    """DLE STX ... DLE ETX CRC frames, each answered with ACK or NAK."""

    def __init__(self, name: str, writer: asyncio.StreamWriter, timings: ZvtTimings) -> None:
        super().__init__(name, writer, timings)
        self._decoder = framing.FrameDecoder()
        self._pending: asyncio.Future[bool] | None = None  # ACK (True) or NAK (False)

    async def send(self, apdu: Apdu) -> None:
        """Send one APDU; LinkRejected after NAK to every copy, NoAnswer without any ACK."""
        frame = framing.encode_frame(apdu.encode())
        naks = 0
        async with self._send_lock:
            for attempt in range(1, self.timings.retries + 2):
                self._check_open()
                answer = asyncio.get_running_loop().create_future()
                self._pending = answer
                try:
                    async with asyncio.timeout(self.timings.ack_timeout_s):
                        await self._write(frame)
                        accepted: bool | None = await answer
                except TimeoutError:
                    accepted = None
                finally:
                    self._pending = None
                    if answer.done() and not answer.cancelled():
                        answer.exception()  # retrieved: the line died while we wrote
                if accepted:
                    log.debug("zvt_sent", device=self.name, command=apdu.command, attempt=attempt)
                    return
                naks += accepted is False
                log.warning(
                    "zvt_frame_not_acknowledged",
                    device=self.name,
                    command=apdu.command,
                    attempt=attempt,
                    answer="NAK" if accepted is False else "none",
                )
        if naks:
            raise LinkRejected(
                f"the payment terminal rejected {apdu.command} {naks} times (NAK): "
                "check the cable, the baud rate and the parity"
            )
        raise NoAnswer()

    async def run_reader(self, reader: asyncio.StreamReader) -> None:
        try:
            while not self.closed:
                if self._decoder.in_frame:
                    try:
                        async with asyncio.timeout(self.timings.byte_timeout_s):
                            data = await reader.read(READ_CHUNK)
                    except TimeoutError:
                        self._handle_all(self._decoder.reset())
                        continue
                else:
                    data = await reader.read(READ_CHUNK)
                if not data:
                    self.close("the serial line closed (unplugged?)")
                    return
                self._handle_all(self._decoder.feed(data))
        except (OSError, serial.SerialException) as exc:
            self.close(f"connection lost: {exc}")

    def _handle_all(self, events: list[framing.LinkEvent]) -> None:
        for event in events:
            if isinstance(event, Frame):
                self._writer.write(bytes([framing.ACK]))
                try:
                    apdu = parse_apdu(event.apdu)
                except ZvtProtocolError as exc:
                    log.warning("zvt_bad_apdu", device=self.name, error=str(exc))
                    continue
                self._deliver(apdu)
            elif isinstance(event, BadFrame):
                self._writer.write(bytes([framing.NAK]))
                log.warning("zvt_frame_rejected", device=self.name, reason=event.reason)
            elif isinstance(event, Ack | Nak):
                pending = self._pending
                if pending is not None and not pending.done():
                    pending.set_result(isinstance(event, Ack))

    def close(self, reason: str) -> None:
        pending = self._pending
        if pending is not None and not pending.done():
            pending.set_exception(DeviceGone(reason))
        super().close(reason)


class TcpLink(Link):
    """Bare APDUs; TCP itself guarantees delivery, so there is no ACK/NAK layer."""

    def __init__(self, name: str, writer: asyncio.StreamWriter, timings: ZvtTimings) -> None:
        super().__init__(name, writer, timings)
        self._decoder = ApduStreamDecoder()

    async def send(self, apdu: Apdu) -> None:
        async with self._send_lock:
            self._check_open()
            try:
                async with asyncio.timeout(self.timings.ack_timeout_s):
                    await self._write(apdu.encode())
            except TimeoutError:
                raise NoAnswer() from None
        log.debug("zvt_sent", device=self.name, command=apdu.command)

    async def run_reader(self, reader: asyncio.StreamReader) -> None:
        try:
            while not self.closed:
                data = await reader.read(READ_CHUNK)
                if not data:
                    self.close("the payment terminal closed the TCP connection")
                    return
                for apdu in self._decoder.feed(data):
                    self._deliver(apdu)
        except OSError as exc:
            self.close(f"connection lost: {exc}")


@contextlib.asynccontextmanager
async def open_link(target: Target, timings: ZvtTimings, name: str) -> AsyncIterator[Link]:
    """Open the line and run its reader for the block; close both at its end.

    DeviceAbsent when the serial node is missing, DeviceError (or NoAnswer) when it cannot be
    opened or the TCP peer cannot be reached.
    """
    link: Link
    if isinstance(target, SerialTarget):
        reader, writer = await open_serial(
            target.path,
            baudrate=target.baudrate,
            bytesize=target.bytesize,
            parity=target.parity,
            stopbits=target.stopbits,
        )
        link = SerialLink(name, writer, timings)
    else:
        reader, writer = await _connect_tcp(target, timings)
        link = TcpLink(name, writer, timings)
    task = asyncio.create_task(link.run_reader(reader), name=f"zvt-reader-{name}")
    try:
        yield link
    finally:
        link.close("closed by the driver")
        task.cancel()
        await asyncio.wait([task])
        await close_stream(writer)


async def _connect_tcp(
    target: TcpTarget, timings: ZvtTimings
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    where = f"{target.host}:{target.port}"
    try:
        async with asyncio.timeout(timings.connect_timeout_s):
            reader, writer = await asyncio.open_connection(target.host, target.port)
    except TimeoutError:
        raise NoAnswer(f"{NO_ANSWER} at {where} (connecting timed out)") from None
    except OSError as exc:
        raise DeviceError(
            f"cannot connect to the payment terminal at {where}: {exc.strerror or exc}; check "
            f"that it is on and that its ECR interface listens on TCP port {target.port}"
        ) from None
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer

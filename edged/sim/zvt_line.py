"""The virtual ZVT terminal's end of the line: serial frames over a pty, or bare APDUs over TCP.

A `Line` moves whole APDUs between the PT (edged.sim.zvt) and the ECR, so the PT's side of the
conversation does not care which cable it is on. The serial line answers every frame with ACK
or NAK (honouring the PT's `nak_next` switch) and retransmits its own frames until the ECR
takes them.
"""

from __future__ import annotations

import abc
import asyncio
import os
from collections import deque
from typing import Protocol

import structlog

from edged.devices.payment.zvt import framing
from edged.devices.payment.zvt.apdu import Apdu, ApduStreamDecoder, parse_apdu
from edged.devices.payment.zvt.errors import ZvtProtocolError
from edged.devices.payment.zvt.framing import Ack, BadFrame, Frame, Nak

log = structlog.get_logger(__name__)

RETRIES = 3
READ_CHUNK = 4096


class LineSwitches(Protocol):
    """What the serial line reads and counts on the PT: the NAK switch and the ACK timeout."""

    nak_pending: int
    naks_sent: int
    ack_timeout_s: float


class LineClosed(Exception):
    """The cable is pulled or the ECR went away."""


class Line(abc.ABC):
    """One connection to the ECR, carrying whole APDUs."""

    @abc.abstractmethod
    async def send(self, apdu: Apdu) -> bool:
        """Send one APDU; False when the ECR never took it."""

    @abc.abstractmethod
    async def receive(self, timeout_s: float | None) -> Apdu | None:
        """The next APDU, None after `timeout_s`; LineClosed when the line is gone."""


class PtyLine(Line):
    """The PT end of a serial line on a pty master: frames, ACK/NAK, retransmission."""

    def __init__(self, fd: int, sim: LineSwitches) -> None:
        self._fd = fd
        self._sim = sim
        self._decoder = framing.FrameDecoder()
        self._inbox: asyncio.Queue[Apdu] = asyncio.Queue()
        self._pending: asyncio.Future[bool] | None = None
        asyncio.get_running_loop().add_reader(fd, self._readable)

    def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: nobody holds the slave open; the sim's own slave fd prevents it
            return
        for event in self._decoder.feed(data):
            self._on_event(event)

    def _on_event(self, event: framing.LinkEvent) -> None:
        if isinstance(event, Frame):
            if self._sim.nak_pending > 0:
                self._sim.nak_pending -= 1
                self._sim.naks_sent += 1
                self._write(bytes([framing.NAK]))
                log.info("zvt_sim_nak", left=self._sim.nak_pending)
                return
            self._write(bytes([framing.ACK]))
            try:
                apdu = parse_apdu(event.apdu)
            except ZvtProtocolError as exc:
                log.warning("zvt_sim_bad_apdu", error=str(exc))
                return
            self._inbox.put_nowait(apdu)
        elif isinstance(event, BadFrame):
            self._write(bytes([framing.NAK]))
            log.warning("zvt_sim_frame_rejected", reason=event.reason)
        elif isinstance(event, Ack | Nak):
            pending = self._pending
            if pending is not None and not pending.done():
                pending.set_result(isinstance(event, Ack))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                log.warning("zvt_sim_line_full", dropped=len(view))
                return
            view = view[written:]

    async def send(self, apdu: Apdu) -> bool:
        frame = framing.encode_frame(apdu.encode())
        for _ in range(RETRIES + 1):
            answer = asyncio.get_running_loop().create_future()
            self._pending = answer
            self._write(frame)
            try:
                async with asyncio.timeout(self._sim.ack_timeout_s):
                    if await answer:
                        return True
            except TimeoutError:
                pass
            finally:
                self._pending = None
        log.warning("zvt_sim_frame_not_taken", command=apdu.command)
        return False

    async def receive(self, timeout_s: float | None) -> Apdu | None:
        try:
            async with asyncio.timeout(timeout_s):
                return await self._inbox.get()
        except TimeoutError:
            return None


class TcpLine(Line):
    """The PT end of a TCP connection: bare APDUs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self.writer = writer
        self._decoder = ApduStreamDecoder()
        self._ready: deque[Apdu] = deque()

    async def send(self, apdu: Apdu) -> bool:
        try:
            self.writer.write(apdu.encode())
            await self.writer.drain()
        except OSError:
            raise LineClosed from None
        return True

    async def receive(self, timeout_s: float | None) -> Apdu | None:
        try:
            async with asyncio.timeout(timeout_s):
                while not self._ready:
                    try:
                        data = await self._reader.read(READ_CHUNK)
                    except OSError:
                        raise LineClosed from None
                    if not data:
                        raise LineClosed
                    self._ready.extend(self._decoder.feed(data))
                return self._ready.popleft()
        except TimeoutError:
            return None

"""SimConcertTerminal: the terminal's side of Concert E+ over a pty, with the same codec.

The driver opens a stable path (a symlink, like a udev rule's) to the pty's slave end. Unplug
closes the master and removes the symlink; plug makes a new pty pair and points the symlink at
it. Each transaction ends as the next scripted Reply says: approve, decline (status 7), time
out (accept the request, never answer), after a cardholder delay, with corrupted answer
frames first; `nak_next(n)` NAKs the next n request frames and `mute` ignores everything.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog

from edged.devices.payment.concert.codec import (
    ACK,
    ENQ,
    EOT,
    NAK,
    STX,
    Answer,
    AnswerFlag,
    FrameError,
    Status,
    encode_answer,
    frame,
    parse_request,
    read_frame,
)
from edged.devices.payment.concert.codec import Request as ConcertRequest
from edged.devices.state import ProtocolError
from edged.sim.cable import PtyPair, point

log = structlog.get_logger(__name__)

DEVICE = "simulated Concert terminal"
REPLY_TIMEOUT_S = 3.0
ATTEMPTS = 3  # ENQ tries, and frames sent or NAKed, per exchange
TEST_PAN = "4970100000000014"  # a test card number: only sent with answer flag '1'


@dataclass(frozen=True, slots=True)
class Reply:
    """How the simulated terminal ends one transaction."""

    status: int = Status.SUCCESS
    silent: bool = False  # take the request and never answer (the cardholder walked away)
    delay_s: float = 0.0  # the cardholder's time before the answer
    corrupt: int = 0  # send the answer with a wrong LRC this many times first

    @classmethod
    def approve(cls, delay_s: float = 0.0) -> Reply:
        return cls(Status.SUCCESS, delay_s=delay_s)

    @classmethod
    def decline(cls, delay_s: float = 0.0) -> Reply:
        return cls(Status.REJECTED, delay_s=delay_s)

    @classmethod
    def time_out(cls) -> Reply:
        return cls(silent=True)


class _Pty:
    """One plug-in: a pty pair. The driver opens the slave; we speak on the master."""

    def __init__(self) -> None:
        self._pair = PtyPair()
        self.master = self._pair.master
        self.slave_path = self._pair.tty
        self._buf = bytearray()
        self._ready = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 1024)
        except BlockingIOError:
            return
        except OSError:  # we hold the slave open, so this is not the driver closing it
            self._loop.remove_reader(self.master)
            return
        self._buf += data
        self._ready.set()

    async def next_byte(self, timeout_s: float | None) -> int | None:
        """The next byte from the driver; None after `timeout_s` without one."""
        while not self._buf:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return None
        return self._buf.pop(0)

    def write(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):  # nobody reads: a cable to nowhere
            os.write(self.master, data)

    def close(self) -> None:
        self._loop.remove_reader(self.master)
        self._pair.close()


class SimConcertTerminal:
    """A Concert E+ terminal on a pty, reached by the driver through `path` (a symlink)."""

    def __init__(
        self,
        path: str,
        *,
        pan: str = TEST_PAN,
        delay_s: float = 0.0,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.pan = pan
        self.delay_s = delay_s  # the cardholder's time when no Reply is scripted
        self.reply_timeout_s = reply_timeout_s
        self.mute = False  # answer nothing at all (off, hung, or Cash Connection off)
        self.requests: list[ConcertRequest] = []  # every request taken, in order
        self._replies: collections.deque[Reply] = collections.deque()
        self._nak = 0
        self._pty: _Pty | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SimConcertTerminal:
        self.plug()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.unplug()

    async def run(self) -> None:
        """Plug in and serve until cancelled (`driver = "sim"` in the daemon)."""
        async with self:
            await asyncio.Future()

    def script(self, *replies: Reply) -> None:
        """How the next transactions end, in order; unscripted ones are approved."""
        self._replies.extend(replies)

    def nak_next(self, count: int) -> None:
        """Answer NAK to the next `count` request frames, however good they are."""
        self._nak = count

    def plug(self) -> None:
        """A new pty pair; `path` points at its slave; serve it."""
        if self._pty is not None:
            raise RuntimeError(f"{self.path} is plugged in already")
        self._pty = _Pty()
        point(Path(self.path), self._pty.slave_path)
        self._task = asyncio.create_task(self._serve(self._pty), name="sim-concert")
        log.info("sim_concert_plugged", path=self.path, tty=self._pty.slave_path)

    async def unplug(self) -> None:
        """Close the master (the driver's line drops) and remove the symlink."""
        if self._pty is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pty.close()
        self._pty = self._task = None
        log.info("sim_concert_unplugged", path=self.path)

    # -- the terminal's side of the protocol ---------------------------------------------------

    async def _serve(self, pty: _Pty) -> None:
        while True:
            if await pty.next_byte(None) != ENQ or self.mute:
                continue
            pty.write(bytes([ACK]))
            request = await self._receive_request(pty)
            if request is None:
                continue
            self.requests.append(request)
            reply = self._replies.popleft() if self._replies else Reply(delay_s=self.delay_s)
            log.info(
                "sim_concert_request",
                kind=request.transaction_type.name,
                amount=request.amount,
                status=None if reply.silent else int(reply.status),
            )
            if reply.silent:
                continue
            await asyncio.sleep(reply.delay_s)
            await self._answer(pty, request, reply)

    async def _receive_request(self, pty: _Pty) -> ConcertRequest | None:
        for _ in range(ATTEMPTS):
            message = await self._next_frame(pty)
            if message is None:
                return None
            if isinstance(message, FrameError) or self._nak > 0:
                self._nak = max(0, self._nak - 1)
                pty.write(bytes([NAK]))
                continue
            pty.write(bytes([ACK]))
            await pty.next_byte(self.reply_timeout_s)  # the ECR's EOT
            try:
                return parse_request(message, DEVICE)
            except ProtocolError as exc:
                log.warning("sim_concert_bad_request", error=str(exc))
                return None
        return None

    async def _next_frame(self, pty: _Pty) -> bytes | FrameError | None:
        """A frame's message, the FrameError of a bad one, or None (timeout, EOT)."""
        while (byte := await pty.next_byte(self.reply_timeout_s)) != STX:
            if byte is None or byte == EOT:
                return None
            if byte == ENQ:  # our ACK got lost
                pty.write(bytes([ACK]))
        buffer = bytearray([STX])
        while True:
            try:
                found = read_frame(buffer, DEVICE)
            except FrameError as exc:
                return exc
            if found is not None:
                return found[0]
            byte = await pty.next_byte(self.reply_timeout_s)
            if byte is None:
                return FrameError(f"{DEVICE}: frame cut short", skip=len(buffer))
            buffer.append(byte)

    async def _answer(self, pty: _Pty, request: ConcertRequest, reply: Reply) -> None:
        answer = Answer(
            pos_number=request.pos_number,
            status=reply.status,
            amount=request.amount,
            payment_mode=request.payment_mode,
            currency_numeric=request.currency_numeric,
            private=request.private,
        )
        report = self.pan if request.answer_flag is AnswerFlag.WITH_REPORT else None
        good = frame(encode_answer(answer, report))
        bad = good[:-1] + bytes([good[-1] ^ 0xFF])
        corrupt = reply.corrupt
        for _ in range(ATTEMPTS):
            pty.write(bytes([ENQ]))
            if await pty.next_byte(self.reply_timeout_s) == ACK:
                break
            pty.write(bytes([EOT]))
        else:
            log.warning("sim_concert_answer_not_taken", reason="ENQ not acknowledged")
            return
        for _ in range(ATTEMPTS):
            pty.write(bad if corrupt > 0 else good)
            corrupt -= 1
            byte = await pty.next_byte(self.reply_timeout_s)
            if byte == ACK:
                break
        else:
            log.warning("sim_concert_answer_not_taken", reason="answer frame refused")
        pty.write(bytes([EOT]))

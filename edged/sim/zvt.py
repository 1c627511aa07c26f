"""`SimZvtTerminal`: a virtual ZVT card terminal (the PT side) for tests and the demo.

It runs the driver's own codec on the other end of a pty pair, reached through a stable
symlink as a udev rule would give a real terminal, or of a TCP socket on 127.0.0.1. Per
transaction it does what it is told: approve, decline, ask for the PIN and wait (so the till
can abort), or fall silent. `nak_next(n)` rejects the next n frames on the serial line;
`unplug()` and `replug()` pull and reconnect the cable. It never logs card data.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from edged.devices.payment.zvt import codes, commands, messages
from edged.devices.payment.zvt.apdu import ACK_APDU, Apdu, negative_ack
from edged.devices.payment.zvt.errors import ZvtProtocolError
from edged.devices.payment.zvt.fields import BmpValue, decode_bmps
from edged.devices.payment.zvt.tlv import Tlv
from edged.sim.cable import PtyPair, point
from edged.sim.zvt_line import Line, LineClosed, PtyLine, TcpLine

log = structlog.get_logger(__name__)

TEST_PAN = "6799998900000000019"  # a public test card number, never a real one
SOFTWARE_VERSION = "edged-sim-zvt 1"
ACK_TIMEOUT_S = 5.0  # how long the PT waits for the ECR's ACK and 80 00 00
PIN_TIMEOUT_S = 60.0  # the cardholder's time at the PIN pad before 06 1E 6C
CLOSE_TIMEOUT_S = 2.0

INSERT_CARD = 0x0A
ENTER_PIN = 0x01
PLEASE_WAIT = 0x0E
WAITING_FOR_HOST = 0x04
FUNCTION_NOT_POSSIBLE = 0x83
PROTOCOL_ERROR = 0x9A
REVERSAL_NOT_POSSIBLE = 0xB5
WRONG_CURRENCY = 0x6F
NOT_REGISTERED = 0x6B


class Behaviour(enum.Enum):
    APPROVE = "approve"
    APPROVE_OFFLINE = "approve_offline"  # approved by the PT alone: payment type 0x40 (offline)
    DECLINE = "decline"  # status information with the result code, then 06 1E
    ASK_PIN = "ask_pin"  # "enter PIN", then wait for 06 B0, enter_pin() or the PIN timeout
    SILENT = "silent"  # acknowledge the command, then never answer


@dataclass(frozen=True, slots=True)
class SimTransaction:
    """What the virtual PT remembers of a transaction (its "journal")."""

    kind: str  # "payment", "refund", "reversal"
    amount: int
    currency: int
    result_code: int
    trace_number: int
    receipt_no: int | None
    turnover_no: int | None
    auth_code: str | None
    date: str  # MMDD
    time: str  # HHMMSS
    payment_type: int = messages.PAYMENT_TYPE_ONLINE  # BMP 0x19 of its status information


@dataclass
class _Totals:
    amount: int = 0
    count: int = 0


@dataclass
class _Counters:
    trace: int = 0
    receipt: int = 0
    turnover: int = 0
    reversed: set[int] = field(default_factory=set)


class SimZvtTerminal:
    """A virtual ZVT PT. Serve it with `run_pty(link)` or `run_tcp()` as a task.

    Script the next transactions with approve_next / decline_next / ask_pin_next /
    silent_next (one step per payment or refund; with no script it approves). The PAN is
    sent unmasked unless `masks_pan`, so that the driver's own masking is what is tested.
    """

    def __init__(
        self,
        *,
        terminal_id: str = "52500038",
        pan: str = TEST_PAN,
        card_name: str = "Mastercard",
        card_type: int = 6,
        auth_code: str = "A1B2C3",
        vu_number: str = "SIMVU0000000001",
        masks_pan: bool = False,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        pin_timeout_s: float = PIN_TIMEOUT_S,
    ) -> None:
        self.terminal_id = terminal_id
        self._pan = pan
        self.card_name = card_name
        self.card_type = card_type
        self.auth_code = auth_code
        self.vu_number = vu_number
        self.masks_pan = masks_pan
        self.ack_timeout_s = ack_timeout_s
        self.pin_timeout_s = pin_timeout_s
        self._script: deque[tuple[Behaviour, int]] = deque()
        self._pin_entered = asyncio.Event()
        self._abort_requested = False  # the ECR sent 06 B0 during the running transaction
        self._frozen = False
        self._registered = False
        self.nak_pending = 0
        self.naks_sent = 0
        self.commands: list[str] = []  # every command received, e.g. "06 00"
        self.config: int | None = None  # the config byte of the last registration
        self.currency = 978
        self.journal: list[SimTransaction] = []
        self._counters = _Counters()
        self._totals = _Totals()
        self._plugged = asyncio.Event()
        self._plugged.set()
        self._unplugged = asyncio.Event()
        self._online = asyncio.Event()
        self.port = 0  # the TCP port once run_tcp listens

    # --- switches ------------------------------------------------------------------------

    def approve_next(self) -> None:
        self._script.append((Behaviour.APPROVE, 0x00))

    def approve_offline_next(self) -> None:
        """Approve the next payment without the host, as a PT within its floor limit does."""
        self._script.append((Behaviour.APPROVE_OFFLINE, 0x00))

    def decline_next(self, result_code: int = 0x05) -> None:
        self._script.append((Behaviour.DECLINE, result_code))

    def ask_pin_next(self) -> None:
        self._script.append((Behaviour.ASK_PIN, 0x00))

    def silent_next(self) -> None:
        self._script.append((Behaviour.SILENT, 0x00))

    def enter_pin(self) -> None:
        """The cardholder types the PIN: a transaction waiting at the PIN pad is approved."""
        self._pin_entered.set()

    def freeze(self) -> None:
        """Hang the terminal's application: commands get no answer (frames are still ACKed)."""
        self._frozen = True

    def thaw(self) -> None:
        self._frozen = False

    def forget_registration(self) -> None:
        """As after a reboot: until the next 06 00, commands get 84 6B (not registered)."""
        self._registered = False

    def nak_next(self, frames: int) -> None:
        """Answer the next `frames` frames from the ECR with NAK (serial only)."""
        self.nak_pending = frames

    def unplug(self) -> None:
        """Pull the cable: the pty master closes and the symlink goes (or TCP stops)."""
        self._plugged.clear()
        self._online.clear()
        self._unplugged.set()

    def replug(self) -> None:
        """Plug it in again: a new pty behind the same symlink (or the same TCP port)."""
        self._unplugged.clear()
        self._plugged.set()

    async def wait_online(self) -> None:
        """Until the line is plugged in and served."""
        await self._online.wait()

    @property
    def last_transaction(self) -> SimTransaction | None:
        return self.journal[-1] if self.journal else None

    # --- serving -------------------------------------------------------------------------

    async def run_pty(self, link: str | os.PathLike[str]) -> None:
        """Serve on a pty whose slave `link` points at, forever; re-plugs make a new pty."""
        path = Path(link)
        while True:
            await self._plugged.wait()
            pair = PtyPair()
            line: PtyLine | None = None
            try:
                point(path, pair.tty)
                line = PtyLine(pair.master, self)
                self._online.set()
                log.info("zvt_sim_plugged", path=str(path))
                await self._serve_until_unplugged(line)
            finally:
                if line is not None:
                    line.stop()
                pair.close()
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                log.info("zvt_sim_unplugged", path=str(path))

    async def run_tcp(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on `host`:`port` (0: any free port, then in `self.port`), forever."""
        clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            for other in clients.values():
                other.close()  # a PT talks to one ECR: the newest connection wins
            clients[task] = writer
            try:
                with contextlib.suppress(LineClosed, OSError):
                    await self._serve(TcpLine(reader, writer))
            finally:
                clients.pop(task, None)
                writer.close()

        while True:
            await self._plugged.wait()
            server = await asyncio.start_server(on_client, host, self.port or port)
            self.port = server.sockets[0].getsockname()[1]
            self._online.set()
            log.info("zvt_sim_listening", host=host, port=self.port)
            try:
                await self._unplugged.wait()
            finally:
                server.close()
                for writer in clients.values():
                    writer.close()  # the handlers end on the EOF this causes
                if clients:
                    await asyncio.wait(list(clients), timeout=CLOSE_TIMEOUT_S)
                log.info("zvt_sim_unplugged", port=self.port)

    async def _serve_until_unplugged(self, line: Line) -> None:
        serve = asyncio.create_task(self._serve(line), name="zvt-sim-serve")
        unplugged = asyncio.create_task(self._unplugged.wait(), name="zvt-sim-unplug")
        try:
            await asyncio.wait({serve, unplugged}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            serve.cancel()
            unplugged.cancel()
            await asyncio.wait({serve, unplugged})
        failure = serve.exception() if serve.done() and not serve.cancelled() else None
        if failure is not None:
            raise failure

    async def _serve(self, line: Line) -> None:
        while True:
            apdu = await line.receive(None)
            if apdu is not None:
                await self._dispatch(line, apdu)

    # --- the PT's side of the conversation -----------------------------------------------

    async def _dispatch(self, line: Line, apdu: Apdu) -> None:
        if apdu.cla in (0x80, 0x84):
            return  # a late acknowledgement
        self.commands.append(apdu.command)
        log.info("zvt_sim_command", command=apdu.command, frozen=self._frozen)
        if self._frozen:
            return
        handlers = {
            (0x06, 0x00): self._registration,
            (0x06, 0x01): self._payment,
            (0x06, 0x31): self._refund,
            (0x06, 0x30): self._reversal,
            (0x06, 0x20): self._repeat_receipt,
            (0x05, 0x01): self._status_enquiry,
            (0x06, 0x50): self._end_of_day,
            (0x06, 0xB0): self._acknowledge,
            (0x06, 0x02): self._acknowledge,
        }
        handler = handlers.get((apdu.cla, apdu.ins))
        if apdu.cla == 0x06 and apdu.ins not in (0x00, 0xB0) and not self._registered:
            await line.send(negative_ack(NOT_REGISTERED))
            return
        if handler is None:
            await line.send(negative_ack(FUNCTION_NOT_POSSIBLE))
            return
        try:
            await handler(line, apdu)
        except ZvtProtocolError as exc:  # raised while parsing, before any answer
            log.warning("zvt_sim_bad_command", command=apdu.command, error=str(exc))
            await line.send(negative_ack(PROTOCOL_ERROR))

    async def _tell(self, line: Line, apdu: Apdu) -> bool:
        """Send a PT message and wait for the ECR's 80 00 00; False if it never came."""
        if not await line.send(apdu):
            return False
        while True:
            reply = await line.receive(self.ack_timeout_s)
            if reply is None:
                log.warning("zvt_sim_no_acknowledgement", command=apdu.command)
                return False
            if reply.cla in (0x80, 0x84):
                return True
            if (reply.cla, reply.ins) == (0x06, 0xB0):
                self._abort_requested = True
                await line.send(ACK_APDU)

    async def _acknowledge(self, line: Line, apdu: Apdu) -> None:
        await line.send(ACK_APDU)

    async def _registration(self, line: Line, apdu: Apdu) -> None:
        registration = commands.parse_registration(apdu)
        self._registered = True
        self.config = registration.config
        if registration.currency is not None:
            self.currency = registration.currency
        await line.send(ACK_APDU)
        await self._tell(
            line,
            messages.completion([(0x19, 0x00), (0x29, self.terminal_id), (0x49, self.currency)]),
        )

    async def _status_enquiry(self, line: Line, apdu: Apdu) -> None:
        commands.parse_password_command(apdu)
        await line.send(ACK_APDU)
        await self._tell(line, messages.enquiry_completion(SOFTWARE_VERSION, 0x00))

    async def _payment(self, line: Line, apdu: Apdu) -> None:
        values = decode_bmps(apdu.data, apdu.data_offset)
        await self._card_transaction(line, "payment", values)

    async def _refund(self, line: Line, apdu: Apdu) -> None:
        _, values = commands.parse_password_command(apdu)
        await self._card_transaction(line, "refund", values)

    async def _card_transaction(self, line: Line, kind: str, values: dict[int, BmpValue]) -> None:
        amount = values.get(0x04)
        if not isinstance(amount, int):
            await line.send(negative_ack(PROTOCOL_ERROR))
            return
        currency = values.get(0x49, self.currency)
        assert isinstance(currency, int)
        await line.send(ACK_APDU)
        behaviour, code = self._script.popleft() if self._script else (Behaviour.APPROVE, 0)
        log.info("zvt_sim_transaction", kind=kind, behaviour=behaviour.value, amount=amount)
        if behaviour is Behaviour.SILENT:
            return
        self._abort_requested = False
        self._pin_entered.clear()
        if not await self._tell(line, messages.intermediate_status(INSERT_CARD)):
            return
        if behaviour is Behaviour.ASK_PIN:
            if not await self._tell(line, messages.intermediate_status(ENTER_PIN)):
                return
            if not self._abort_requested and not await self._wait_at_pin_pad(line):
                self._abort_requested = True
        if self._abort_requested:
            self._record(kind, amount, currency, codes.ABORTED_BY_USER)
            await self._tell(line, messages.pt_abort(codes.ABORTED_BY_USER))
            return
        if currency != self.currency:
            behaviour, code = Behaviour.DECLINE, WRONG_CURRENCY
        for status in (PLEASE_WAIT, WAITING_FOR_HOST):
            if not await self._tell(line, messages.intermediate_status(status)):
                return
        if behaviour is Behaviour.DECLINE:
            record = self._record(kind, amount, currency, code)
            if await self._tell(line, messages.status_information(self._fields(record))):
                await self._tell(line, messages.pt_abort(code))
            return
        offline = behaviour is Behaviour.APPROVE_OFFLINE
        record = self._record(kind, amount, currency, 0x00, offline=offline)
        self._totals.amount += -amount if kind == "refund" else amount
        self._totals.count += 1
        if await self._tell(line, messages.status_information(self._fields(record))):
            await self._tell(line, messages.completion())

    async def _wait_at_pin_pad(self, line: Line) -> bool:
        """True when the PIN was entered; False on 06 B0 from the ECR or the PIN timeout."""
        entered = asyncio.create_task(self._pin_entered.wait(), name="zvt-sim-pin")
        tasks: set[asyncio.Task[Any]] = {entered}
        try:
            async with asyncio.timeout(self.pin_timeout_s):
                while True:
                    received = asyncio.create_task(line.receive(None), name="zvt-sim-pin-rx")
                    tasks.add(received)
                    done, _ = await asyncio.wait(
                        {entered, received}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if received not in done:
                        return True
                    tasks.discard(received)
                    apdu = received.result()
                    if apdu is not None and (apdu.cla, apdu.ins) == (0x06, 0xB0):
                        log.info("zvt_sim_abort_at_pin_pad")
                        await line.send(ACK_APDU)
                        return False
        except TimeoutError:
            log.info("zvt_sim_pin_timeout")
            return False
        finally:
            # Also when the simulator is stopped (unplugged) while it waits here.
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    async def _reversal(self, line: Line, apdu: Apdu) -> None:
        _, values = commands.parse_password_command(apdu)
        receipt = values.get(0x87)
        original = next(
            (
                t
                for t in self.journal
                if t.kind == "payment" and t.result_code == 0 and t.receipt_no == receipt
            ),
            None,
        )
        await line.send(ACK_APDU)
        reversed_ = self._counters.reversed
        if original is None or original.receipt_no is None or original.receipt_no in reversed_:
            await self._tell(line, messages.pt_abort(REVERSAL_NOT_POSSIBLE))
            return
        self._counters.reversed.add(original.receipt_no)
        record = self._record("reversal", original.amount, original.currency, 0x00)
        self._totals.amount -= original.amount
        if await self._tell(line, messages.status_information(self._fields(record))):
            await self._tell(line, messages.completion())

    async def _repeat_receipt(self, line: Line, apdu: Apdu) -> None:
        commands.parse_password_command(apdu)
        await line.send(ACK_APDU)
        last = self.last_transaction
        if last is None:
            await self._tell(line, messages.pt_abort(FUNCTION_NOT_POSSIBLE))
            return
        if await self._tell(line, messages.status_information(self._fields(last))):
            await self._tell(line, messages.completion())

    async def _end_of_day(self, line: Line, apdu: Apdu) -> None:
        commands.parse_password_command(apdu)
        await line.send(ACK_APDU)
        if not await self._tell(line, messages.intermediate_status(PLEASE_WAIT)):
            return
        now = datetime.now()
        self._counters.trace += 1
        totals: list[tuple[int, BmpValue]] = [
            (0x27, 0x00),
            (0x04, max(self._totals.amount, 0)),
            (0x49, self.currency),
            (0x0B, self._counters.trace),
            (0x0C, now.strftime("%H%M%S")),
            (0x0D, now.strftime("%m%d")),
            (0x29, self.terminal_id),
        ]
        if not await self._tell(line, messages.status_information(totals)):
            return
        if self.config is not None and self.config & commands.CONFIG_ECR_PRINTS_ADMIN:
            for text in ("END OF DAY", f"TRANSACTIONS {self._totals.count}"):
                if not await self._tell(line, messages.print_line(text)):
                    return
        self._totals = _Totals()
        await self._tell(line, messages.completion())

    # --- records -------------------------------------------------------------------------

    def _record(
        self, kind: str, amount: int, currency: int, code: int, *, offline: bool = False
    ) -> SimTransaction:
        now = datetime.now()
        counters = self._counters
        counters.trace += 1
        approved = code == 0
        if approved:
            counters.receipt += 1
            counters.turnover += 1
        record = SimTransaction(
            kind=kind,
            amount=amount,
            currency=currency,
            result_code=code,
            trace_number=counters.trace,
            receipt_no=counters.receipt if approved else None,
            turnover_no=counters.turnover if approved else None,
            auth_code=self.auth_code if approved else None,
            date=now.strftime("%m%d"),
            time=now.strftime("%H%M%S"),
            payment_type=messages.PAYMENT_TYPE_OFFLINE if offline else messages.PAYMENT_TYPE_ONLINE,
        )
        self.journal.append(record)
        return record

    def _fields(self, record: SimTransaction) -> list[tuple[int, BmpValue]]:
        """The 04 0F Status-Information a PT sends for `record`."""
        fields: list[tuple[int, BmpValue]] = [
            (0x27, record.result_code),
            (0x04, record.amount),
            (0x49, record.currency),
            (0x0B, record.trace_number),
            (0x0C, record.time),
            (0x0D, record.date),
            (0x0E, "2812"),
            (0x17, 0),
            (0x19, record.payment_type),
            (0x22, self._pan_on_the_wire()),
            (0x29, self.terminal_id),
            (0x2A, self.vu_number),
            (0x8A, self.card_type),
            (0x8B, self.card_name),
            (0x8C, self.card_type),
            (0x06, (Tlv(0x1F10, b"\x02"),)),  # cardholder identification: online PIN
        ]
        if record.auth_code is not None:
            fields.append((0x3B, record.auth_code))
        if record.receipt_no is not None:
            fields.append((0x87, record.receipt_no))
        if record.turnover_no is not None:
            fields.append((0x88, record.turnover_no))
        if record.result_code not in (0, codes.ABORTED_BY_USER):
            fields.append((0x3C, f"declined: {codes.result_text(record.result_code)}"))
        return fields

    def _pan_on_the_wire(self) -> str:
        pan = self._pan
        if not self.masks_pan:
            return pan
        return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]

"""The ECR's side of the Concert E+ link, sans-IO: bytes in, events and bytes to send out.

Sending a request: ENQ -> ACK, STX..ETX LRC -> ACK, EOT. Receiving the answer: the terminal
sends ENQ -> ACK, STX..ETX LRC -> ACK, then EOT. A NAK asks for the frame again. Time is the
caller's: it runs the timer `wait` names (re-armed whenever `timer_epoch` changes) and calls
`timed_out()` when it expires. Nothing here raises on the terminal's bytes.

Assumptions where the public sources are silent (UNVERIFIED): the terminal re-sends a frame
we NAK, and re-sends a frame or its ENQ when our ACK got lost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edged.devices.payment.concert.codec import (
    ACK,
    DEVICE,
    ENQ,
    EOT,
    NAK,
    STX,
    Answer,
    FrameError,
    frame,
    parse_answer,
    read_frame,
)
from edged.devices.state import ProtocolError

ENQ_ATTEMPTS = 3  # our ENQ not acknowledged: EOT, pause, ENQ again (pypostelium does 3)
SEND_ATTEMPTS = 3  # our request frame NAKed
RECEIVE_ATTEMPTS = 3  # an answer frame we could not take (bad LRC, cut short): NAK, again


class Phase(enum.Enum):
    IDLE = "idle"  # nothing under way; a terminal's ENQ starts an (unsolicited) answer
    ENQ_SENT = "enq_sent"  # we sent ENQ; the terminal should ACK (reply timer)
    ENQ_PAUSE = "enq_pause"  # the ENQ was not taken; pausing before the next one (pause timer)
    FRAME_SENT = "frame_sent"  # our request is out; ACK or NAK expected (reply timer)
    AWAIT_ANSWER = "await_answer"  # request accepted; the cardholder acts (cardholder timer)
    RECEIVING = "receiving"  # we ACKed the terminal's ENQ (or NAKed a frame) (reply timer)
    AWAIT_EOT = "await_eot"  # we ACKed the answer; the terminal ends with EOT (reply timer)


class Wait(enum.Enum):
    NONE = "none"
    REPLY = "reply"  # a per-read timeout: 1-3 s
    PAUSE = "pause"  # between ENQ attempts
    CARDHOLDER = "cardholder"  # the long wait for the transaction's end: 2-3 minutes


_WAITS = {
    Phase.IDLE: Wait.NONE,
    Phase.ENQ_SENT: Wait.REPLY,
    Phase.ENQ_PAUSE: Wait.PAUSE,
    Phase.FRAME_SENT: Wait.REPLY,
    Phase.AWAIT_ANSWER: Wait.CARDHOLDER,
    Phase.RECEIVING: Wait.REPLY,
    Phase.AWAIT_EOT: Wait.REPLY,
}


@dataclass(frozen=True, slots=True)
class RequestAccepted:
    """The terminal took the request: the transaction runs on the terminal now."""


@dataclass(frozen=True, slots=True)
class NotStarted:
    """The request (or probe) never reached the terminal: nothing was charged."""

    reason: str
    silent: bool  # no answer at all, rather than a refusal
    probe: bool = False


@dataclass(frozen=True, slots=True)
class Alive:
    """A probe's ENQ was acknowledged: the terminal is there and idle."""


@dataclass(frozen=True, slots=True)
class AnswerReceived:
    """A valid answer, acknowledged; `solicited` is False for a late or stray one."""

    answer: Answer
    solicited: bool


@dataclass(frozen=True, slots=True)
class Unresolved:
    """The request may have started but its outcome could not be read."""

    reason: str
    silent: bool
    solicited: bool = True


Event = RequestAccepted | NotStarted | Alive | AnswerReceived | Unresolved


class EcrLink:
    """One exchange at a time; a request given while the terminal talks waits its turn."""

    def __init__(self, device: str = DEVICE) -> None:
        self.device = device
        self.phase = Phase.IDLE
        self.timer_epoch = 0  # changes whenever the timer `wait` names starts afresh
        self._out = bytearray()
        self._buf = bytearray()
        self._request: bytes | None = None  # framed; kept until its outcome is known
        self._sent = False  # the request frame went out at least once
        self._probe = False
        self._solicited = False  # the answer being received belongs to our request
        self._delivered = False  # the answer being re-received was already reported
        self._attempts = 0

    @property
    def wait(self) -> Wait:
        return _WAITS[self.phase]

    @property
    def busy(self) -> bool:
        """A request is queued or under way: its outcome event is still to come."""
        return self._request is not None

    @property
    def may_have_started(self) -> bool:
        """Our request frame left: the transaction may run on the terminal."""
        return self._request is not None and self._sent

    def start_request(self, message: bytes) -> None:
        """Queue a request message (34 characters); it goes out as soon as the link is idle.

        A probe under way becomes this request: the terminal's ACK to its ENQ is taken for it.
        """
        if self._request is not None:
            raise RuntimeError("a Concert request is already under way")
        self._request = frame(message)
        self._sent = False
        if self._probe:
            self._probe = False
        elif self.phase is Phase.IDLE:
            self._send_enq()

    def start_probe(self) -> None:
        """ENQ then EOT: does the terminal answer? Ignored unless the link is idle."""
        if self.phase is Phase.IDLE and self._request is None:
            self._probe = True
            self._send_enq()

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while self._buf:
            if self.phase is Phase.RECEIVING:
                if not self._receive_frame(events):
                    break
            else:
                byte = self._buf.pop(0)
                self._control(byte, events)
        return events

    def timed_out(self) -> list[Event]:
        """The timer for the current phase expired."""
        events: list[Event] = []
        phase = self.phase
        if phase is Phase.ENQ_SENT:
            self._enq_failed(events, "no answer to ENQ", silent=True)
        elif phase is Phase.ENQ_PAUSE:
            self._send_enq()
        elif phase is Phase.FRAME_SENT:
            self._out.append(EOT)
            self._finish_request(
                events, Unresolved("the terminal did not confirm the request", silent=True)
            )
        elif phase is Phase.AWAIT_ANSWER:
            self._finish_request(
                events, Unresolved("no answer from the terminal in time", silent=True)
            )
        elif phase is Phase.RECEIVING:
            self._buf.clear()
            self._frame_failed(events, "the answer frame did not arrive complete")
        elif phase is Phase.AWAIT_EOT:
            self._to_idle()
        return events

    def abandon(self) -> Event | None:
        """The line is gone: forget everything; the event says what became of our request."""
        event: Event | None = None
        reason = "the connection to the terminal was lost"
        if self.may_have_started:
            event = Unresolved(reason, silent=True)
        elif self._request is not None:
            event = NotStarted(reason, silent=True)
        self._out.clear()
        self._buf.clear()
        self._request, self._sent, self._probe = None, False, False
        self._solicited = self._delivered = False
        self._attempts = 0
        self._set(Phase.IDLE)
        return event

    # -- per phase ---------------------------------------------------------------------------

    def _control(self, byte: int, events: list[Event]) -> None:
        phase = self.phase
        if phase in (Phase.IDLE, Phase.ENQ_PAUSE):
            if byte == ENQ:  # the terminal has something to say (a late answer)
                self._start_receiving(solicited=False)
        elif phase is Phase.ENQ_SENT:
            if byte == ACK:
                if self._request is None:  # a probe
                    self._out.append(EOT)
                    self._probe = False
                    self._to_idle()
                    events.append(Alive())
                else:
                    self._attempts = 0
                    self._out += self._request
                    self._sent = True
                    self._set(Phase.FRAME_SENT)
            elif byte == ENQ:  # both sides spoke at once: the terminal goes first
                if self._probe:
                    self._probe = False
                    events.append(Alive())
                self._start_receiving(solicited=False)
            else:
                self._enq_failed(events, f"ENQ answered with {_name(byte)}", silent=False)
        elif phase is Phase.FRAME_SENT:
            if byte == ACK:
                self._out.append(EOT)
                self._set(Phase.AWAIT_ANSWER)
                events.append(RequestAccepted())
            elif byte == NAK:
                self._attempts += 1
                if self._attempts >= SEND_ATTEMPTS:
                    self._out.append(EOT)
                    self._finish_request(
                        events,
                        NotStarted(
                            f"the terminal refused the request {self._attempts} times (NAK)",
                            silent=False,
                        ),
                    )
                else:
                    assert self._request is not None
                    self._out += self._request
                    self._set(Phase.FRAME_SENT)
        elif phase is Phase.AWAIT_ANSWER:
            if byte == ENQ:
                self._start_receiving(solicited=True)
        elif phase is Phase.AWAIT_EOT:
            if byte == EOT:
                self._to_idle()
            elif byte == ENQ:  # our ACK got lost: the terminal starts over
                self._start_receiving(solicited=self._solicited, delivered=True)
            elif byte == STX:  # our ACK got lost: the frame again
                self._start_receiving(solicited=self._solicited, delivered=True, ack=False)
                self._buf.insert(0, STX)
        # anything else is line noise: dropped

    def _receive_frame(self, events: list[Event]) -> bool:
        """Take what can be taken from the buffer; False when more bytes are needed."""
        while self._buf and self._buf[0] != STX:
            byte = self._buf.pop(0)
            if byte == ENQ:  # our ACK to its ENQ got lost
                self._out.append(ACK)
            elif byte == EOT:  # the terminal gave up on this answer
                self._finish_answer(events, "the terminal ended without sending its answer")
                return True
        try:
            found = read_frame(self._buf, self.device)
        except FrameError as exc:
            del self._buf[: exc.skip]
            self._frame_failed(events, str(exc))
            return True
        if found is None:
            return False
        message, rest = found
        self._buf[:] = rest
        self._out.append(ACK)  # the frame arrived intact, readable or not: asking again won't help
        self._set(Phase.AWAIT_EOT)
        if self._delivered:
            return True
        self._delivered = True
        try:
            answer = parse_answer(message, self.device)
        except ProtocolError as exc:
            events.append(
                Unresolved(f"unreadable answer: {exc}", silent=False, solicited=self._solicited)
            )
        else:
            events.append(AnswerReceived(answer, solicited=self._solicited))
        if self._solicited:
            self._request, self._sent = None, False
        return True

    # -- helpers -----------------------------------------------------------------------------

    def _set(self, phase: Phase) -> None:
        self.phase = phase
        self.timer_epoch += 1

    def _send_enq(self) -> None:
        self._out.append(ENQ)
        self._set(Phase.ENQ_SENT)

    def _enq_failed(self, events: list[Event], why: str, *, silent: bool) -> None:
        self._out.append(EOT)
        self._attempts += 1
        if self._probe:
            self._probe = False
            self._attempts = 0
            self._to_idle()
            events.append(NotStarted(why, silent=silent, probe=True))
        elif self._attempts >= ENQ_ATTEMPTS:
            self._finish_request(
                events, NotStarted(f"{why} ({self._attempts} attempts)", silent=silent)
            )
        else:
            self._set(Phase.ENQ_PAUSE)

    def _start_receiving(
        self, *, solicited: bool, delivered: bool = False, ack: bool = True
    ) -> None:
        if ack:
            self._out.append(ACK)
        self._solicited = solicited
        self._delivered = delivered
        self._attempts = 0
        self._set(Phase.RECEIVING)

    def _frame_failed(self, events: list[Event], why: str) -> None:
        self._attempts += 1
        if self._attempts >= RECEIVE_ATTEMPTS:
            self._out.append(EOT)
            self._finish_answer(events, f"{why} ({self._attempts} attempts)")
        else:
            self._out.append(NAK)
            self._set(Phase.RECEIVING)

    def _finish_answer(self, events: list[Event], why: str) -> None:
        """The answer being received cannot be had; report it unless already reported."""
        if not self._delivered:
            event = Unresolved(why, silent=False, solicited=self._solicited)
            if self._solicited:
                self._finish_request(events, event)
                return
            events.append(event)
        self._to_idle()

    def _finish_request(self, events: list[Event], event: Event) -> None:
        self._request, self._sent = None, False
        events.append(event)
        self._to_idle()

    def _to_idle(self) -> None:
        self._solicited = self._delivered = False
        self._attempts = 0
        self._set(Phase.IDLE)
        if self._request is not None:  # a request waited while the terminal talked
            self._send_enq()


def _name(byte: int) -> str:
    names = {ACK: "ACK", NAK: "NAK", ENQ: "ENQ", EOT: "EOT", STX: "STX"}
    return names.get(byte, f"0x{byte:02x}")


__all__ = [
    "Alive",
    "AnswerReceived",
    "EcrLink",
    "Event",
    "NotStarted",
    "Phase",
    "RequestAccepted",
    "Unresolved",
    "Wait",
]

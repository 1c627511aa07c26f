"""What every payment protocol driver offers, and the only card data that may leave it.

DESIGN invariant 6: a PaymentResult holds only what the reference allows — masked PAN (first 6
/ last 4), card name, authorization code, trace number, terminal id, amount, result code.
Drivers build it with `mask_pan`, so a full PAN never reaches the journal, an event or a log.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from edged.devices.state import DeviceStatus


class Outcome(enum.StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"  # the terminal or the issuer refused; result_code says why
    ABORTED = "aborted"  # cancelled at the till or on the terminal, or the cardholder timed out
    UNKNOWN = "unknown"  # no answer: ask the terminal (status enquiry) before charging again


class Authorisation(enum.StrEnum):
    """Who approved a payment, as far as the terminal's protocol tells (README: offline payments).

    The terminal alone decides, with its own line to the acquirer and its own floor limits;
    edged only reports what it said.
    """

    ONLINE = "online"  # the acquirer or issuer authorised it while the terminal asked
    OFFLINE = "offline"  # the terminal approved it alone (floor limit, chip, deferred): follow up
    UNKNOWN = "unknown"  # the protocol does not say (Concert E+), or the terminal left it out


class PaymentResult(msgspec.Struct, frozen=True, omit_defaults=True):
    outcome: Outcome
    amount: int  # minor units
    currency: str
    result_code: int | None = None
    message: str = ""  # for the cashier ("declined: insufficient funds")
    masked_pan: str | None = None
    card_name: str | None = None
    auth_code: str | None = None
    trace_number: int | None = None
    terminal_id: str | None = None
    receipt_no: int | None = None  # the terminal's own receipt number, needed for a reversal
    authorisation: Authorisation = Authorisation.UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; `authorisation` is always there, `unknown` included."""
        fields: dict[str, Any] = msgspec.to_builtins(self)
        fields["authorisation"] = str(self.authorisation)
        return fields


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, the rest '*'; a terminal's own masking ('****1234') is kept.

    Anything that is not a run of digits with at most '*'/'X' masking is reduced to its last 4.
    """
    digits = [c for c in pan if c.isdigit() or c in "*X"]
    text = "".join(digits).replace("X", "*")
    if len(text) <= 10:
        return "*" * max(0, len(text) - 4) + text[-4:]
    middle = "*" * (len(text) - 10)
    return text[:6] + middle + text[-4:]


# Progress text for the cashier, e.g. "insert card", "enter PIN", "authorizing".
Progress = Callable[[str], None]


class PaymentTerminal(Protocol):
    """A payment terminal reached through one protocol. One operation at a time.

    Each call raises DeviceError (subclasses from edged.devices.state) when the terminal
    cannot be reached or speaks garbage, and leaves the terminal ready for the next call.
    """

    status: DeviceStatus

    async def run(self) -> None:
        """Keep the connection open and supervised (edged.devices.supervisor.keep_open)."""
        ...

    async def authorize(self, amount: int, currency: str, progress: Progress) -> PaymentResult:
        """Charge `amount`; returns when the terminal has a final answer (or UNKNOWN)."""
        ...

    async def refund(self, amount: int, currency: str, progress: Progress) -> PaymentResult:
        """Credit `amount` back to a card."""
        ...

    async def reverse(self, receipt_no: int, progress: Progress) -> PaymentResult:
        """Cancel an earlier approved payment by the terminal's receipt number."""
        ...

    async def abort(self) -> None:
        """Ask the terminal to abort the operation in progress (cashier pressed cancel)."""
        ...

    async def last_result(self) -> PaymentResult | None:
        """The terminal's own record of its last transaction (status enquiry / repeat last).

        Used after a daemon restart to resolve a payment that was in progress.
        """
        ...

    async def end_of_day(self, progress: Progress) -> dict[str, Any]:
        """Close the terminal's batch; returns totals the terminal reported."""
        ...

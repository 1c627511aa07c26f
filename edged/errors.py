"""One exception root for edged; subclasses carry the context a person needs to act."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class EdgedError(Exception):
    """Root of every error edged raises on purpose."""


class ConfigError(EdgedError):
    """The configuration cannot be used: names the file, the key and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem at a JSON path such as `sale.lines[2].amount`."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem


class ValidationError(EdgedError):
    """Input failed validation; `problems` lists every path that is wrong."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class JournalError(EdgedError):
    """The journal cannot be opened, read or written."""


class JournalFullError(JournalError):
    """The disk holding the journal is full: nothing was committed, nothing was lost."""


class SaleConflictError(EdgedError):
    """A sale id was committed before with different content."""

    def __init__(self, sale_id: str, seq: int) -> None:
        self.sale_id = sale_id
        self.seq = seq
        super().__init__(
            f"sale {sale_id} was already committed as seq {seq} with different content; "
            "use a new id for a new sale"
        )


class ChainError(EdgedError):
    """The journal's hash chain or seq continuity is broken at `seq`; `damaged` lists every
    seq whose entry is damaged (its bytes not as written), when the walk found any."""

    def __init__(self, seq: int, problem: str, damaged: Sequence[int] = ()) -> None:
        self.seq = seq
        self.problem = problem
        self.damaged = tuple(damaged)
        super().__init__(f"seq {seq}: {problem}")


class DeviceNotConfiguredError(EdgedError):
    """The config has no such device (`[devices.NAME]` is absent)."""

    def __init__(self, device: str, hint: str = "") -> None:
        self.device = device
        super().__init__(f"no {device} is configured; add [devices.{device}] to the config{hint}")


class DeviceNotReadyError(EdgedError):
    """The device exists in the config but cannot do this now; `detail` says why."""

    def __init__(self, device: str, state: str, detail: str) -> None:
        self.device = device
        self.state = state
        self.detail = detail
        super().__init__(f"the {device} is {state}" + (f": {detail}" if detail else ""))


class NotSupportedError(EdgedError):
    """The device's protocol cannot do what was asked (e.g. a reversal over Concert E+)."""


class PaymentBusyError(EdgedError):
    """Another payment is in progress on the terminal; one at a time."""

    def __init__(self, busy_id: str) -> None:
        self.busy_id = busy_id
        super().__init__(
            f"payment {busy_id} is in progress; wait for it to finish or cancel it first"
        )


class PaymentConflictError(EdgedError):
    """A payment id was started before with another amount or currency."""

    def __init__(self, payment_id: str) -> None:
        self.payment_id = payment_id
        super().__init__(
            f"payment {payment_id} was started with another amount or currency; "
            "use a new id for a new payment"
        )


class PaymentNotFoundError(EdgedError):
    """No payment with this id was ever started on this terminal."""

    def __init__(self, payment_id: str) -> None:
        self.payment_id = payment_id
        super().__init__(f"no payment with id {payment_id!r}")


class SaleNotFoundError(EdgedError):
    """No sale with this id is in the journal (never committed, or purged by retention)."""

    def __init__(self, sale_id: str) -> None:
        self.sale_id = sale_id
        super().__init__(f"no sale with id {sale_id!r} in the journal")


class KeyFileError(EdgedError):
    """A signing key or pinned key file cannot be read, made or written: names the file."""

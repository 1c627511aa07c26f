"""What the API needs from the rest of the daemon; daemon.py implements it and hands it over."""

from __future__ import annotations

from typing import Any, Protocol

from edged.errors import EdgedError
from edged.events import EventHub


class ShuttingDownError(EdgedError):
    """Raised by a service that is stopping and did not do the work; clients may retry later."""


class RefdataApi(Protocol):
    """Reference data (edged.refdata.Refdata): answers from the active snapshot on disk."""

    def lookup(self, barcode: str) -> dict[str, Any]:
        """`{article, snapshot}`; `article` is null for an unknown barcode or no snapshot."""
        ...

    def status(self) -> dict[str, Any]:
        """The `refdata.status` result."""
        ...

    async def use(self, date: str | None) -> dict[str, Any]:
        """Serve the snapshot for `date` (None: today's); the status afterwards."""
        ...


class Services(Protocol):
    """The daemon's side of the local API. Implementations bound their own time (no hangs)."""

    events: EventHub

    @property
    def refdata(self) -> RefdataApi:
        """Reference data lookups and the choice of snapshot."""
        ...

    async def commit_sale(self, sale: Any) -> dict[str, Any]:
        """Validate and durably journal `sale`; return `{seq, receipt_no, hash, duplicate}`.

        Raises ValidationError (problems with paths like `sale.lines[2].amount`),
        SaleConflictError, JournalFullError, JournalError or ShuttingDownError.
        """
        ...

    async def get_sale(self, sale_id: str) -> dict[str, Any] | None:
        """Return `{sale, seq, receipt_no, hash, acked}`, or None if the id is unknown."""
        ...

    def status(self) -> dict[str, Any]:
        """Return the `status` result of DESIGN.md (cheap, in memory)."""
        ...

    def check_operation(self, kind: str) -> dict[str, Any]:
        """`{kind, needs_store, link}` if `kind` can be done now; at once, never waiting.

        Raises NeedsStoreError while the link is not online and the kind needs it,
        ValidationError for a kind the config does not name.
        """
        ...

    async def sync_now(self) -> dict[str, Any]:
        """Try the link and flush at once; return `{link, pending}`."""
        ...

    async def print(
        self, sale_id: str | None, receipt: dict[str, Any] | None, wait_s: float
    ) -> dict[str, Any]:
        """Durably queue a receipt (a journaled sale's, or a free text slip) for the printer.

        Waits up to `wait_s` for the printer to confirm it; returns `{job, copy, state,
        printer}`. Raises DeviceNotConfiguredError, SaleNotFoundError, ValidationError.
        """
        ...

    def printer_status(self) -> dict[str, Any]:
        """The printer's state, paper, cover and queue (DeviceNotConfiguredError if none)."""
        ...

    async def open_drawer(self) -> dict[str, Any]:
        """Kick the cash drawer; `{opened}` is true/false with a sensor, else null."""
        ...

    async def payment_start(self, payment_id: str, amount: int, currency: str) -> dict[str, Any]:
        """Start (or, for a known id, report) a card payment; returns its record."""
        ...

    async def payment_refund(self, payment_id: str, amount: int, currency: str) -> dict[str, Any]:
        """Start (or report) a refund to a card; the same rules as payment_start."""
        ...

    async def payment_reverse(self, payment_id: str, original_id: str) -> dict[str, Any]:
        """Start (or report) the reversal of the approved payment `original_id`."""
        ...

    async def payment_end_of_day(self) -> dict[str, Any]:
        """Close the terminal's batch; the totals it reported."""
        ...

    async def payment_cancel(self, payment_id: str) -> dict[str, Any]:
        """Ask the terminal to abort the payment; returns its record."""
        ...

    async def payment_get(self, payment_id: str) -> dict[str, Any]:
        """The payment's record (PaymentNotFoundError if unknown)."""
        ...

    async def sim_scan(self, code: str, symbology: str | None) -> dict[str, Any]:
        """Make the simulated scanner scan `code` (DeviceNotConfiguredError without one)."""
        ...

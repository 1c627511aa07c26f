"""What the API needs from the rest of the daemon; daemon.py implements it and hands it over."""

from __future__ import annotations

from typing import Any, Protocol

from edged.errors import EdgedError
from edged.events import EventHub


class ShuttingDownError(EdgedError):
    """Raised by a service that is stopping and did not do the work; clients may retry later."""


class Services(Protocol):
    """The daemon's side of the local API. Implementations bound their own time (no hangs)."""

    events: EventHub

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

    async def sync_now(self) -> dict[str, Any]:
        """Try the link and flush at once; return `{link, pending}`."""
        ...

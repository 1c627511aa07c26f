"""Durable print jobs: recorded before a byte is sent, so an interrupted receipt is finished.

A job is `queued` until its bytes start going out, `sending` until the printer confirms it
printed everything (a `GS r` reply, processed in order after the job), then `printed`. A job
found `sending` after a reconnect or a restart may have come out in part: it is printed again
with COPY on it, never silently twice.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

import msgspec


class JobState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    PRINTED = "printed"
    FAILED = "failed"  # could not be built (a bug or a bad document); logged, never retried


class PrintJob(msgspec.Struct, frozen=True):
    job_id: int
    # {"kind": "sale", ...} for a journaled sale's receipt, {"kind": "text", ...} for a slip
    document: dict[str, Any]
    copy: bool  # print "COPY" on it
    state: JobState
    sale_id: str | None = None
    created_at: str = ""


class PrintJobStore(Protocol):
    """Implemented by the journal; the printer driver is its only writer."""

    async def add_print_job(
        self, document: dict[str, Any], *, copy: bool, sale_id: str | None
    ) -> PrintJob:
        """Durably record a new queued job (before anything is sent)."""
        ...

    async def unfinished_print_jobs(self) -> list[PrintJob]:
        """Jobs `queued` or `sending`, oldest first."""
        ...

    async def set_print_job_state(self, job_id: int, state: JobState) -> None:
        """Durably move a job to `state`."""
        ...

    async def times_printed(self, sale_id: str) -> int:
        """How many jobs for this sale exist already (any state): the next one is a COPY."""
        ...

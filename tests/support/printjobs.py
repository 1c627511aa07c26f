"""An in-memory PrintJobStore: the journal's print-job table, for driver tests."""

from __future__ import annotations

from typing import Any

import msgspec

from edged.devices.printer.jobs import JobState, PrintJob


class MemoryPrintJobs:
    """Keeps jobs in a dict; `history` records every state change, in order."""

    def __init__(self) -> None:
        self.jobs: dict[int, PrintJob] = {}
        self.history: list[tuple[int, JobState]] = []

    async def add_print_job(
        self, document: dict[str, Any], *, copy: bool, sale_id: str | None
    ) -> PrintJob:
        job_id = len(self.jobs) + 1
        job = PrintJob(job_id, document, copy, JobState.QUEUED, sale_id)
        self.jobs[job_id] = job
        self.history.append((job_id, JobState.QUEUED))
        return job

    async def unfinished_print_jobs(self) -> list[PrintJob]:
        unfinished = (JobState.QUEUED, JobState.SENDING)
        return [job for _, job in sorted(self.jobs.items()) if job.state in unfinished]

    async def set_print_job_state(self, job_id: int, state: JobState) -> None:
        self.jobs[job_id] = msgspec.structs.replace(self.jobs[job_id], state=state)
        self.history.append((job_id, state))

    async def times_printed(self, sale_id: str) -> int:
        return sum(1 for job in self.jobs.values() if job.sale_id == sale_id)

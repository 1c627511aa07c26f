"""The receipt printer: durable print jobs out, real status in, and the cash drawer it drives.

Every job is in the PrintJobStore before a byte goes out. Printing one job: mark it `sending`
(durably), write its bytes followed by `GS r 1`, and mark it `printed` when the `GS r` reply
comes — the printer processes `GS r` in order, so that reply means the whole receipt came out.
While waiting, `DLE EOT` polls (or Automatic Status Back) turn paper out, cover open and the
like into the device state (ERROR with the reason, BUSY while printing, READY after). A
printer that runs out of paper keeps the rest of the job in its buffer and finishes it when
paper is back: that is still the original, and it is not sent again.

Copies. A job is never rewritten: a job found `sending` — at start, after a reconnect, or
after a printer that is online did not confirm it within `confirm_timeout_s` (it was most
likely switched off and lost its buffer; the driver then reconnects) — may have come out in
part, so it is printed again from its document with `copy=True`, and stays the same job.
`sending` is itself the durable record that the next attempt is a COPY, so a crash between
two attempts cannot produce an unmarked second original. `submit` for a sale that has
printed before makes the new job a COPY too (`PrintJobStore.times_printed`).

A printer that is absent never blocks `submit`: the job waits in the store until it is back.
With `status_mode = "none"`, or a device that never answers (a write-only lp device), nothing
can be confirmed: a job counts as printed once the OS has taken its bytes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import structlog

from edged.devices.printer.jobs import JobState, PrintJob, PrintJobStore
from edged.devices.printer.link import Link
from edged.devices.printer.status import (
    PRINTER,
    REAL_TIME_REQUESTS,
    AsbStatus,
    PrintedMark,
    PrinterStatus,
    RealTimeReply,
    Reply,
    drawer_kick,
    enable_asb,
    real_time_status,
)
from edged.devices.printer.transport import TransportFactory
from edged.devices.state import DeviceError, DeviceState, DeviceStatus
from edged.devices.supervisor import keep_open
from edged.supervise import in_own_task, unwrap

log = structlog.get_logger(__name__)

POLL_INTERVAL_S = 1.0  # DLE EOT 1..4 (poll) or DLE EOT 1 (asb liveness) this often
STATUS_TIMEOUT_S = 2.0  # a real-time reply takes milliseconds; silence means switched off
CONFIRM_TIMEOUT_S = 30.0  # online, yet the GS r reply for a job does not come: buffer lost
DRAWER_SETTLE_S = 0.3  # after the kick, before the sensor reads the drawer as open
FINISHED_JOBS_KEPT = 1000  # outcomes remembered for `wait`

Render = Callable[[PrintJob], bytes]


@dataclass(frozen=True, slots=True)
class PrinterSettings:
    """How to watch the printer and kick its drawer; ValueError names a bad value."""

    status_mode: Literal["poll", "asb", "none"] = "poll"
    poll_interval_s: float = POLL_INTERVAL_S
    status_timeout_s: float = STATUS_TIMEOUT_S
    confirm_timeout_s: float = CONFIRM_TIMEOUT_S
    drawer_pin: int = 2
    drawer_pulse_ms: int = 100
    drawer_sensor: bool = False  # a drawer-open switch is wired to connector pin 3
    drawer_open_high: bool = True  # the switch makes pin 3 high when the drawer is open

    def __post_init__(self) -> None:
        drawer_kick(self.drawer_pin, self.drawer_pulse_ms)  # ValueError names the bad value
        for name in ("poll_interval_s", "status_timeout_s", "confirm_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")


class NoStatusAnswer(DeviceError):
    """The printer did not answer a real-time status request in time."""


class Printer:
    """One ESC/POS receipt printer (and the cash drawer on its kick-out connector).

    `run()` keeps it open forever (edged.devices.supervisor.keep_open); the other methods
    are what the daemon and the local API call, from the same event loop.
    """

    def __init__(
        self,
        status: DeviceStatus,
        connect: TransportFactory,
        store: PrintJobStore,
        render: Render,
        settings: PrinterSettings | None = None,
    ) -> None:
        self.status = status
        self._connect = connect
        self._store = store
        self._render = render
        self._settings = settings or PrinterSettings()
        self._link: Link | None = None
        self._printer = PrinterStatus()  # meaningful while _link is set and not _mute
        self._mute = False  # this connection reports no status
        self._status_changed = asyncio.Event()
        self._wakeup = asyncio.Event()  # a job was submitted
        self._submit_lock = asyncio.Lock()
        self._current: int | None = None  # job being printed
        self._unfinished: dict[int, JobState] = {}
        self._finished: collections.OrderedDict[int, JobState] = collections.OrderedDict()
        self._finished_events: dict[int, asyncio.Event] = {}
        self._last_printed: int | None = None

    # --- what the daemon and the API call --------------------------------------------------

    async def run(self) -> None:
        """Print queued jobs whenever the printer is there; never returns."""
        self._note_unfinished(await self._store.unfinished_print_jobs())
        await keep_open(self.status, self._session)

    async def submit(self, document: dict[str, Any], sale_id: str | None = None) -> PrintJob:
        """Record a job durably and queue it; a sale printed before gets a COPY."""
        async with self._submit_lock:
            copy = sale_id is not None and await self._store.times_printed(sale_id) > 0
            job = await self._store.add_print_job(document, copy=copy, sale_id=sale_id)
        self._unfinished[job.job_id] = job.state
        self._wakeup.set()
        log.info(
            "print_job_queued",
            device=self.status.name,
            job_id=job.job_id,
            sale_id=sale_id,
            copy=copy,
        )
        return job

    async def wait(self, job_id: int, timeout_s: float) -> JobState:
        """The job's state once it is printed (or failed), or when `timeout_s` has passed."""
        if job_id in self._finished:
            return self._finished[job_id]
        if job_id not in self._unfinished:
            stored = {job.job_id: job.state for job in await self._store.unfinished_print_jobs()}
            if job_id not in stored:
                raise LookupError(f"print job {job_id} is unknown (never submitted, or long done)")
            self._unfinished[job_id] = stored[job_id]
        event = self._finished_events.setdefault(job_id, asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return self._unfinished.get(job_id, self._finished.get(job_id, JobState.QUEUED))
        return self._finished[job_id]

    @property
    def drawer_open(self) -> bool | None:
        """The drawer sensor's last reading; None when no sensor is wired or nothing is known."""
        if not self._settings.drawer_sensor or self._link is None or self._mute:
            return None
        return self._printer.drawer_pin3_high == self._settings.drawer_open_high

    def status_snapshot(self) -> dict[str, Any]:
        """For `printer.status`: state, what the printer reports (None when not known), and
        `queued`, the jobs not printed yet (the one printing included)."""
        known = self._link is not None and not self._mute
        return {
            "state": str(self.status.state),
            "detail": self.status.detail,
            "paper": self._printer.paper if known else None,
            "cover_open": self._printer.cover_open if known else None,
            "online": self._printer.online if known else None,
            "drawer_open": self.drawer_open,
            "queued": len(self._unfinished),
            "last_printed_job": self._last_printed,
        }

    async def open_drawer(self) -> dict[str, Any]:
        """Kick the drawer (after any receipt still printing); read the sensor if wired."""
        link = self._link
        if link is None:
            raise DeviceError(
                f"cannot open the drawer: the printer is not connected ({self.status.detail}); "
                "the drawer is driven by the printer"
            )
        problem = None if self._mute else self._printer.problem()
        if problem is not None:
            raise DeviceError(f"cannot open the drawer: {problem} (the printer drives the drawer)")
        settings = self._settings
        kick = drawer_kick(settings.drawer_pin, settings.drawer_pulse_ms)
        result: dict[str, Any] = {
            "pin": settings.drawer_pin,
            "pulse_ms": settings.drawer_pulse_ms,
            "drawer_open": None,
        }
        if not settings.drawer_sensor or self._mute:
            await link.send(kick)
            log.info("drawer_kicked", device=self.status.name, pin=settings.drawer_pin)
            return result
        _, mark = await link.send(kick, mark=True)
        assert mark is not None
        try:
            async with asyncio.timeout(settings.confirm_timeout_s):
                await link.result(mark)  # the kick has been executed
        except TimeoutError:
            raise DeviceError(
                "the printer did not execute the drawer kick in time (still printing?)"
            ) from None
        await asyncio.sleep(DRAWER_SETTLE_S + settings.drawer_pulse_ms / 1000)
        await self._query(link, (PRINTER,))
        result["drawer_open"] = self.drawer_open
        log.info(
            "drawer_kicked",
            device=self.status.name,
            pin=settings.drawer_pin,
            opened=result["drawer_open"],
        )
        return result

    # --- one connection --------------------------------------------------------------------

    async def _session(self) -> None:
        transport = await self._connect()
        link = Link(transport, self.status.name, self._on_reply)
        try:
            # In a task of its own: a failed group leaves no cancellation behind for
            # link.close() below (CPython 3.11.2; see edged.supervise).
            await in_own_task(self._serve(link), f"{self.status.name}-serve")
        finally:
            self._link = None
            self._current = None
            await link.close()

    async def _serve(self, link: Link) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(link.read_loop(), name=f"{self.status.name}-read")
                await self._greet(link)
                if not self._mute:
                    tasks.create_task(self._watch(link), name=f"{self.status.name}-watch")
                await self._pump(link)
        except BaseExceptionGroup as group:
            raise unwrap(group) from None

    async def _greet(self, link: Link) -> None:
        """Read the printer's status once; from here on the connection is usable."""
        self._printer = PrinterStatus()
        self._mute = self._settings.status_mode == "none"
        if not self._mute:
            try:
                await self._query(link, REAL_TIME_REQUESTS)
            except NoStatusAnswer:
                if link.transport.must_answer:
                    raise
                log.warning("printer_status_unknown", device=self.status.name, path=link.name)
                self._mute = True
        if self._settings.status_mode == "asb" and not self._mute:
            await link.send(enable_asb())
        self._link = link
        self._refresh()

    async def _watch(self, link: Link) -> None:
        """Poll status for as long as the connection lasts; silence ends the connection."""
        requests = REAL_TIME_REQUESTS if self._settings.status_mode == "poll" else (PRINTER,)
        while True:
            await asyncio.sleep(self._settings.poll_interval_s)
            await self._query(link, requests)
            self._refresh()

    async def _query(self, link: Link, requests: Iterable[int]) -> list[RealTimeReply]:
        futures, _ = await link.send(b"".join(real_time_status(n) for n in requests))
        try:
            async with asyncio.timeout(self._settings.status_timeout_s):
                return [await link.result(f) for f in futures]
        except TimeoutError:
            raise NoStatusAnswer(
                f"{link.name}: the printer does not answer status requests "
                "(switched off, cable loose, or wrong port/baud rate?)"
            ) from None

    def _on_reply(self, reply: Reply) -> None:
        self._printer = self._printer.apply(reply)
        if isinstance(reply, AsbStatus | PrintedMark):
            self._refresh()

    def _refresh(self) -> None:
        """Turn what is known into the device state people see."""
        if self._link is None:
            return
        problem = None if self._mute else self._printer.problem()
        if problem is not None:
            self.status.set(DeviceState.ERROR, problem)
        elif self._current is not None:
            self.status.set(DeviceState.BUSY, f"printing job {self._current}")
        elif self._mute:
            self.status.set(DeviceState.READY, "status unknown (the printer does not report it)")
        else:
            self.status.set(DeviceState.READY, "paper near end" if self._printer.paper_low else "")
        self._status_changed.set()

    # --- jobs ------------------------------------------------------------------------------

    async def _pump(self, link: Link) -> None:
        while True:
            self._wakeup.clear()
            jobs = await self._store.unfinished_print_jobs()
            self._note_unfinished(jobs)
            if not jobs:
                await self._wakeup.wait()
                continue
            await self._until_printable()
            await self._print(link, jobs[0])

    async def _until_printable(self) -> None:
        """Hold new jobs back while the printer has a problem: they would wait in its buffer,
        and a printer switched off to fix it would lose them."""
        while not self._mute and self._printer.problem() is not None:
            self._status_changed.clear()
            await self._status_changed.wait()

    async def _print(self, link: Link, job: PrintJob) -> None:
        if job.state is JobState.SENDING and not job.copy:
            log.warning("print_job_reprinted_as_copy", device=self.status.name, job_id=job.job_id)
            job = msgspec.structs.replace(job, copy=True)
        try:
            data = self._render(job)
        except Exception:
            log.exception("print_job_render_failed", device=self.status.name, job_id=job.job_id)
            await self._store.set_print_job_state(job.job_id, JobState.FAILED)
            self._finish(job.job_id, JobState.FAILED)
            return
        if job.state is not JobState.SENDING:
            await self._store.set_print_job_state(job.job_id, JobState.SENDING)
        self._unfinished[job.job_id] = JobState.SENDING
        self._current = job.job_id
        self._refresh()
        _, mark = await link.send(data, mark=not self._mute)
        if mark is not None:
            await self._confirm(link, job, mark)
        await self._store.set_print_job_state(job.job_id, JobState.PRINTED)
        self._current = None
        self._last_printed = job.job_id
        self._finish(job.job_id, JobState.PRINTED)
        self._refresh()
        log.info(
            "print_job_printed",
            device=self.status.name,
            job_id=job.job_id,
            sale_id=job.sale_id,
            copy=job.copy,
            bytes=len(data),
        )

    async def _confirm(self, link: Link, job: PrintJob, mark: asyncio.Future[PrintedMark]) -> None:
        """Wait for the job's GS r reply; a printer online without it has lost the job."""
        loop = asyncio.get_running_loop()
        timeout_s = self._settings.confirm_timeout_s
        online_since = loop.time() if self._printer.problem() is None else None
        while True:
            done, _ = await asyncio.wait({mark}, timeout=self._settings.poll_interval_s)
            if done:
                await link.result(mark)
                return
            now = loop.time()
            if self._printer.problem() is not None:
                online_since = None
            elif online_since is None:
                online_since = now
            elif now - online_since >= timeout_s:
                raise DeviceError(
                    f"the printer is online but did not confirm job {job.job_id} within "
                    f"{timeout_s:g} s (switched off and on?); it is printed again as COPY"
                )

    def _note_unfinished(self, jobs: Iterable[PrintJob]) -> None:
        self._unfinished = {job.job_id: job.state for job in jobs}

    def _finish(self, job_id: int, state: JobState) -> None:
        self._unfinished.pop(job_id, None)
        self._finished[job_id] = state
        while len(self._finished) > FINISHED_JOBS_KEPT:
            self._finished.popitem(last=False)
        event = self._finished_events.pop(job_id, None)
        if event is not None:
            event.set()

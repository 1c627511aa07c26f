"""How long the oldest unsent sale has waited, as a severity a UI shows as a banner.

`status.outbox` and the `outbox` event carry it; `edgectl doctor` judges the backlog with the
same thresholds (`[uplink] outbox_warn_after_s`, `outbox_alarm_after_s`), so a till never
says "ok" on one screen and "alarm" on another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn, Protocol

from edged.clock import parse_utc_iso
from edged.events import Event, EventHub

WARN_AFTER_S = 15 * 60.0  # defaults of [uplink] outbox_warn_after_s ...
ALARM_AFTER_S = 4 * 3600.0  # ... and outbox_alarm_after_s: the store's books lag half a shift
WAKE_LATE_S = 0.05  # wake this much after a threshold, so the age has surely crossed it


class Severity(StrEnum):
    """The backlog as a banner: nothing to show, a hint, or call the store's IT."""

    OK = "ok"  # nothing unsent, or the oldest unsent sale is younger than warn_after_s
    WARN = "warn"  # the oldest unsent sale has waited warn_after_s
    ALARM = "alarm"  # ... alarm_after_s: the store has not had this till's sales for long


@dataclass(frozen=True, slots=True)
class Thresholds:
    warn_after_s: float = WARN_AFTER_S
    alarm_after_s: float = ALARM_AFTER_S

    def severity(self, age_s: float | None) -> Severity:
        if age_s is None or age_s < self.warn_after_s:
            return Severity.OK
        return Severity.WARN if age_s < self.alarm_after_s else Severity.ALARM

    def next_change_in(self, age_s: float | None) -> float | None:
        """Seconds until the severity rises by time alone; None if it cannot."""
        if age_s is None:
            return None
        for threshold in (self.warn_after_s, self.alarm_after_s):
            if age_s < threshold:
                return threshold - age_s + WAKE_LATE_S
        return None


class OutboxStats(Protocol):
    """What the journal's stats offer (edged.journal.JournalStats)."""

    @property
    def oldest_pending_created_at(self) -> str | None: ...
    def outbox(self) -> dict[str, int]: ...


def age_s(created_at: str | None, now: float) -> float | None:
    """Seconds since `created_at` (RFC 3339), never negative; None if nothing waits."""
    stamp = parse_utc_iso(created_at) if created_at else None
    return None if stamp is None else round(max(0.0, now - stamp), 1)


def outbox_data(stats: OutboxStats, thresholds: Thresholds | None) -> dict[str, Any]:
    """The `outbox` event's data; `thresholds` None (no uplink): nothing to sync, always ok."""
    age = age_s(stats.oldest_pending_created_at, time.time())
    severity = thresholds.severity(age) if thresholds else Severity.OK
    return {**stats.outbox(), "oldest_age_s": age, "severity": str(severity)}


class StatsSource(Protocol):
    def stats(self) -> OutboxStats: ...


async def watch_severity(
    journal: StatsSource, events: EventHub, thresholds: Thresholds
) -> NoReturn:
    """Publish an `outbox` event when the severity rises by time alone (no sale, no ack).

    Commits and acks publish their own `outbox` events; this one listens to them to know
    what the UI was told last, and sleeps until the oldest sale crosses the next threshold.
    """
    sub = events.subscribe(("outbox",), maxsize=256)
    heard = aiter(sub)
    told = outbox_data(journal.stats(), thresholds)["severity"]  # as `status` says at start
    next_event = asyncio.create_task(_next(heard), name="backlog-next-event")
    try:
        while True:
            data = outbox_data(journal.stats(), thresholds)
            if data["severity"] != told:
                events.publish("outbox", data)  # comes back through `sub`, setting `told`
                told = data["severity"]
            await asyncio.wait(
                {next_event}, timeout=thresholds.next_change_in(data["oldest_age_s"])
            )
            if next_event.done():
                told = next_event.result().data["severity"]
                next_event = asyncio.create_task(_next(heard), name="backlog-next-event")
    finally:
        next_event.cancel()
        sub.close()


async def _next(events: AsyncIterator[Event]) -> Event:
    return await anext(events)

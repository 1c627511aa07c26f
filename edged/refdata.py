"""The terminal's reference data as the local API sees it: which snapshot is in use, lookups.

The snapshot in use is the one for the wanted date (today, or the date `refdata.use` chose):
the nearest on or before it, else the nearest after it (edged.refwire.choose). It is chosen
at start, when a new snapshot is stored, when the day changes and when told; the choice is
one transaction in refdata.db, so a restart serves the same snapshot without the broker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec
import structlog

from edged.clock import parse_utc_iso
from edged.journal.refdata import RefdataStore, Snapshot
from edged.refwire import choose
from edged.uplink.refdata import RefdataSync

log = structlog.get_logger(__name__)

DAY_CHECK_S = 30.0  # how often the wanted date (today) is looked at again
USE_KEY = "use_date"  # state: the date `refdata.use` chose; absent means today

Publish = Callable[[str, dict[str, Any]], None]


def today_in(where: dt.tzinfo, clock: Callable[[], float] = time.time) -> Callable[[], str]:
    """Today's date where the store is: a snapshot dated for a day starts at its midnight.

    `clock` (POSIX seconds) is the wall clock; tests pass their own to cross a midnight.
    """
    return lambda: dt.datetime.fromtimestamp(clock(), where).date().isoformat()


class Refdata:
    """Lookups, status and the choice of snapshot; `run()` follows the date and the sync."""

    def __init__(self, store: RefdataStore, *, keep: int, today: Callable[[], str]) -> None:
        self.store = store
        self.keep = keep
        self._today = today
        self.sync: RefdataSync | None = None  # set by the daemon when there is an uplink
        self._lock = asyncio.Lock()

    def wanted_date(self) -> str:
        return self.store.state(USE_KEY) or self._today()

    def lookup(self, barcode: str) -> dict[str, Any]:
        """`{article, snapshot}`: the article (or null) and the date of the snapshot asked."""
        active = self.store.active
        article = self.store.lookup(barcode)
        return {"article": article, "snapshot": active.date if active else None}

    def status(self) -> dict[str, Any]:
        active = self.store.active
        published = parse_utc_iso(active.published_at) if active else None
        held = self.store.snapshots()
        sync = self.sync
        return {
            "active": active.summary() if active else None,
            "age_s": round(time.time() - published, 1) if published is not None else None,
            "wanted_date": self.wanted_date(),
            "chosen_by": "refdata.use" if self.store.state(USE_KEY) else "today",
            "keep": self.keep,
            "snapshots": [
                {
                    "date": s.date,
                    "id": s.snapshot_id,
                    "articles": s.articles,
                    "active": active is not None and s.row == active.row,
                }
                for s in held
            ],
            "assembling": sync.waiting_for if sync else None,
            "last_refusal": sync.last_refusal if sync else self._stored_refusal(),
            "path": str(self.store.path),
        }

    def _stored_refusal(self) -> Any:
        text = self.store.state("last_refusal")
        return None if text is None else msgspec.json.decode(text)

    async def use(self, date: str | None) -> dict[str, Any]:
        """Serve the snapshot for `date` from now on (None: today's, following the day)."""
        await asyncio.to_thread(self.store.set_state, USE_KEY, date)
        log.info("refdata_date_chosen", date=date or "today")
        await self.select()
        return self.status()

    async def refresh(self) -> dict[str, Any]:
        """sync.now: look at the store's manifest again; the status afterwards."""
        if self.sync is not None:
            await self.sync.refresh()
        await self.select()
        return self.status()

    async def arrived(self, snapshot: Snapshot) -> None:
        """A new snapshot was stored: choose again, then purge beyond `keep`."""
        await self.select()

    async def select(self) -> Snapshot | None:
        """Make the snapshot for the wanted date the active one; purge beyond `keep`."""
        async with self._lock:
            held = self.store.snapshots()
            wanted = self.wanted_date()
            date = choose((s.date for s in held), wanted)
            chosen = None
            if date is not None:  # the latest received for that date
                chosen = [s for s in held if s.date == date][-1]
            active = self.store.active
            if chosen is not None and (active is None or chosen.row != active.row):
                await asyncio.to_thread(self.store.activate, chosen)
                log.info(
                    "refdata_snapshot_active",
                    date=chosen.date,
                    id=chosen.snapshot_id,
                    articles=chosen.articles,
                    wanted=wanted,
                    was=active.date if active else None,
                )
            for gone in await asyncio.to_thread(self.store.purge, self.keep):
                log.info("refdata_snapshot_purged", date=gone.date, id=gone.snapshot_id)
            return chosen

    async def run(self) -> NoReturn:
        """Choose at start, again when the day changes; run the sync beside it."""
        await self.select()
        async with asyncio.TaskGroup() as tg:
            if self.sync is not None:
                tg.create_task(self.sync.run(), name="refdata-sync")
            wanted = self.wanted_date()
            while True:
                await asyncio.sleep(DAY_CHECK_S)
                if self.wanted_date() != wanted:
                    wanted = self.wanted_date()
                    await self.select()
        raise AssertionError("unreachable")  # pragma: no cover

    def enrich(self, publish: Publish) -> Publish:
        """`publish`, with the article added to each `scanner.scan` event (null if unknown)."""

        def publish_with_article(type_: str, data: dict[str, Any]) -> None:
            if type_ == "scanner.scan" and isinstance(data.get("code"), str):
                data = {**data, "article": self.store.lookup(data["code"])}
            publish(type_, data)

        return publish_with_article

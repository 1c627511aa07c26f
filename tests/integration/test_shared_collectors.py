"""Three collector processes share one stream (the default shared subscription) and one
database; one of them is killed -9 again and again while a fleet of real terminals sells."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from pathlib import Path

from edged.collector import collector_report
from tests.support.daemon import CollectorProcess, uplink_section
from tests.support.fleet import Fleet, uplink_settings
from tests.support.mosquitto import Mosquitto

TERMINALS = 12
RATE_PER_S = 60.0
KILLS = 4
DRAIN_S = 60.0


def received_by(db: str) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT received_by, count(*) FROM transactions GROUP BY 1")
        return dict(rows.fetchall())


def in_seq_order(db: str) -> bool:
    """Every terminal's `contiguous_upto` is its highest seq: no gap left behind anywhere."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT contiguous_upto, max_seq, gap_from FROM terminals").fetchall()
    return bool(rows) and all(upto == top and gap is None for upto, top, gap in rows)


async def test_killing_one_of_three_collectors_under_load_loses_and_duplicates_nothing(
    broker: Mosquitto, tmp_path: Path
) -> None:
    db = str(tmp_path / "store.db")
    uplink = uplink_section(broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    collectors = [CollectorProcess(tmp_path / f"collector-{n}", uplink, db=db) for n in range(3)]
    rng = random.Random(15)
    try:
        for collector in collectors:  # one after the other: the first makes db and key
            collector.start()
        cfg = uplink_settings("127.0.0.1", broker.port, ack_timeout_s=2.0)
        async with Fleet(tmp_path / "fleet", cfg, TERMINALS, seed=15) as fleet:
            selling = asyncio.create_task(fleet.sell(RATE_PER_S, 4.0 * KILLS), name="selling")
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(1.5, 3.0))
                victim = rng.choice(collectors)
                victim.kill()
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                await asyncio.to_thread(victim.start)
            sold = await selling
            drained = await fleet.drain(DRAIN_S)
            verdict = fleet.check(db)
        assert drained, f"{fleet.pending} sales still unacknowledged after {DRAIN_S} s"
        assert sold > RATE_PER_S * KILLS  # the load went on through the kills
        assert verdict.ok, "\n".join(verdict.problems)
        assert verdict.stored_once == verdict.committed == sold
        assert in_seq_order(db)
        # Every member stored a share, the restarted ones included; each message went to one
        # of them (three plain subscribers would see every sale thrice: 2 duplicates a sale).
        assert len(received_by(db)) == 3, received_by(db)
        duplicates = sum(t["duplicates"] for t in collector_report(f"sqlite:///{db}")["terminals"])
        assert duplicates < sold / 2, (duplicates, sold)
    finally:
        for collector in collectors:
            collector.kill()

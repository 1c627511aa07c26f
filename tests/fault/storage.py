"""Storage faults, done for real on the files of a running store, and the documented way back.

Each returns a one-line description for the schedule's log, and appends to `problems` what
went against the README (a start that should have been refused, a collector that did not
stop): those fail the run, as a lost sale does.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path

from edged.cli import EX_IOERR
from edged.collector.store import CollectorStore
from tests.fault.rig import Seller, Store
from tests.support.checker import Refusal
from tests.support.process import StartedAnyway
from tests.support.tmpfs import fill, free

EDGECTL = (sys.executable, "-c", "import sys, edged.ctl; sys.exit(edged.ctl.main())")
STORAGE_FAULTS = ("wal_lost", "wal_damaged", "entry_damaged", "disk_full", "collector_db_swapped")
WAL_HEADER_BYTES = 32
UNSENT_SALES = 3  # sales committed while the link is down, one of which gets damaged
COLLECTOR_EXIT_S = 30.0  # a hang detector: the collector checks its file at every batch
# The refusal names the last seq checkpointed into the main file, or says there is none.
_REFUSAL_AFTER = re.compile(r"every sale after seq (\d+)")
_REFUSAL_ALL = "holds no journal tables"


async def storage_fault(
    store: Store, seller: Seller, name: str, rng: random.Random, problems: list[str]
) -> str:
    """Do storage fault `name` while `seller` sells; heal it the way the README says."""
    if name == "wal_lost":
        return await lose_wal(store, seller, problems)
    if name == "wal_damaged":
        return await damage_wal(store, rng, rng.choice(("truncate", "flip")))
    if name == "entry_damaged":
        return await damage_entry(store, rng)
    if name == "disk_full":
        return await fill_disk(store, rng.uniform(0.2, 2.0))
    if name == "collector_db_swapped":
        return await swap_collector_db(store, rng.choice(("deleted", "replaced")), problems)
    raise ValueError(f"no storage fault {name!r}")


def _wal(journal: str) -> Path:
    return Path(f"{journal}-wal")


async def lose_wal(store: Store, seller: Seller, problems: list[str]) -> str:
    """kill -9, lose the -wal (and -shm): edged must refuse (74) until `journal init --force`,
    unless SQLite had folded the whole -wal into journal.db before the kill (README "A full
    disk"): then the seq mark shows nothing is missing, and edged starts, saying so."""
    store.till.kill()
    told = [c.seq for c in seller.committed if c.epoch == seller.epoch]
    for suffix in ("-wal", "-shm"):
        Path(store.till.journal + suffix).unlink(missing_ok=True)
    log_from = store.till.log.stat().st_size
    try:
        status = await asyncio.to_thread(store.till.start_refused)
    except StartedAnyway as exc:
        folded = '"journal_unclean_close_recovered"' in _log_since(store, log_from)
        await store.restart_daemon()
        if folded:  # the checker still counts every sale the till confirmed
            return "wal_lost: the -wal was folded in already, nothing lost, started"
        problems.append(f"wal_lost: {exc}")
        return "wal_lost: NOT refused"
    log = _log_since(store, log_from)
    after = _refused_after(log)
    if status != EX_IOERR or after is None:
        problems.append(f"wal_lost: exit {status}, refusal not as documented:\n{log[-2000:]}")
    store.refusals.append(Refusal(seller.epoch, after or 0, max(told, default=0)))
    init = await asyncio.to_thread(
        subprocess.run,
        [*EDGECTL, "--config", str(store.till.config), "journal", "init", "--force"],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        problems.append(f"wal_lost: journal init --force exited {init.returncode}: {init.stderr}")
    seller.epoch += 1
    await store.restart_daemon()
    return f"wal_lost: refused ({status}), sales after seq {after} given up, init --force"


def _log_since(store: Store, offset: int) -> str:
    """The till's log from byte `offset` on: the output of the starts since."""
    with store.till.log.open("rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def _refused_after(output: str) -> int | None:
    """The seq after which a refusal says the sales were lost (0: all), None if it says not."""
    found = _REFUSAL_AFTER.search(output)
    if found:
        return int(found.group(1))
    return 0 if _REFUSAL_ALL in output else None


async def damage_wal(store: Store, rng: random.Random, how: str) -> str:
    """kill -9, then `how` = truncate the -wal or flip bytes in it, in its second half; restart.

    SQLite drops every frame from the first bad one on: the journal's tail is gone.
    """
    store.till.kill()
    wal = _wal(store.till.journal)
    size = wal.stat().st_size if wal.exists() else 0
    if size <= WAL_HEADER_BYTES + 1:
        await store.restart_daemon()
        return f"wal_damaged: nothing to damage ({size} bytes)"
    offset = rng.randrange(WAL_HEADER_BYTES + (size - WAL_HEADER_BYTES) // 2, size)
    if how == "truncate":
        os.truncate(wal, offset)
        what = f"truncated at {offset} of {size}"
    else:
        count = rng.randint(1, 8)
        with wal.open("r+b") as fh:
            fh.seek(offset)
            data = bytearray(fh.read(count))
            for i in range(len(data)):
                data[i] ^= rng.randint(1, 255)
            fh.seek(offset)
            fh.write(data)
        what = f"{len(data)} bytes flipped at {offset} of {size}"
    await store.restart_daemon()
    return f"wal_damaged: {what}"


async def damage_entry(store: Store, rng: random.Random) -> str:
    """Stop edged with unsent sales, flip bytes of one unsent row's sale (not UTF-8 any more)."""
    await store.proxy.set_mode("blackhole")  # what is committed from now on stays unsent
    before = (await store.status())["journal"]["last_seq"]
    await store.wait(
        "sales committed while unsent", lambda s: s["journal"]["last_seq"] >= before + UNSENT_SALES
    )
    await asyncio.to_thread(store.till.terminate)
    with closing(sqlite3.connect(store.till.journal, isolation_level=None)) as conn:
        conn.text_factory = bytes
        ((last,),) = conn.execute("SELECT max(seq) FROM entries").fetchall()
        seq = rng.randint(before + 1, last)
        ((sale,),) = conn.execute("SELECT sale FROM entries WHERE seq = ?", (seq,)).fetchall()
        damaged = bytearray(sale)
        at = rng.randrange(1, len(damaged) - 1)
        for i in range(at, min(at + rng.randint(1, 4), len(damaged))):
            # into 0x80..0xBF: continuation bytes with no lead byte, never valid UTF-8
            damaged[i] = 0x80 | ((damaged[i] ^ rng.randint(1, 63)) & 0x3F)
        conn.execute(
            "UPDATE entries SET sale = CAST(? AS TEXT) WHERE seq = ?", (bytes(damaged), seq)
        )
    await store.restart_daemon()
    await store.proxy.set_mode("pass")
    return f"entry_damaged: seq {seq} (of {before + 1}..{last} unsent), bytes at {at}"


async def fill_disk(store: Store, hold_s: float) -> str:
    """Fill the journal's disk to the last byte while selling, then free it."""
    assert store.disk is not None, "disk_full needs Store(journal_disk_kib=...)"
    taken = await asyncio.to_thread(fill, store.disk)
    await asyncio.sleep(hold_s)
    free(store.disk)
    return f"disk_full: {taken // 1024} KiB taken for {hold_s:.2f}s"


async def swap_collector_db(store: Store, how: str, problems: list[str]) -> str:
    """`how` = deleted or replaced: the collector's database, under it; it must exit non-zero.

    Deleted: `rm` with a hard link kept as the backup. Replaced: moved aside, another valid
    collector database put at its path. The README's way back for both: stop, remove the
    `-wal`/`-shm` at the path, put the right file back, start (no `init`, which would adopt an
    empty database and lose every stored sale).
    """
    db = Path(store.collector.db)
    backup = db.with_name(db.name + ".backup")
    os.link(db, backup)
    db.unlink()
    if how == "replaced":
        other = db.with_name(f"other-{uuid.uuid4().hex[:8]}.db")  # a new one every time
        await asyncio.to_thread(lambda: CollectorStore.open(str(other)).close())
        os.rename(other, db)
    status = await asyncio.to_thread(store.collector.wait_exit, COLLECTOR_EXIT_S)
    if status is None:
        problems.append(f"collector_db_swapped ({how}): still running {COLLECTOR_EXIT_S}s later")
        store.collector.kill()
    elif status == 0:
        problems.append(f"collector_db_swapped ({how}): the collector exited 0")
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.replace(backup, db)
    await store.restart_collector()
    return f"collector_db_swapped: {how}, collector exited {status}, file restored"

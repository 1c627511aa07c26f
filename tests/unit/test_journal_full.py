"""The journal on a really full disk (a small tmpfs filled to the last byte): failing group
commits answer their callers, the writer goes on, and everything serves again once space
returns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from edged.errors import JournalFullError
from edged.journal import Journal
from edged.journal.preflight import WalLostError
from edged.journal.seqmark import SeqMarkFile
from edged.journal.verify import verify_journal
from edged.uplink.forwarder import ADOPTION_WAIT_S
from tests.support.forwarding import bare_forwarder
from tests.support.sales import cash_sale
from tests.support.tmpfs import fill, free, small_tmpfs

HANG_S = 20  # only a hang detector: every step here answers at once


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    # Small enough to fill at once, and the WAL stays far below its 1000-page auto-checkpoint,
    # so every write must take new space.
    with small_tmpfs(tmp_path / "disk", size_kib=1024) as where:
        yield where


async def open_journal(path: Path) -> Journal:
    return await Journal.open(path, store_id="S1", terminal_id="T1")


async def test_a_retried_sale_and_a_new_one_in_one_group_on_a_full_disk(disk: Path) -> None:
    path = disk / "journal.db"
    j = await open_journal(path)
    old = cash_sale()
    first = await j.commit(old)
    groups: list[list[str]] = []
    write_group = j._write_group

    async def recorded(group: Any) -> None:
        groups.append([item.sale_id for item in group])
        await write_group(group)

    j._write_group = recorded  # type: ignore[method-assign]
    fill(disk)
    new = cash_sale(pad=3000)
    async with asyncio.timeout(HANG_S):
        retried, failed = await asyncio.gather(
            j.commit(dict(old)), j.commit(new), return_exceptions=True
        )
    assert groups == [[old["id"], new["id"]]]  # the case of the issue: one group
    assert retried == msgspec.structs.replace(first, duplicate=True)
    assert isinstance(failed, JournalFullError)
    assert "not committed" in str(failed) and "Free space" in str(failed)
    health = j.health()
    assert health.alive and not health.stuck and health.waiting == 0
    assert health.failing_since is not None and "disk full" in (health.last_error or "")
    assert (j.stats().last_seq, j.stats().pending) == (1, 1)  # the failed sale took no seq

    async with asyncio.timeout(HANG_S):  # still full: still answered, still no seq taken
        with pytest.raises(JournalFullError):
            await j.commit(new)
        free(disk)
        again = await j.commit(new)
    assert (again.seq, again.duplicate) == (2, False)
    assert j.health().failing_since is None
    await j.close()
    report = verify_journal(path)
    assert (report.last_seq, report.entries) == (2, 2)


async def test_acks_purge_and_close_on_a_full_disk(disk: Path) -> None:
    path = disk / "journal.db"
    j = await open_journal(path)
    ids = [(await j.commit(cash_sale(pad=1000))).seq for _ in range(10)]
    assert await j.mark_acked(5) == 5
    fill(disk)
    with pytest.raises(JournalFullError, match=r"disk full while recording the store's ack"):
        await j.mark_acked(7)
    assert j.stats().acked_upto == 5  # not advanced: the store will ack again
    with pytest.raises(JournalFullError, match="disk full while purging"):
        await j.purge(retain_days=0)
    assert await j.purge(retain_days=30) == 0  # nothing old enough: nothing written either
    assert not j._db.in_transaction  # the next statement is its own durable transaction
    found = await j.get(str(uuid.uuid4()))  # reads still work
    assert found is None
    assert [e.seq for e in await j.unacked(0, 10)] == ids[5:]
    with capture_logs() as logs:
        async with asyncio.timeout(HANG_S):
            await j.close()
    events = [entry["event"] for entry in logs]
    assert "journal_checkpoint_failed" in events and "journal_closed" in events
    assert (disk / "journal.db-wal").stat().st_size > 0  # the WAL keeps every commit

    j = await open_journal(path)  # an existing journal opens on the full disk too
    assert (j.stats().last_seq, j.stats().acked_upto) == (10, 5)
    await j.close()
    free(disk)
    j = await open_journal(path)
    assert await j.mark_acked(7) == 7
    assert await j.purge(retain_days=0) == 7
    assert (await j.commit(cash_sale())).seq == 11
    await j.close()
    report = verify_journal(path)
    assert (report.anchor_seq, report.last_seq, report.acked_upto) == (7, 11, 7)


async def test_an_ack_that_cannot_be_recorded_keeps_the_link_up(disk: Path) -> None:
    """On a full disk the forwarder logs the ack it could not record and goes on; the store's
    next cumulative ack records it once there is space."""
    j = await open_journal(disk / "journal.db")
    for _ in range(6):
        await j.commit(cash_sale(pad=1000))
    fwd = bare_forwarder(j)
    fill(disk)
    with capture_logs() as logs:
        await fwd.handle_ack("edged/v1/S1/T1/ack", b'{"v":1,"upto":3}')  # raises nothing
        await fwd.handle_ack("edged/v1/S1/T1/ack", b'{"v":1,"upto":4}')
    assert [e["log_level"] for e in logs if e["event"] == "ack_not_recorded"] == [
        "warning",
        "debug",
    ]
    assert j.stats().acked_upto == 0
    free(disk)
    await fwd.handle_ack("edged/v1/S1/T1/ack", b'{"v":1,"upto":5}')
    assert j.stats().acked_upto == 5
    fill(disk)  # full again after an ack was recorded: said again at WARNING
    with capture_logs() as logs:
        await fwd.handle_ack("edged/v1/S1/T1/ack", b'{"v":1,"upto":6}')
    assert [e["log_level"] for e in logs if e["event"] == "ack_not_recorded"] == ["warning"]
    free(disk)
    await j.close()


async def test_an_adoption_the_full_disk_refused_is_written_once_space_returns(
    disk: Path,
) -> None:
    """No store history: the forwarder resolves the adoption after each ADOPTION_WAIT_S until
    the journal could write it, and says once that the store has none."""
    j = await Journal.open(disk / "journal.db", store_id="S1", terminal_id="T1", adopt=True)
    await j.commit(cash_sale())
    fwd = bare_forwarder(j)
    fill(disk)
    with capture_logs() as logs:
        waiting = asyncio.create_task(fwd._adopt_unless_told())
        async with asyncio.timeout(2 * ADOPTION_WAIT_S + HANG_S):
            while sum(e["event"] == "journal_adoption_failed" for e in logs) < 2:
                await asyncio.sleep(0.05)
        assert j.adoption_pending and not waiting.done()
        free(disk)
        async with asyncio.timeout(ADOPTION_WAIT_S + HANG_S):
            await waiting
    assert not j.adoption_pending and j.last_seq == 1
    said = [e for e in logs if e["event"] == "journal_adoption_no_history"]
    assert [e["waited_s"] for e in said] == [ADOPTION_WAIT_S]
    await j.close()


async def test_a_journal_opened_on_a_full_disk_says_open_at_its_first_commit(disk: Path) -> None:
    path = disk / "journal.db"
    j = await open_journal(path)
    for _ in range(10):  # enough that the -wal cannot be checkpointed on the full disk
        await j.commit(cash_sale(pad=1000))
    fill(disk)
    await j.close()
    assert (disk / "journal.db-wal").stat().st_size > 0
    with capture_logs() as logs:
        j = await open_journal(path)
    assert "journal_open_not_marked" in [entry["event"] for entry in logs]
    free(disk)
    async with asyncio.timeout(HANG_S):
        assert (await j.commit(cash_sale())).seq == 11
    assert await j.execute("SELECT open FROM run_state") == [(1,)]
    await j.close()


async def test_a_journal_closed_on_a_full_disk_opens_again_with_nothing_lost(disk: Path) -> None:
    """The close cannot write "closed" into the full file, but SQLite's own checkpoint at close
    can still move the -wal into it and delete it: the seq mark then proves nothing was lost,
    and the journal opens again instead of being refused as one whose -wal was lost."""
    path = disk / "journal.db"
    j = await open_journal(path)
    j.resolve_adoption(0)
    sales = [await j.commit(cash_sale()) for _ in range(3)]
    fill(disk)
    with capture_logs() as logs:
        await j.close()
    assert any(e["event"] == "journal_checkpoint_failed" for e in logs)
    assert not path.with_name("journal.db-wal").exists()  # SQLite checkpointed it at close
    free(disk)
    assert verify_journal(path).last_seq == 3  # a technician's reader agrees: nothing missing
    with capture_logs() as logs:
        j = await open_journal(path)
    try:
        assert j.last_seq == 3
        assert [e.seq for e in await j.unacked(0, 10)] == [s.seq for s in sales]
        reopened = [e for e in logs if e["event"] == "journal_unclean_close_recovered"]
        assert [(e["log_level"], e["last_seq"]) for e in reopened] == [("warning", 3)]
        assert (await j.commit(cash_sale())).seq == 4
    finally:
        await j.close()


async def test_a_seq_mark_that_disagrees_keeps_the_journal_refused(disk: Path) -> None:
    """Same unclean close, but the mark names another hash at that seq (or a later seq): the
    main file is not proven complete, so it is still refused as one whose -wal was lost."""
    path = disk / "journal.db"
    j = await open_journal(path)
    j.resolve_adoption(0)
    for _ in range(3):
        await j.commit(cash_sale())
    fill(disk)
    await j.close()
    free(disk)
    for seq, digest in ((3, bytes(32)), (4, bytes(32))):
        mark = SeqMarkFile(path)
        mark.write(seq, digest)
        mark.close()
        with pytest.raises(WalLostError, match="was not closed cleanly"):
            await open_journal(path)

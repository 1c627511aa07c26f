"""The journal's files: created whole, a lost -wal refused, consistent backups, mode 0640."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edged import files
from edged.errors import ChainError, JournalError
from edged.journal import Journal
from edged.journal.backup import backup_journal
from edged.journal.create import create_journal, set_aside
from edged.journal.preflight import WalLostError
from edged.journal.seqmark import read_mark
from edged.journal.verify import verify_journal


def sale() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 100,
        "lines": [{"sku": "A", "qty": 1, "amount": 100}],
        "payments": [{"method": "card", "amount": 100, "masked_pan": "411111******1111"}],
    }


async def open_journal(path: Path) -> Journal:
    return await Journal.open(path, store_id="S1", terminal_id="T1")


def main_file_only(path: Path) -> sqlite3.Connection:
    """The main file as SQLite reads it with no -wal at all (`immutable=1` ignores one)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)


def crash_copy(path: Path, into: Path, *, with_wal: bool) -> Path:
    """The files a crash leaves behind now, copied elsewhere (the -wal kept or lost)."""
    into.mkdir()
    shutil.copyfile(path, into / path.name)
    if with_wal:
        shutil.copyfile(f"{path}-wal", into / f"{path.name}-wal")
    return into / path.name


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


async def test_a_new_journal_has_its_schema_and_identity_in_the_main_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await open_journal(path)
    try:
        await j.commit(sale())
        with closing(main_file_only(path)) as conn:
            assert conn.execute("SELECT store_id, terminal_id FROM identity").fetchall() == [
                ("S1", "T1")
            ]
            assert conn.execute("SELECT open FROM run_state").fetchall() == [(1,)]
            assert conn.execute("PRAGMA user_version").fetchall()[0][0] >= 3
    finally:
        await j.close()
    with closing(main_file_only(path)) as conn:
        assert conn.execute("SELECT open FROM run_state").fetchall() == [(0,)]
    assert not Path(f"{path}-wal").exists()  # a clean close folds it in and removes it


async def test_a_lost_wal_after_sales_is_refused_naming_the_last_checkpointed_seq(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    j = await open_journal(path)
    for _ in range(5):
        await j.commit(sale())
    await j.execute("PRAGMA wal_checkpoint(PASSIVE)")  # as SQLite's auto-checkpoint does
    for _ in range(5):
        await j.commit(sale())
    lost = crash_copy(path, tmp_path / "lost", with_wal=False)
    kept = crash_copy(path, tmp_path / "kept", with_wal=True)
    await j.close()
    before = lost.read_bytes()

    with pytest.raises(WalLostError, match=r"after seq 5.*Look for journal\.db-wal") as refused:
        await open_journal(lost)
    assert "edgectl journal init --force" in str(refused.value)
    assert "edgectl journal backup" in str(refused.value)
    assert lost.read_bytes() == before  # nothing initialised, nothing written
    assert not Path(f"{lost}-wal").exists()
    with pytest.raises(WalLostError, match="after seq 5"):
        verify_journal(lost)  # a reader leaves an empty -wal behind ...
    with pytest.raises(WalLostError, match="after seq 5"):
        await open_journal(lost)  # ... which is no -wal content either
    with pytest.raises(WalLostError):
        backup_journal(lost, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()

    j = await open_journal(kept)  # the crash with its -wal: every sale is there
    assert j.last_seq == 10
    await j.close()


async def test_a_crash_right_after_the_open_is_not_a_lost_wal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await open_journal(path)
    crashed = crash_copy(path, tmp_path / "crashed", with_wal=True)
    await j.close()
    j = await open_journal(crashed)
    assert j.last_seq == 0
    await j.close()


def old_journal_main_file(path: Path) -> None:
    """What edged before this change left after a crash and a lost -wal: no tables at all."""
    live = path.with_name("live.db")
    conn = sqlite3.connect(live, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO entries VALUES (1)")
    shutil.copyfile(live, path)  # the main file alone
    conn.close()


async def test_a_main_file_without_tables_is_never_initialised(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    old_journal_main_file(path)
    before = path.read_bytes()
    with pytest.raises(WalLostError, match="lost before its first checkpoint"):
        await open_journal(path)
    assert path.read_bytes() == before
    with pytest.raises(WalLostError, match="lost before its first checkpoint"):
        verify_journal(path)


async def test_an_empty_file_or_a_wal_alone_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty" / "journal.db"
    empty.parent.mkdir()
    empty.touch()
    with pytest.raises(JournalError, match=r"empty \(0 bytes\).*init --force"):
        await open_journal(empty)
    assert empty.stat().st_size == 0
    alone = tmp_path / "alone" / "journal.db"
    alone.parent.mkdir()
    Path(f"{alone}-wal").write_bytes(b"frames")
    with pytest.raises(JournalError, match="missing, but journal.db-wal is there"):
        await open_journal(alone)
    assert not alone.exists()


async def test_a_backup_is_consistent_verified_and_opens_as_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await open_journal(path)
    sales = [sale() for _ in range(20)]
    results = [await j.commit(s) for s in sales]
    copy = tmp_path / "backup" / "copy.db"
    copy.parent.mkdir()
    report = backup_journal(path, copy)  # the journal is open, its sales only in the -wal
    assert (report.entries, report.last_seq) == (20, 20)
    assert not Path(f"{copy}-wal").exists()
    with pytest.raises(JournalError, match="exists; choose another name, or --force"):
        backup_journal(path, copy)
    await j.commit(sale())
    assert backup_journal(path, copy, replace=True).last_seq == 21
    await j.close()
    assert os.listdir(copy.parent) == ["copy.db"]  # no partial file left

    restored = await open_journal(copy)  # a restore: the copy is a whole, closed journal
    found = await restored.get(sales[-1]["id"])
    assert found is not None and found[0].hash.hex() == results[-1].hash
    assert restored.last_seq == 21
    await restored.close()


async def test_a_backup_of_a_broken_chain_is_written_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await open_journal(path)
    for _ in range(3):
        await j.commit(sale())
    await j.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE entries SET receipt_no = 'X' WHERE seq = 2")
    with pytest.raises(ChainError) as broken:
        backup_journal(path, tmp_path / "copy.db")
    assert broken.value.seq == 2
    assert (tmp_path / "copy.db").exists()


async def test_set_aside_keeps_every_file_under_a_new_name(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await open_journal(path)
    await j.commit(sale())
    crashed = crash_copy(path, tmp_path / "crashed", with_wal=True)
    await j.close()
    Path(f"{crashed}-shm").write_bytes(b"")
    moved = set_aside(crashed)
    assert [old.name for old, _ in moved] == ["journal.db", "journal.db-wal", "journal.db-shm"]
    assert all(not old.exists() and new.exists() for old, new in moved)
    aside = moved[0][1]
    assert moved[1][1].name == f"{aside.name}-wal"  # SQLite still finds its -wal
    create_journal(crashed, "S1", "T1")
    j = await open_journal(crashed)
    assert j.last_seq == 0
    await j.close()
    j = await open_journal(aside)  # the old journal, whole, under its new name
    assert j.last_seq == 1
    await j.close()
    with pytest.raises(JournalError, match="a file is already there"):
        create_journal(crashed, "S1", "T1")


@pytest.mark.usefixtures("no_umask")
async def test_journal_files_and_folders_are_0640_and_0750_whatever_the_umask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "edged" / "journal.db"
    j = await open_journal(path)
    try:
        await j.commit(sale())
        for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
            assert mode(path.with_name(name)) == 0o640, name
        assert mode(path.parent) == mode(path.parent.parent) == 0o750
        assert backup_journal(path, tmp_path / "copy.db").entries == 1
        assert mode(tmp_path / "copy.db") == 0o640
    finally:
        await j.close()


async def test_a_journal_readable_by_everyone_is_made_0640_at_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    await (await open_journal(path)).close()
    path.chmod(0o644)  # as edged made it outside systemd before it set modes
    with capture_logs() as logs:
        j = await open_journal(path)
    try:
        assert {"event": "journal_mode_tightened", "path": str(path), "was": "0o644"} in [
            {k: entry[k] for k in ("event", "path", "was")}
            for entry in logs
            if entry["event"] == "journal_mode_tightened"
        ]
        await j.commit(sale())
        assert mode(path) == mode(f"{path}-wal") == 0o640
    finally:
        await j.close()


async def test_a_journal_file_whose_mode_cannot_be_changed_is_logged_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chmod refused on the -wal (a file of another owner; as root none is): a warning for it,
    the other files tightened as usual, and the journal opens."""
    path = tmp_path / "journal.db"
    await (await open_journal(path)).close()
    path.chmod(0o644)
    tighten = files.tighten

    def refused_for_the_wal(file: Path) -> int | None:
        if file.name.endswith("-wal"):
            raise PermissionError(1, "Operation not permitted", str(file))
        return tighten(file)

    monkeypatch.setattr(files, "tighten", refused_for_the_wal)
    with capture_logs() as logs:
        j = await open_journal(path)
    await j.close()
    assert [(e["event"], e["path"]) for e in logs if e["event"].startswith("journal_mode_")] == [
        ("journal_mode_tightened", str(path)),
        ("journal_mode_not_tightened", "journal.db-wal"),
    ]
    assert mode(path) == 0o640


async def test_close_checkpoints_into_the_main_file_while_another_reader_is_connected(
    tmp_path: Path,
) -> None:
    """SQLite checkpoints at close only as the last connection; with a reader connected
    (edgectl, a backup) the journal's own checkpoint puts every sale and "closed" in the main
    file, so that it is whole without its -wal."""
    path = tmp_path / "journal.db"
    j = await open_journal(path)
    for _ in range(3):
        await j.commit(sale())
    with closing(sqlite3.connect(path)) as reader:
        reader.execute("SELECT count(*) FROM entries").fetchall()
        await j.close()
        with closing(main_file_only(path)) as conn:
            assert conn.execute("SELECT open FROM run_state").fetchall() == [(0,)]
            assert conn.execute("SELECT max(seq) FROM entries").fetchall() == [(3,)]


async def test_close_answers_the_commits_already_queued_before_it_closes_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    j = await open_journal(path)
    queued = [asyncio.create_task(j.commit(sale())) for _ in range(3)]
    await asyncio.sleep(0)  # queued, the writer not yet run
    await j.close()
    results = [task.result() for task in queued]  # answered before close returned
    assert [r.seq for r in results] == [1, 2, 3]
    assert read_mark(path) == (3, bytes.fromhex(results[-1].hash))
    assert verify_journal(path).last_seq == 3


async def test_a_failure_closing_the_file_is_a_journal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite failing to close (an I/O error; none can be provoked on demand) is said, not
    swallowed: the daemon's stop reports it."""
    j = await open_journal(tmp_path / "journal.db")
    db = j._db
    close = db.close

    async def failing_close() -> None:
        await close()
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db, "close", failing_close)
    with pytest.raises(JournalError, match="disk I/O error while closing"):
        await j.close()

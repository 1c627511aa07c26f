"""The collector's database is never silently lost, replaced or recreated empty."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.collector import schema
from edged.collector.dbfile import marker_path, read_marker
from edged.collector.dialect import PgConn, postgres
from edged.collector.report import collector_report
from edged.collector.schema import CollectorDbChangedError, CollectorStoreError
from edged.collector.store import Batch, CollectorStore, init_collector_db
from edged.wire import Entry
from tests.support.collectordb import (
    CollectorDb,
    create_empty_postgres_database,
    drop_postgres_database,
    fresh_collector_db,
)
from tests.support.entries import make_chain

S, T = "s1", "t1"
EX_IOERR = 74


def stored(db_path: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM transactions").fetchone()[0])


def make_other_db(path: str) -> None:
    """A valid collector database of another collector (another identity) at `path`."""
    other = Path(path).parent / "elsewhere"
    other.mkdir()
    CollectorStore.open(str(other / "c.db")).close()
    shutil.copy(other / "c.db", path)


def test_first_start_creates_the_database_and_remembers_it(db_path: str) -> None:
    assert read_marker(db_path) is None
    CollectorStore.open(db_path).close()
    assert marker_path(db_path).name == ".collector.db.identity"
    db_id = read_marker(db_path)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT db_id FROM identity").fetchone()[0] == db_id
    CollectorStore.open(db_path).close()  # the same database again: fine
    assert read_marker(db_path) == db_id


def test_missing_database_is_refused_until_init(db_path: str) -> None:
    store = CollectorStore.open(db_path)
    store.store_batch(S, T, make_chain(S, T, 3))
    store.close()
    for name in ("", "-wal", "-shm"):
        Path(db_path + name).unlink(missing_ok=True)
    with pytest.raises(CollectorDbChangedError, match="is missing.*restore it from the backup"):
        CollectorStore.open(db_path)
    assert not Path(db_path).exists()  # nothing was created
    store = CollectorStore.open(db_path, init=True)
    store.close()
    assert stored(db_path) == 0
    CollectorStore.open(db_path).close()  # the new one is now this collector's


def test_an_empty_file_where_the_database_was_is_not_initialised(db_path: str) -> None:
    CollectorStore.open(db_path).close()
    Path(db_path).unlink()
    Path(db_path).touch()  # a careless `> collector.db`, or a failed restore
    with pytest.raises(CollectorDbChangedError, match="is empty"):
        CollectorStore.open(db_path)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_another_database_is_refused_until_init_adopts_it(db_path: str) -> None:
    CollectorStore.open(db_path).close()
    mine = read_marker(db_path)
    os.unlink(db_path)
    make_other_db(db_path)
    with pytest.raises(CollectorDbChangedError, match="was replaced"):
        CollectorStore.open(db_path)
    CollectorStore.open(db_path, init=True).close()
    assert read_marker(db_path) not in (None, mine)


def test_a_copy_of_the_same_database_is_accepted(db_path: str, tmp_path: Path) -> None:
    """Restoring a backup (a copy keeps the identity) needs no init."""
    store = CollectorStore.open(db_path)
    store.store_batch(S, T, make_chain(S, T, 2))
    store.close()
    shutil.copy(db_path, tmp_path / "backup.db")
    os.unlink(db_path)
    shutil.copy(tmp_path / "backup.db", db_path)
    CollectorStore.open(db_path).close()
    assert stored(db_path) == 2


@pytest.mark.parametrize("how", ["deleted", "replaced", "wal deleted"])
def test_database_changed_under_a_running_store_stops_every_commit(db_path: str, how: str) -> None:
    store = CollectorStore.open(db_path)
    try:
        assert store.store_batch(S, T, make_chain(S, T, 1)) == 1
        if how == "deleted":
            os.unlink(db_path)
        elif how == "replaced":
            os.rename(db_path, db_path + ".old")
            make_other_db(db_path)
        else:
            os.unlink(db_path + "-wal")
        with pytest.raises(CollectorDbChangedError, match="while the collector was running"):
            store.store_batch(S, T, make_chain(S, T, 3)[1:])
    finally:
        store.close()
    if how == "replaced":
        # Our WAL, still named after the path, went into our own file, not into the new one.
        with pytest.raises(CollectorDbChangedError, match="was replaced"):
            CollectorStore.open(db_path)
        assert stored(db_path + ".old") == 1


def test_database_replaced_under_a_running_store_stops_its_other_writes(db_path: str) -> None:
    """Resend requests, answers and accepted gaps are written only to the store's own file."""
    store = CollectorStore.open(db_path)
    try:
        assert store.store_batch(S, T, make_chain(S, T, 3)[2:]) == 0
        os.rename(db_path, db_path + ".old")
        make_other_db(db_path)
        with pytest.raises(CollectorDbChangedError, match="while the collector was running"):
            store.plan_resend((S, T), (1, 2))
    finally:
        store.close()


def test_database_replaced_during_the_commit_is_caught_after_it(db_path: str) -> None:
    """The check after COMMIT: whatever went to the old file is not acknowledged."""
    store = CollectorStore.open(db_path)
    chain = make_chain(S, T, 2)
    swapped: list[bool] = []

    class SwapWhileStoring(list[Entry]):
        """Entries that replace the database file when the store, inside its transaction,
        first reads them (a Batch made by hand: Batch.of would read them before)."""

        def __iter__(self):  # type: ignore[no-untyped-def]
            if not swapped:
                swapped.append(True)
                os.rename(db_path, db_path + ".old")
                make_other_db(db_path)
            return iter(chain)

    batch = Batch(S, T, SwapWhileStoring(chain), Batch.of(S, T, chain).message)
    try:
        with pytest.raises(CollectorDbChangedError, match="replaced"):
            store.store_batches([batch])
    finally:
        store.close()
    assert swapped
    assert stored(db_path + ".old") == 2  # committed, to the old file: never acknowledged


def test_version_1_database_is_upgraded_and_keeps_its_sales(db_path: str) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.executescript(schema._SCHEMA + "PRAGMA user_version = 1;")
        conn.execute(
            "INSERT INTO transactions VALUES ('s1','t1',1,'i','r','c','p','h','{}','now','c0')"
        )
    CollectorStore.open(db_path).close()
    assert collector_report(f"sqlite:///{db_path}")["schema_version"] == schema.SCHEMA_VERSION
    assert stored(db_path) == 1
    assert read_marker(db_path) is not None


def write_config(tmp_path: Path, db_path: str) -> str:
    config = tmp_path / "collector.toml"
    # Port 9 (discard): nothing listens; the database is checked before the broker is tried.
    config.write_text(
        f'[uplink]\nhost = "127.0.0.1"\nport = 9\n[collector]\ndb = "sqlite:///{db_path}"\n'
    )
    return str(config)


def edged(*args: str) -> subprocess.CompletedProcess[str]:
    """`edged ARGS` as an admin or systemd runs it."""
    command = [sys.executable, "-m", "edged.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_cli_refuses_a_missing_database_with_74_and_init_creates_it(
    db_path: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, db_path)
    CollectorStore.open(db_path).close()
    os.unlink(db_path)
    refused = edged("collector", "--config", config)
    assert refused.returncode == EX_IOERR, refused
    assert "is missing" in refused.stderr, refused.stderr
    assert "edged collector --config FILE init" in refused.stderr
    assert "collector_db_changed" in refused.stderr  # the CRITICAL log line too
    assert not Path(db_path).exists()
    init = edged("collector", "--config", config, "init")
    assert init.returncode == 0, init
    assert "created an empty collector db" in init.stdout
    assert Path(db_path).exists()


# PostgreSQL: no file to watch; the database's db_id, remembered in state_dir, is checked at
# every (re)connect.


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[CollectorDb]:
    with fresh_collector_db("postgresql", tmp_path) as db:
        yield db


def test_postgres_first_start_remembers_the_database_in_state_dir(pg: CollectorDb) -> None:
    CollectorStore.open(pg.target).close()
    db_id = read_marker(pg.target.local)
    assert marker_path(pg.target.local).parent == Path(pg.target.local).parent
    assert pg.query("SELECT db_id FROM identity") == [(db_id,)]
    CollectorStore.open(pg.target).close()  # the same database again: fine


def test_postgres_database_lost_is_refused_until_init(pg: CollectorDb) -> None:
    store = CollectorStore.open(pg.target)
    store.store_batch(S, T, make_chain(S, T, 3))
    store.close()
    drop_postgres_database(pg)
    with pytest.raises(CollectorDbChangedError, match="does not exist.*restore it from the backup"):
        CollectorStore.open(pg.target)
    create_empty_postgres_database(pg)  # what an admin does first; the collector creates none
    with pytest.raises(CollectorDbChangedError, match="is empty"):
        CollectorStore.open(pg.target)
    assert pg.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    assert "identity" in init_collector_db(pg.target)
    assert pg.query("SELECT count(*) FROM transactions") == [(0,)]
    CollectorStore.open(pg.target).close()


def test_postgres_another_database_is_refused_until_init_adopts_it(
    pg: CollectorDb, tmp_path: Path
) -> None:
    CollectorStore.open(pg.target).close()
    mine = read_marker(pg.target.local)
    pg.query("UPDATE identity SET db_id = 'someone-elses'")  # as a restore of another one
    with pytest.raises(CollectorDbChangedError, match="was replaced"):
        CollectorStore.open(pg.target)
    assert "now this collector's database" in init_collector_db(pg.target)
    assert read_marker(pg.target.local) not in (None, mine)


def test_postgres_database_dropped_under_a_running_store_stops_every_commit(
    pg: CollectorDb,
) -> None:
    store = CollectorStore.open(pg.target)
    try:
        assert store.store_batch(S, T, make_chain(S, T, 1)) == 1
        drop_postgres_database(pg)  # ends the store's connection too
        create_empty_postgres_database(pg)
        with pytest.raises(CollectorStoreError):  # the broken connection: nothing stored
            store.store_batch(S, T, make_chain(S, T, 3)[1:])
        with pytest.raises(CollectorDbChangedError, match="is empty"):  # at the reconnect
            store.store_batch(S, T, make_chain(S, T, 3)[1:])
    finally:
        store.close()


def test_postgres_connection_lost_is_made_again_and_nothing_is_lost(pg: CollectorDb) -> None:
    """A server restart: the group in flight fails (and is redelivered), the next one stores."""
    store = CollectorStore.open(pg.target)
    chain = make_chain(S, T, 4)
    try:
        assert store.store_batch(S, T, chain[:2]) == 2
        pg.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
            " current_database() AND pid <> pg_backend_pid()"
        )
        with pytest.raises(CollectorStoreError):
            store.store_batch(S, T, chain[2:])
        assert store.store_batch(S, T, chain[2:]) == 4
    finally:
        store.close()
    assert pg.query("SELECT count(*) FROM transactions") == [(4,)]


def test_cli_refuses_a_lost_postgres_database_with_74(pg: CollectorDb, tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f'[uplink]\nhost = "127.0.0.1"\nport = 9\n[collector]\n{pg.config_lines}')
    CollectorStore.open(pg.target).close()
    drop_postgres_database(pg)
    create_empty_postgres_database(pg)
    refused = edged("collector", "--config", str(config))
    assert refused.returncode == EX_IOERR, refused
    assert "is empty" in refused.stderr, refused.stderr
    init = edged("collector", "--config", str(config), "init")
    assert init.returncode == 0, init


def make_old_database(db: CollectorDb, version: int) -> None:
    """A collector database as an edged of schema `version` left it, with one sale in it."""
    store_conn = None
    if db.backend == "sqlite":
        script = "".join(schema._MIGRATIONS[step] + ";" for step in range(1, version + 1))
        with sqlite3.connect(db.target.path) as conn:
            conn.executescript(script + f"PRAGMA user_version = {version};")
    else:
        import psycopg

        dialect = postgres()
        with psycopg.connect(db.url, autocommit=True) as conn:
            for step in range(1, version + 1):
                for statement in dialect.ddl(schema._MIGRATIONS[step]).split(";"):
                    if statement.strip():
                        conn.execute(statement)  # type: ignore[call-overload]
                for statement in dialect.extra_ddl(step):
                    conn.execute(statement)  # type: ignore[call-overload]
        store_conn = PgConn(db.url)
        dialect.set_schema_version(store_conn, version)
        store_conn.close()
    (entry,) = make_chain(S, T, 1)
    db.query(
        "INSERT INTO transactions (store_id, terminal_id, seq, id, receipt_no, created_at,"
        " prev_hash, hash, body, received_at, received_by)"
        " VALUES (?, ?, 1, ?, ?, ?, ?, ?, '{}', 'then', 'c0')",
        (S, T, entry.id, entry.receipt_no, entry.created_at, entry.prev_hash, entry.hash),
    )
    if version >= 2:
        db.query("INSERT INTO identity (db_id, created_at) VALUES ('old-db', 'then')")


@pytest.mark.parametrize("version", [2, 4, schema.SCHEMA_VERSION])
def test_an_older_database_is_upgraded_in_place_and_keeps_its_sales(
    collector_db: CollectorDb, version: int
) -> None:
    """What an older edged made, through the migration history, on either database."""
    make_old_database(collector_db, version)
    chain = make_chain(S, T, 3)
    store = CollectorStore.open(collector_db.target, init=True)  # init: an existing database
    try:
        assert store.store_batch(S, T, chain[1:]) == 3  # the old seq 1 counts
    finally:
        store.close()
    report = collector_report(collector_db.target)
    assert report["schema_version"] == schema.SCHEMA_VERSION
    assert collector_db.query("SELECT seq FROM transactions ORDER BY seq") == [(1,), (2,), (3,)]
    (terminal,) = report["terminals"]
    assert terminal["chain_broken_at"] == 2  # the old seq 1 is of another chain: checked, kept
    assert collector_db.query("SELECT db_id FROM identity") == [("old-db",)]


def test_init_says_what_it_did(db_path: str) -> None:
    """`edged collector init` tells the admin whether it created, kept or adopted a database."""
    created = init_collector_db(db_path)
    first = read_marker(db_path)
    assert created == f"created an empty collector db {db_path} (identity {first})"
    assert init_collector_db(db_path) == f"collector db {db_path} is ready (identity {first})"
    os.unlink(marker_path(db_path))  # a database whose marker went missing: taken as it is
    assert init_collector_db(db_path) == f"collector db {db_path} is ready (identity {first})"
    os.unlink(db_path)
    make_other_db(db_path)
    adopted = init_collector_db(db_path)
    now = read_marker(db_path)
    assert now != first
    assert adopted == (
        f"collector db {db_path} is now this collector's database (identity {now}, was {first})"
    )

"""The collector's database: its schema and migrations (both dialects), and the errors it raises."""

from __future__ import annotations

import uuid

import structlog

from edged.clock import utc_now_iso
from edged.collector.dialect import Conn, Dialect
from edged.errors import EdgedError

log = structlog.get_logger(__name__)


SCHEMA_VERSION = 5


BUSY_TIMEOUT_MS = 10_000  # several collectors may share one db file
CACHE_KIB = 64 * 1024  # SQLite page cache of the collector's connection


_SCHEMA = """
CREATE TABLE transactions (
    store_id     TEXT NOT NULL,
    terminal_id  TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL,
    receipt_no   TEXT NOT NULL,
    created_at   TEXT NOT NULL,   -- the terminal's clock, RFC 3339 UTC
    prev_hash    TEXT NOT NULL,   -- lowercase hex
    hash         TEXT NOT NULL,   -- lowercase hex, verified on arrival
    body         TEXT NOT NULL,   -- RFC 8785 JSON of the whole entry, sale included
    received_at  TEXT NOT NULL,   -- the collector's clock, RFC 3339 UTC
    received_by  TEXT NOT NULL,   -- MQTT client id of the collector that stored it
    UNIQUE (store_id, terminal_id, seq),
    UNIQUE (id)
);
CREATE TABLE terminals (
    store_id         TEXT NOT NULL,
    terminal_id      TEXT NOT NULL,
    contiguous_upto  INTEGER NOT NULL,  -- everything <= this is stored and chain-verified
    last_hash        TEXT NOT NULL,     -- hash of the entry at contiguous_upto
    max_seq          INTEGER NOT NULL,  -- highest seq stored (v3: or held)
    gap_from         INTEGER,           -- first missing seq while later ones are stored
    gap_to           INTEGER,           -- last missing seq of that gap
    chain_broken_at  INTEGER,           -- stored seq whose prev_hash does not link
    entries          INTEGER NOT NULL,
    duplicates       INTEGER NOT NULL,  -- resent entries absorbed
    problems         INTEGER NOT NULL,  -- rejected or conflicting entries received
    first_seen_at    TEXT NOT NULL,
    last_seen_at     TEXT NOT NULL,
    PRIMARY KEY (store_id, terminal_id)
);
CREATE TABLE problems (
    store_id     TEXT NOT NULL,
    terminal_id  TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL,  -- see README "The database" (v1: the first five of them)
    hash         TEXT NOT NULL,  -- the hash the entry claimed (quarantined: SHA-256 of the message)
    detail       TEXT NOT NULL,
    body         TEXT NOT NULL,  -- the entry as received, kept as evidence ('' if quarantined)
    first_at     TEXT NOT NULL,
    last_at      TEXT NOT NULL,
    count        INTEGER NOT NULL,
    UNIQUE (store_id, terminal_id, seq, kind, hash)
);
"""

# Version 2: a message that cannot be stored at all is quarantined in `problems` (seq 0) with
# its topic and raw bytes; the database carries an identity so it is never silently replaced.
_SCHEMA_V2 = """
ALTER TABLE problems ADD COLUMN topic TEXT;      -- quarantined: the topic it came on
ALTER TABLE problems ADD COLUMN raw BLOB;        -- quarantined: the message (a prefix if large)
ALTER TABLE problems ADD COLUMN raw_size INTEGER;  -- quarantined: the whole message's size
CREATE TABLE identity (
    db_id       TEXT NOT NULL,  -- random, made once: a copy of this file has the same one
    created_at  TEXT NOT NULL
);
"""

# Version 3: nothing a terminal sends stops its stream. An entry that cannot be a sale in
# `transactions` still occupies its seq, in `held`; seqs a terminal declared lost (journal_gap)
# and the store lacks are in `lost`; `terminals` knows its highest held seq's hash (for acks).
_SCHEMA_V3 = """
CREATE TABLE held (
    store_id     TEXT NOT NULL,
    terminal_id  TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL,  -- journal_gap | damaged_entry | id_conflict | invalid | bad_hash
    prev_hash    TEXT NOT NULL,  -- as the entry states it (the chain walk uses it)
    hash         TEXT NOT NULL,  -- as the entry states it: the walk continues from it
    gap_from     INTEGER,        -- journal_gap: the seqs the terminal declares lost
    gap_to       INTEGER,
    detail       TEXT NOT NULL,
    body         TEXT NOT NULL,  -- the entry as received (JSON, its sale as sent)
    raw          BLOB,           -- damaged_entry: the journal row's bytes, base64-decoded
    received_at  TEXT NOT NULL,
    received_by  TEXT NOT NULL,
    PRIMARY KEY (store_id, terminal_id, seq)
);
CREATE TABLE lost (
    store_id     TEXT NOT NULL,
    terminal_id  TEXT NOT NULL,
    seq_from     INTEGER NOT NULL,  -- lost at the terminal and never stored here: seq_from..seq_to
    seq_to       INTEGER NOT NULL,
    gap_seq      INTEGER NOT NULL,  -- the journal_gap entry that declared them
    recorded_at  TEXT NOT NULL,
    PRIMARY KEY (store_id, terminal_id, seq_from)
);
ALTER TABLE terminals ADD COLUMN held INTEGER NOT NULL DEFAULT 0;      -- rows in `held`
ALTER TABLE terminals ADD COLUMN max_hash TEXT NOT NULL DEFAULT '';    -- hash at max_seq
UPDATE terminals SET max_hash = coalesce((SELECT t.hash FROM transactions t
    WHERE t.store_id = terminals.store_id AND t.terminal_id = terminals.terminal_id
    AND t.seq = terminals.max_seq), '')
"""
# Version 4: each terminal's pinned Ed25519 key (collector/pins.py).
_SCHEMA_V4 = """
CREATE TABLE terminal_keys (
    store_id     TEXT NOT NULL,
    terminal_id  TEXT NOT NULL,
    key          TEXT NOT NULL,  -- Ed25519 public key, lowercase hex
    pinned_by    TEXT NOT NULL,  -- first_use | admin
    pinned_at    TEXT NOT NULL,
    PRIMARY KEY (store_id, terminal_id)
)
"""
# Version 5: the store asks terminals to resend what it lacks (rebuild.py). `rebuilds` is the
# latest request per terminal; `unavailable` holds seqs a terminal answered it has purged (a
# permanent gap), until a store admin accepts them (`accept-gap`): then acks go past them.
_SCHEMA_V5 = """
CREATE TABLE rebuilds (
    store_id        TEXT NOT NULL,
    terminal_id     TEXT NOT NULL,
    from_seq        INTEGER NOT NULL,  -- the first seq asked for
    upto_seq        INTEGER NOT NULL,  -- the last seq asked for
    reason          TEXT NOT NULL,
    requests        INTEGER NOT NULL,  -- requests sent for this range
    first_at        TEXT NOT NULL,
    last_at         TEXT NOT NULL,
    answered_at     TEXT,              -- the terminal's answer, if any
    retained_from   INTEGER,           -- what it answered: the first seq it still has
    PRIMARY KEY (store_id, terminal_id)
);
CREATE TABLE unavailable (
    store_id     TEXT NOT NULL,
    terminal_id  TEXT NOT NULL,
    seq_from     INTEGER NOT NULL,  -- purged at the terminal, never stored here: seq_from..seq_to
    seq_to       INTEGER NOT NULL,
    reported_at  TEXT NOT NULL,
    accepted_at  TEXT,              -- set by `edged collector accept-gap`
    accepted_by  TEXT,
    PRIMARY KEY (store_id, terminal_id, seq_from)
)
"""
_MIGRATIONS = {
    1: _SCHEMA,
    2: _SCHEMA_V2,
    3: _SCHEMA_V3,
    4: _SCHEMA_V4,
    5: _SCHEMA_V5,
}  # version -> script that makes it


class CollectorStoreError(EdgedError):
    """The collector's database cannot be opened, read or written."""


class CollectorDbChangedError(CollectorStoreError):
    """The database file is missing, or not the one this collector had: never carry on silently."""


RESTORE_HINT = (
    "restore it from the backup (then start the collector again), or, to start over with an "
    "empty database on purpose, run `edged collector --config FILE init` (sales the terminals "
    "have already purged will then be missing from the store)"
)


def prepare(conn: Conn, dialect: Dialect, where: str, *, may_create: bool = True) -> None:
    """The current schema (SQLite: in WAL, synchronous=FULL); an empty database gets one only
    if `may_create`."""
    if not dialect.postgres:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise CollectorStoreError(
                f"collector db {where}: cannot switch to WAL (journal_mode is {mode}); "
                "put it on a local file system"
            )
        conn.execute("PRAGMA synchronous = FULL")
        # The sale-id index takes random inserts: with SQLite's default 2 MiB cache a growing
        # table reads its pages back from the OS for every group (scripts/bench drain).
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    _migrate(conn, dialect, where, may_create=may_create)


def db_identity(conn: Conn) -> str:
    """The random id the database was given when it was created (or upgraded to version 2)."""
    return str(conn.execute("SELECT db_id FROM identity").fetchone()[0])


def _migrate(conn: Conn, dialect: Dialect, where: str, *, may_create: bool) -> None:
    if dialect.schema_version(conn) == SCHEMA_VERSION:
        return
    conn.execute(dialect.begin_write)
    try:
        dialect.lock_schema(conn)
        version = dialect.schema_version(conn)  # again, now that no one else migrates
        if version != SCHEMA_VERSION:
            _check_version(conn, dialect, where, version, may_create=may_create)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in dialect.ddl(_MIGRATIONS[step]).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                for statement in dialect.extra_ddl(step):
                    conn.execute(statement)
            if version < 2:  # the identity came with version 2
                conn.execute(
                    "INSERT INTO identity (db_id, created_at) VALUES (?, ?)",
                    (uuid.uuid4().hex, utc_now_iso()),
                )
            dialect.set_schema_version(conn, SCHEMA_VERSION)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if version != SCHEMA_VERSION:
        log.info("collector_db_prepared", db=where, schema_version=SCHEMA_VERSION, was=version)


def _check_version(
    conn: Conn, dialect: Dialect, where: str, version: int, *, may_create: bool
) -> None:
    """Refuse a newer schema, a database that is no collector's, or one that should not be new."""
    if version > SCHEMA_VERSION:
        raise CollectorStoreError(
            f"collector db {where} has schema version {version}, newer than this edged "
            f"({SCHEMA_VERSION}); upgrade edged"
        )
    if version == 0 and dialect.table_count(conn):
        raise CollectorStoreError(
            f"{where} holds tables but no edged schema version; it is not a collector db"
        )
    if version == 0 and not may_create:
        raise CollectorDbChangedError(
            f"collector db {where} is empty, but this collector had a database there; "
            f"{RESTORE_HINT}"
        )

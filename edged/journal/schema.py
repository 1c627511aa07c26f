"""Journal schema and its migrations, versioned with PRAGMA user_version."""

from __future__ import annotations

# Migration N (1-based) brings the schema from version N-1 to N. Append; never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE identity (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        store_id TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE entries (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        receipt_no TEXT NOT NULL,
        created_at TEXT NOT NULL,
        sale TEXT NOT NULL,          -- RFC 8785 canonical JSON of the sale
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    ) STRICT;
    -- The outbox state of every entry: seq <= acked_upto is stored at the store.
    -- The anchor is the last purged entry, from which the remaining chain continues.
    CREATE TABLE outbox (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        acked_upto INTEGER NOT NULL,
        last_ack_at TEXT,
        anchor_seq INTEGER NOT NULL,
        anchor_hash BLOB NOT NULL
    ) STRICT;
    INSERT INTO outbox (one, acked_upto, last_ack_at, anchor_seq, anchor_hash)
        VALUES (1, 0, NULL, 0, zeroblob(32));
    """,
    # 2: device records. Print jobs are recorded before a byte goes to the printer; payments
    # before the terminal is asked, so a restart finishes or resolves them instead of guessing.
    """
    CREATE TABLE print_jobs (
        job INTEGER PRIMARY KEY AUTOINCREMENT,
        sale_id TEXT,
        document TEXT NOT NULL,      -- JSON: what to print, rendered at send time
        copy INTEGER NOT NULL,
        state TEXT NOT NULL,         -- queued, sending, printed, failed
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT;
    CREATE INDEX print_jobs_sale ON print_jobs (sale_id);
    CREATE INDEX print_jobs_open ON print_jobs (state) WHERE state IN ('queued', 'sending');
    CREATE TABLE payments (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        record TEXT NOT NULL,        -- JSON; card data only as DESIGN invariant 6 allows
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT;
    CREATE INDEX payments_open ON payments (state) WHERE state = 'in_progress';
    """,
    # 3: whether a daemon has the journal open, checkpointed into the main file at open and at
    # a clean close. "Open" with no -wal beside it means the -wal, and the sales in it, is lost.
    """
    CREATE TABLE run_state (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        open INTEGER NOT NULL,       -- 1 from open until a clean close
        since TEXT                   -- when it was last opened
    ) STRICT;
    INSERT INTO run_state (one, open, since) VALUES (1, 0, NULL);
    """,
    # 4: the sale id index, kept far longer than the entries (journal.id_retain_days), so that a
    # retry after retention purged the entry is still answered as a duplicate or a conflict.
    # prev_hash and hash decide which: the retried sale matches if it gives the same entry hash.
    # Kept by a trigger: each row is written by the statement (and transaction) of its entry.
    """
    CREATE TABLE sale_ids (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        receipt_no TEXT NOT NULL,
        created_at TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    ) STRICT;
    INSERT INTO sale_ids (seq, id, receipt_no, created_at, prev_hash, hash)
        SELECT seq, id, receipt_no, created_at, prev_hash, hash FROM entries;
    CREATE TRIGGER entries_sale_ids AFTER INSERT ON entries BEGIN
        INSERT INTO sale_ids (seq, id, receipt_no, created_at, prev_hash, hash)
            VALUES (NEW.seq, NEW.id, NEW.receipt_no, NEW.created_at, NEW.prev_hash, NEW.hash);
    END;
    """,
    # 5: the gaps the journal declared (edged.entrykinds journal_gap entries), kept after their
    # entries are purged; and the store's clock at the last ack, for `doctor`.
    """
    CREATE TABLE journal_gaps (
        seq INTEGER PRIMARY KEY,     -- the journal_gap entry's seq
        first INTEGER NOT NULL,      -- the seqs lost: first..last
        last INTEGER NOT NULL,
        found_at TEXT NOT NULL,
        reason TEXT NOT NULL
    ) STRICT;
    CREATE TRIGGER entries_journal_gaps AFTER INSERT ON entries
        WHEN substr(NEW.sale, 1, 15) = '{"journal_gap":' BEGIN
        INSERT INTO journal_gaps (seq, first, last, found_at, reason) VALUES (NEW.seq,
            json_extract(NEW.sale, '$.journal_gap.from'),
            json_extract(NEW.sale, '$.journal_gap.to'),
            NEW.created_at, json_extract(NEW.sale, '$.journal_gap.reason'));
    END;
    ALTER TABLE outbox ADD COLUMN last_ack_store_at TEXT;
    """,
    # 6: adoption. A journal new on a terminal with an uplink does not know whether the store
    # already holds seqs for its terminal id (a replaced till): until the store answers, its
    # entries are provisional (receipt numbers marked with `token`), renumbered past the
    # store's seqs before the first send (edged.journal.adoption).
    """
    CREATE TABLE adoption (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        state TEXT NOT NULL,         -- pending, adopted (store_upto > 0), none (no history)
        token TEXT NOT NULL,         -- marks provisional receipt numbers: -P{token}
        since TEXT NOT NULL,
        resolved_at TEXT,
        store_upto INTEGER
    ) STRICT;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

"""The collector's durable store: idempotent, chain-verified, and the only source of `upto`.

Each terminal's entries are kept once (unique on store/terminal/seq and on the sale id). The
acknowledgement a terminal gets is the contiguous prefix: the highest seq up to which every entry
is stored and links by hash to its predecessor. Entries after a gap or a chain break are kept but
never acknowledged past it, so the terminal resends and nothing is skipped silently.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog

from edged.chain import MAX_SAFE_INT, CanonicalError, canonical, entry_bytes, entry_hash
from edged.clock import utc_now_iso
from edged.errors import EdgedError
from edged.wire import Entry

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000  # several collectors may share one db file
SQLITE_URL_PREFIX = "sqlite:///"
GENESIS_HEX = "00" * 32
MAX_REPORTED_GAPS = 100
_HEX64 = re.compile(r"[0-9a-f]{64}")
HASH_HEX_LEN = 64
INSERT_ROWS_MAX = 500  # 11 variables a row: well under SQLite's 32766 per statement

_INSERT_MANY_HEAD = (
    "INSERT INTO transactions (store_id, terminal_id, seq, id, receipt_no, created_at,"
    " prev_hash, hash, body, received_at, received_by) VALUES "
)
_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_MANY_TAIL = " ON CONFLICT DO NOTHING RETURNING seq"

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
    max_seq          INTEGER NOT NULL,  -- highest seq stored
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
    kind         TEXT NOT NULL,  -- invalid | bad_hash | seq_conflict | id_conflict
    hash         TEXT NOT NULL,  -- the hash the entry claimed
    detail       TEXT NOT NULL,
    body         TEXT NOT NULL,  -- the entry as received, kept as evidence
    first_at     TEXT NOT NULL,
    last_at      TEXT NOT NULL,
    count        INTEGER NOT NULL,
    UNIQUE (store_id, terminal_id, seq, kind, hash)
);
"""


class CollectorStoreError(EdgedError):
    """The collector's database cannot be opened, read or written."""


@dataclass(frozen=True, slots=True)
class TerminalReport:
    """One terminal as the store sees it; `gaps` are inclusive (from, to) ranges of missing seq."""

    store_id: str
    terminal_id: str
    contiguous_upto: int
    max_seq: int
    entries: int
    gaps: list[tuple[int, int]]
    chain_broken_at: int | None
    duplicates: int
    problems: int
    first_seen_at: str
    last_seen_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "terminal_id": self.terminal_id,
            "contiguous_upto": self.contiguous_upto,
            "max_seq": self.max_seq,
            "entries": self.entries,
            "gaps": [list(g) for g in self.gaps],
            "chain_broken_at": self.chain_broken_at,
            "duplicates": self.duplicates,
            "problems": self.problems,
            "first_seen_at": self.first_seen_at,
            "last_seen_at": self.last_seen_at,
        }


Batch = tuple[str, str, Sequence[Entry]]
TerminalKey = tuple[str, str]


def sqlite_path(db_url: str) -> str:
    """The file path of a `sqlite:///PATH` URL."""
    if not db_url.startswith(SQLITE_URL_PREFIX):
        raise CollectorStoreError(f"unsupported database URL {db_url!r}; use sqlite:///PATH")
    path = db_url.removeprefix(SQLITE_URL_PREFIX)
    if not path:
        raise CollectorStoreError("database URL sqlite:/// has no path; use sqlite:///PATH")
    return path


@dataclass(slots=True)
class _State:
    """A terminal's row of `terminals`, read and written inside one transaction."""

    contiguous_upto: int
    last_hash: str
    max_seq: int
    gap_from: int | None
    gap_to: int | None
    chain_broken_at: int | None
    entries: int
    duplicates: int
    problems: int
    new: bool
    inserted: int = 0
    min_problem_seq: int | None = None
    touched_at: str = ""
    seqs_inserted: list[int] = field(default_factory=list)


class CollectorStore:
    """SQLite store of forwarded journal entries. Not thread-safe: use it from one thread."""

    def __init__(self, conn: sqlite3.Connection, path: str, received_by: str) -> None:
        self._conn = conn
        self.path = path
        self.received_by = received_by

    @classmethod
    def open(cls, path: str, *, received_by: str = "") -> CollectorStore:
        """Open (creating if needed) the store at `path`; WAL, synchronous=FULL."""
        parent = Path(path).parent
        if not parent.is_dir():
            raise CollectorStoreError(
                f"cannot open collector db {path}: directory {parent} does not exist; create it"
            )
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"cannot open collector db {path}: {exc}") from exc
        try:
            _prepare(conn, path)
        except sqlite3.Error as exc:
            conn.close()
            raise CollectorStoreError(f"cannot prepare collector db {path}: {exc}") from exc
        except CollectorStoreError:
            conn.close()
            raise
        return cls(conn, path, received_by)

    def close(self) -> None:
        self._conn.close()

    def store_batch(self, store_id: str, terminal_id: str, entries: Sequence[Entry]) -> int:
        """Store one batch in one transaction; return the `upto` to acknowledge."""
        return self.store_batches([(store_id, terminal_id, entries)])[(store_id, terminal_id)]

    def store_batches(self, batches: Iterable[Batch]) -> dict[TerminalKey, int]:
        """Store several batches in ONE transaction; return the `upto` per terminal.

        Duplicates are ignored; conflicting or invalid entries are recorded in `problems`, logged
        and never stored, and hold the terminal's `upto` below their seq.
        """
        now = utc_now_iso()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                states: dict[TerminalKey, _State] = {}
                for store_id, terminal_id, entries in batches:
                    key = (store_id, terminal_id)
                    state = states.get(key) or _load_state(conn, key)
                    states[key] = state
                    state.touched_at = now
                    self._put_entries(conn, key, state, sorted(entries, key=_seq_of), now)
                result: dict[TerminalKey, int] = {}
                for key, state in states.items():
                    if state.inserted or state.new:
                        _advance(conn, key, state)
                    _save_state(conn, key, state)
                    upto = state.contiguous_upto
                    if state.min_problem_seq is not None:
                        upto = min(upto, state.min_problem_seq - 1)
                    result[key] = max(upto, 0)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot store: {exc}") from exc
        for (store_id, terminal_id), state in states.items():
            if state.inserted:
                log.debug(
                    "entries_stored",
                    store=store_id,
                    terminal=terminal_id,
                    inserted=state.inserted,
                    upto=result[(store_id, terminal_id)],
                )
        return result

    def _put_entries(
        self,
        conn: sqlite3.Connection,
        key: TerminalKey,
        state: _State,
        entries: list[Entry],
        now: str,
    ) -> None:
        """Store entries (sorted by seq) with one multi-row INSERT; analyse only the misses.

        Equivalent to `_put` entry by entry: the multi-row INSERT inserts rows in order with the
        same conflict rule, and problems are recorded afterwards in seq order. The one case where
        a miss's analysis could see a row stored after it, the same seq twice in the batch,
        takes the entry-by-entry path.
        """
        checked = [check_entry(entry) for entry in entries]
        valid = [(e, body) for e, body in zip(entries, checked, strict=True) if type(body) is str]
        seqs = {entry.seq for entry, _ in valid}
        if len(seqs) != len(valid):
            for entry, body in zip(entries, checked, strict=True):
                self._put(conn, key, state, entry, body, now=now)
            return
        inserted: set[int] = set()
        for start in range(0, len(valid), INSERT_ROWS_MAX):
            chunk = valid[start : start + INSERT_ROWS_MAX]
            params: list[object] = []
            for entry, body in chunk:
                params += (
                    key[0],
                    key[1],
                    entry.seq,
                    entry.id,
                    entry.receipt_no,
                    entry.created_at,
                    entry.prev_hash,
                    entry.hash,
                    body,
                    now,
                    self.received_by,
                )
            sql = _INSERT_MANY_HEAD + ",".join([_INSERT_ROW] * len(chunk)) + _INSERT_MANY_TAIL
            inserted.update(seq for (seq,) in conn.execute(sql, params))
        if inserted:
            state.inserted += len(inserted)
            state.entries += len(inserted)
            state.max_seq = max(state.max_seq, *inserted)
        if len(inserted) == len(checked):
            return
        for entry, body in zip(entries, checked, strict=True):
            if isinstance(body, _Rejected):
                _record_problem(conn, state, entry, key=key, rejected=body, now=now)
            elif entry.seq not in inserted:
                self._not_inserted(conn, key, state, entry, now)

    def _put(
        self,
        conn: sqlite3.Connection,
        key: TerminalKey,
        state: _State,
        entry: Entry,
        checked: str | _Rejected,
        *,
        now: str,
    ) -> None:
        if isinstance(checked, _Rejected):
            _record_problem(conn, state, entry, key=key, rejected=checked, now=now)
            return
        cur = conn.execute(
            "INSERT INTO transactions (store_id, terminal_id, seq, id, receipt_no, created_at,"
            " prev_hash, hash, body, received_at, received_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                key[0],
                key[1],
                entry.seq,
                entry.id,
                entry.receipt_no,
                entry.created_at,
                entry.prev_hash,
                entry.hash,
                checked,
                now,
                self.received_by,
            ),
        )
        if cur.rowcount == 1:
            state.inserted += 1
            state.entries += 1
            state.max_seq = max(state.max_seq, entry.seq)
            return
        self._not_inserted(conn, key, state, entry, now)

    def _not_inserted(
        self, conn: sqlite3.Connection, key: TerminalKey, state: _State, entry: Entry, now: str
    ) -> None:
        """A valid entry the INSERT skipped: a resend (duplicate) or a seq or sale id conflict."""
        row = conn.execute(
            "SELECT hash FROM transactions WHERE store_id = ? AND terminal_id = ? AND seq = ?",
            (key[0], key[1], entry.seq),
        ).fetchone()
        if row is not None:
            if row[0] == entry.hash:
                state.duplicates += 1
                return
            detail = f"seq {entry.seq} is already stored with hash {row[0]}"
            rejected = _Rejected("seq_conflict", detail)
            _record_problem(conn, state, entry, key=key, rejected=rejected, now=now)
            return
        other = conn.execute(
            "SELECT store_id, terminal_id, seq FROM transactions WHERE id = ?", (entry.id,)
        ).fetchone()
        where = f"{other[0]}/{other[1]} seq {other[2]}" if other else "another entry"
        detail = f"sale id {entry.id} is already stored as {where}"
        rejected = _Rejected("id_conflict", detail)
        _record_problem(conn, state, entry, key=key, rejected=rejected, now=now)

    def terminal_report(self) -> list[TerminalReport]:
        """Per terminal: contiguous_upto, gaps, chain problems and counters."""
        try:
            return terminal_report(self._conn)
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot read: {exc}") from exc

    def problems(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent rejected or conflicting entries, newest first (bodies left out)."""
        try:
            return recent_problems(self._conn, limit)
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot read: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Rejected:
    kind: str
    detail: str


def _record_problem(
    conn: sqlite3.Connection,
    state: _State,
    entry: Entry,
    *,
    key: TerminalKey,
    rejected: _Rejected,
    now: str,
) -> None:
    """Keep a rejected entry as evidence, hold `upto` below it, and log it."""
    kind, detail = rejected.kind, rejected.detail
    state.problems += 1
    if state.min_problem_seq is None or entry.seq < state.min_problem_seq:
        state.min_problem_seq = entry.seq
    conn.execute(
        "INSERT INTO problems (store_id, terminal_id, seq, kind, hash, detail, body,"
        " first_at, last_at, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
        " ON CONFLICT (store_id, terminal_id, seq, kind, hash)"
        " DO UPDATE SET last_at = excluded.last_at, count = count + 1",
        (
            key[0],
            key[1],
            entry.seq,
            kind,
            entry.hash,
            detail,
            msgspec.json.encode(entry).decode("utf-8", "replace"),
            now,
            now,
        ),
    )
    log.error(
        "entry_rejected",
        store=key[0],
        terminal=key[1],
        seq=entry.seq,
        kind=kind,
        problem=detail,
    )


def _seq_of(entry: Entry) -> int:
    return entry.seq


def check_entry(entry: Entry) -> str | _Rejected:
    """The entry's canonical body if it is well-formed and its hash verifies, else why not."""
    body = _accept_fast(entry)
    return body if body is not None else _check_entry_exact(entry)


def _plain(text: str) -> bool:
    """True if RFC 8785 writes `text` verbatim in quotes: printable ASCII without `"` or `\\`."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _accept_fast(entry: Entry) -> str | None:
    """`_check_entry_exact`'s body for an entry it accepts, cheaper; None means "ask it".

    It accepts nothing the exact check would refuse. The sale is still `canonical(sale)` and the
    hash still `entry_hash` over the entry's canonical bytes; those bytes are assembled here
    (as `entry_bytes` would) only when every string field is plain, so it needs no escaping.
    """
    seq, sale_id, receipt_no, created_at = entry.seq, entry.id, entry.receipt_no, entry.created_at
    prev_hex, hash_hex = entry.prev_hash, entry.hash
    if not (
        type(seq) is int
        and 1 <= seq <= MAX_SAFE_INT
        and sale_id
        and receipt_no
        and created_at
        and len(prev_hex) == HASH_HEX_LEN
        and _plain(sale_id)
        and _plain(receipt_no)
        and _plain(created_at)
    ):
        return None
    try:
        sale = msgspec.json.decode(entry.sale)
        if not isinstance(sale, dict):
            return None
        sale_json = canonical(sale)
        prev = bytes.fromhex(prev_hex)
    except (ValueError, TypeError, RecursionError):  # DecodeError and CanonicalError included
        return None
    if prev.hex() != prev_hex:  # fromhex also takes upper case and spaces
        return None
    # Keys in RFC 8785 order: created_at, id, receipt_no, sale, seq (as `entry_bytes`).
    tail = b'","receipt_no":"%b","sale":%b,"seq":%d}' % (receipt_no.encode(), sale_json, seq)
    hashed = b'{"created_at":"%b","id":"%b%b' % (created_at.encode(), sale_id.encode(), tail)
    # hex() of a digest is 64 lowercase hex digits: equality also proves the format of `hash`.
    if entry_hash(prev, hashed).hex() != hash_hex:
        return None
    # The body adds hash and prev_hash: created_at, hash, id, prev_hash, receipt_no, sale, seq.
    body = b'{"created_at":"%b","hash":"%b","id":"%b","prev_hash":"%b%b' % (
        created_at.encode(),
        hash_hex.encode(),
        sale_id.encode(),
        prev_hex.encode(),
        tail,
    )
    return body.decode()


def _check_entry_exact(entry: Entry) -> str | _Rejected:
    """The reference check: every rejection, with its reason, comes from here."""
    if not 1 <= entry.seq <= MAX_SAFE_INT:
        return _Rejected("invalid", f"seq {entry.seq} is not in 1..2^53-1")
    for name, value in (("prev_hash", entry.prev_hash), ("hash", entry.hash)):
        if not _HEX64.fullmatch(value):
            return _Rejected("invalid", f"{name} is not 64 lowercase hex digits")
    if not entry.id or not entry.receipt_no or not entry.created_at:
        return _Rejected("invalid", "id, receipt_no and created_at must be non-empty")
    try:
        sale = msgspec.json.decode(entry.sale)
        if not isinstance(sale, dict):
            return _Rejected("invalid", "sale is not a JSON object")
        sale_json = canonical(sale)
        head = canonical(
            {
                "created_at": entry.created_at,
                "hash": entry.hash,
                "id": entry.id,
                "prev_hash": entry.prev_hash,
                "receipt_no": entry.receipt_no,
            }
        )
        computed = entry_hash(
            bytes.fromhex(entry.prev_hash),
            entry_bytes(entry.seq, entry.id, entry.receipt_no, entry.created_at, sale_json),
        ).hex()
    except (msgspec.DecodeError, CanonicalError) as exc:
        return _Rejected("invalid", f"sale has no canonical JSON form: {exc}")
    except RecursionError:
        return _Rejected("invalid", "sale is nested too deeply")
    if computed != entry.hash:
        return _Rejected("bad_hash", f"hash does not match the entry (computed {computed})")
    # Keys in RFC 8785 order: created_at, hash, id, prev_hash, receipt_no, sale, seq.
    body = head[:-1] + b',"sale":' + sale_json + b',"seq":' + str(entry.seq).encode() + b"}"
    return body.decode("utf-8")


def _prepare(conn: sqlite3.Connection, path: str) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise CollectorStoreError(
            f"collector db {path}: cannot switch to WAL (journal_mode is {mode}); "
            "put it on a local file system"
        )
    conn.execute("PRAGMA synchronous = FULL")
    _migrate(conn, path)


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise CollectorStoreError(
            f"collector db {path} has schema version {version}, newer than this edged "
            f"({SCHEMA_VERSION}); upgrade edged"
        )
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if tables:
        raise CollectorStoreError(
            f"{path} holds tables but no edged schema version; it is not a collector db"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _load_state(conn: sqlite3.Connection, key: TerminalKey) -> _State:
    row = conn.execute(
        "SELECT contiguous_upto, last_hash, max_seq, gap_from, gap_to, chain_broken_at,"
        " entries, duplicates, problems FROM terminals WHERE store_id = ? AND terminal_id = ?",
        key,
    ).fetchone()
    if row is None:
        return _State(0, GENESIS_HEX, 0, None, None, None, 0, 0, 0, new=True)
    upto, last_hash, max_seq, gap_from, gap_to, broken, entries, duplicates, problems = row
    return _State(
        upto, last_hash, max_seq, gap_from, gap_to, broken, entries, duplicates, problems, new=False
    )


def _advance(conn: sqlite3.Connection, key: TerminalKey, state: _State) -> None:
    """Walk stored entries past contiguous_upto while seq is consecutive and the chain links."""
    upto, last = state.contiguous_upto, state.last_hash
    gap: tuple[int, int] | None = None
    broken: int | None = None
    expected_prev = ""
    got_prev = ""
    rows = conn.execute(
        "SELECT seq, prev_hash, hash FROM transactions"
        " WHERE store_id = ? AND terminal_id = ? AND seq > ? ORDER BY seq",
        (key[0], key[1], upto),
    )
    for seq, prev_hash, hash_ in rows:
        if seq != upto + 1:
            gap = (upto + 1, seq - 1)
            break
        if prev_hash != last:
            broken, expected_prev, got_prev = seq, last, prev_hash
            break
        upto, last = seq, hash_
    rows.close()
    store_id, terminal_id = key
    if gap is not None and (state.gap_from, state.gap_to) != gap:
        log.warning(
            "gap_detected",
            store=store_id,
            terminal=terminal_id,
            seq=gap[0],
            missing_to=gap[1],
            contiguous_upto=upto,
        )
    elif gap is None and state.gap_from is not None:
        log.info("gap_closed", store=store_id, terminal=terminal_id, seq=state.gap_from, upto=upto)
    if broken is not None and state.chain_broken_at != broken:
        log.error(
            "chain_broken",
            store=store_id,
            terminal=terminal_id,
            seq=broken,
            expected_prev_hash=expected_prev,
            prev_hash=got_prev,
            contiguous_upto=upto,
        )
    state.contiguous_upto, state.last_hash = upto, last
    state.gap_from, state.gap_to = gap if gap else (None, None)
    state.chain_broken_at = broken


def _save_state(conn: sqlite3.Connection, key: TerminalKey, state: _State) -> None:
    conn.execute(
        "INSERT INTO terminals (store_id, terminal_id, contiguous_upto, last_hash, max_seq,"
        " gap_from, gap_to, chain_broken_at, entries, duplicates, problems, first_seen_at,"
        " last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (store_id, terminal_id) DO UPDATE SET"
        " contiguous_upto = excluded.contiguous_upto, last_hash = excluded.last_hash,"
        " max_seq = excluded.max_seq, gap_from = excluded.gap_from, gap_to = excluded.gap_to,"
        " chain_broken_at = excluded.chain_broken_at, entries = excluded.entries,"
        " duplicates = excluded.duplicates, problems = excluded.problems,"
        " last_seen_at = excluded.last_seen_at",
        (
            key[0],
            key[1],
            state.contiguous_upto,
            state.last_hash,
            state.max_seq,
            state.gap_from,
            state.gap_to,
            state.chain_broken_at,
            state.entries,
            state.duplicates,
            state.problems,
            state.touched_at,
            state.touched_at,
        ),
    )


def _gaps(
    conn: sqlite3.Connection, store_id: str, terminal_id: str, upto: int
) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    expect = upto + 1
    rows = conn.execute(
        "SELECT seq FROM transactions WHERE store_id = ? AND terminal_id = ? AND seq > ?"
        " ORDER BY seq",
        (store_id, terminal_id, upto),
    )
    for (seq,) in rows:
        if seq > expect:
            gaps.append((expect, seq - 1))
            if len(gaps) >= MAX_REPORTED_GAPS:
                break
        expect = seq + 1
    rows.close()
    return gaps


def terminal_report(conn: sqlite3.Connection) -> list[TerminalReport]:
    """Per-terminal report from an open connection (read-only use is fine)."""
    rows = conn.execute(
        "SELECT store_id, terminal_id, contiguous_upto, max_seq, entries, chain_broken_at,"
        " duplicates, problems, first_seen_at, last_seen_at FROM terminals"
        " ORDER BY store_id, terminal_id"
    ).fetchall()
    return [
        TerminalReport(
            store_id=r[0],
            terminal_id=r[1],
            contiguous_upto=r[2],
            max_seq=r[3],
            entries=r[4],
            gaps=_gaps(conn, r[0], r[1], r[2]),
            chain_broken_at=r[5],
            duplicates=r[6],
            problems=r[7],
            first_seen_at=r[8],
            last_seen_at=r[9],
        )
        for r in rows
    ]


def recent_problems(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT store_id, terminal_id, seq, kind, hash, detail, first_at, last_at, count"
        " FROM problems ORDER BY last_at DESC, rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    names = ("store_id", "terminal_id", "seq", "kind", "hash", "detail", "first_at", "last_at")
    return [dict(zip((*names, "count"), r, strict=True)) for r in rows]


def collector_report(db_url: str, *, problems_limit: int = 100) -> dict[str, Any]:
    """Diagnostics of a collector db, opened read-only (safe while the collector runs)."""
    path = sqlite_path(db_url)
    if not Path(path).is_file():
        raise CollectorStoreError(f"no collector db at {path}; check [collector] db")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise CollectorStoreError(f"cannot open collector db {path} read-only: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise CollectorStoreError(
                f"{path} has schema version {version}; this edged reads {SCHEMA_VERSION}"
            )
        conn.execute("BEGIN")  # one consistent snapshot for the whole report
        terminals = terminal_report(conn)
        problems = recent_problems(conn, problems_limit)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise CollectorStoreError(f"collector db {path}: cannot read: {exc}") from exc
    finally:
        conn.close()
    return {
        "db": path,
        "schema_version": version,
        "transactions": sum(t.entries for t in terminals),
        "terminals": [t.as_dict() for t in terminals],
        "problems": problems,
    }

"""Terminal keys the collector pinned, and the signature check every tx batch passes first.

A terminal's first signed batch pins its key (trust on first use), unless an admin pinned one
beforehand (`edged collector keys pin`). After that a batch whose signature is missing, made by
another key, or wrong is a forgery: each entry is kept in `problems` as evidence (ERROR
`entry_forged`), none is stored, and nothing is acknowledged for it. An unsigned batch from a
terminal with no pinned key (edged older than signing) is stored, with a WARNING once.

With `[collector] trust_on_first_use = false` nothing pins itself: a batch from a terminal
with no pinned key, signed or not, is kept in `problems` (kind `unpinned`) and neither stored
nor acknowledged, until an admin pins the terminal's key; the terminal resends by itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import structlog

from edged.collector.dialect import Conn, Dialect
from edged.collector.problems import as_received, record_problem
from edged.collector.state import TerminalKey
from edged.signing import check_key_hex, tx_signed_bytes, verify
from edged.wire import Entry, Sig

log = structlog.get_logger(__name__)

FORGED_KINDS = ("unsigned", "wrong_key", "bad_signature")  # problems.kind of a forgery
UNPINNED_KIND = "unpinned"  # problems.kind of a batch refused for want of a pinned key


@dataclass(frozen=True, slots=True)
class PinnedKey:
    store_id: str
    terminal_id: str
    key: str  # Ed25519 public key, lowercase hex
    pinned_by: str  # "first_use" or "admin"
    pinned_at: str


class KeyPins:
    """The `terminal_keys` table over the store's connection (inside its transactions)."""

    def __init__(self, conn: Conn, dialect: Dialect, *, first_use: bool = True) -> None:
        self._conn = conn
        self._dialect = dialect
        self._first_use = first_use  # an unknown terminal's first signed batch pins its key
        self._unsigned_said: set[TerminalKey] = set()
        self._unpinned_said: set[TerminalKey] = set()

    def admit(self, key: TerminalKey, entries: Sequence[Entry], sig: Sig | None, now: str) -> bool:
        """True if the batch may be stored; a forgery is recorded and False returned."""
        pinned = self.get(key)
        if pinned is None and not self._first_use:
            return self._unpinned(key, entries, sig, now)
        if sig is None:
            if pinned is None:
                if key not in self._unsigned_said:
                    self._unsigned_said.add(key)
                    log.warning(
                        "entries_unsigned",
                        store=key[0],
                        terminal=key[1],
                        hint="this terminal's edged predates signing: upgrade it; until then "
                        "anyone on the broker can send entries in its name",
                    )
                return True
            return self._forged(
                key, entries, "unsigned", f"unsigned batch; {pinned.key} is pinned", now
            )
        if pinned is not None and sig.key != pinned.key:
            detail = f"signed by key {sig.key}, not by the pinned key {pinned.key}"
            return self._forged(key, entries, "wrong_key", detail, now)
        problem = verify(sig, tx_signed_bytes(*key, [(e.seq, e.hash) for e in entries]))
        if problem is not None:
            return self._forged(key, entries, "bad_signature", f"key {sig.key}: {problem}", now)
        if pinned is None:
            self.pin(key, sig.key, by="first_use", now=now)
        return True

    def _unpinned(
        self, key: TerminalKey, entries: Sequence[Entry], sig: Sig | None, now: str
    ) -> bool:
        """Refuse a batch of a terminal nobody pinned: evidence in `problems`, ERROR once."""
        offered = "unsigned" if sig is None else f"signed by key {sig.key}"
        detail = f"not stored: no key is pinned for this terminal ({offered})"
        self._refuse(key, entries, UNPINNED_KIND, detail, now, event=None)
        if key not in self._unpinned_said:
            self._unpinned_said.add(key)
            log.error(
                "terminal_unpinned",
                store=key[0],
                terminal=key[1],
                key=sig.key if sig is not None else None,
                seq_from=min(e.seq for e in entries) if entries else None,
                hint="trust_on_first_use is off: compare the key with `edgectl keys show` on the "
                "till, then `edged collector --config F keys pin STORE TERMINAL KEY`; the till "
                "resends by itself",
            )
        return False

    def _forged(
        self, key: TerminalKey, entries: Sequence[Entry], kind: str, detail: str, now: str
    ) -> bool:
        self._refuse(key, entries, kind, f"forged, not stored: {detail}", now, event="entry_forged")
        return False

    def _refuse(
        self,
        key: TerminalKey,
        entries: Sequence[Entry],
        kind: str,
        detail: str,
        now: str,
        *,
        event: str | None,
    ) -> None:
        """Each refused entry goes to `problems` as evidence (logged as `event`, if any)."""
        for entry in entries:
            record_problem(
                self._conn,
                key,
                seq=entry.seq,
                hash_hex=entry.hash,
                kind=kind,
                detail=detail,
                body=as_received(entry),
                now=now,
                event=event,
            )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """An admin's change on its own (outside store_batches): committed, or rolled back."""
        self._conn.execute(self._dialect.begin_write)
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def get(self, key: TerminalKey) -> PinnedKey | None:
        row = self._conn.execute(
            "SELECT store_id, terminal_id, key, pinned_by, pinned_at FROM terminal_keys"
            " WHERE store_id = ? AND terminal_id = ?",
            key,
        ).fetchone()
        return PinnedKey(*row) if row is not None else None

    def all(self) -> list[PinnedKey]:
        rows = self._conn.execute(
            "SELECT store_id, terminal_id, key, pinned_by, pinned_at FROM terminal_keys"
            " ORDER BY store_id, terminal_id"
        )
        return [PinnedKey(*row) for row in rows]

    def pin(self, key: TerminalKey, public_hex: str, *, by: str, now: str) -> None:
        """Pin (or re-pin) a terminal's key; ValueError if it is not 64 hex digits."""
        public_hex = check_key_hex(public_hex)
        self._conn.execute(
            "INSERT INTO terminal_keys (store_id, terminal_id, key, pinned_by, pinned_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (store_id, terminal_id) DO UPDATE SET"
            " key = excluded.key, pinned_by = excluded.pinned_by, pinned_at = excluded.pinned_at",
            (*key, public_hex, by, now),
        )
        log.warning("terminal_key_pinned", store=key[0], terminal=key[1], key=public_hex, by=by)
        self._unpinned_said.discard(key)

    def forget(self, key: TerminalKey) -> bool:
        """Unpin: the terminal's next signed batch pins its key. True if one was pinned."""
        cur = self._conn.execute(
            "DELETE FROM terminal_keys WHERE store_id = ? AND terminal_id = ?", key
        )
        if cur.rowcount:
            log.warning("terminal_key_forgotten", store=key[0], terminal=key[1])
        return cur.rowcount > 0

"""Journal entries read as the file holds them: a damaged row is flagged, never a crash.

SQLite returns a TEXT column as str and raises when its bytes are not UTF-8 (bit rot, an edited
file), which failed every read that touched such a row. So entries are read with every column
CAST AS BLOB and judged here, one row at a time: intact when its text is UTF-8, its sale is
JSON, its hashes are 32 bytes and its hash recomputes from its own prev_hash and content. The
chain between rows (prev_hash = the previous row's hash) is journal.verify's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from edged.chain import canonical, entry_bytes, entry_hash
from edged.entrykinds import damaged_sale

# The columns of an entry, in StoredEntry's order, as bytes whatever their stored type.
ENTRY_SELECT = (
    "seq, CAST(id AS BLOB), CAST(receipt_no AS BLOB), CAST(created_at AS BLOB), "
    "CAST(sale AS BLOB), CAST(prev_hash AS BLOB), CAST(hash AS BLOB)"
)
HASH_BYTES = 32
ALTERED = "hash does not match the entry's content (altered)"


class StoredEntry(msgspec.Struct, frozen=True):
    seq: int
    id: str
    receipt_no: str
    created_at: str
    prev_hash: bytes
    hash: bytes
    sale_json: bytes  # the stored bytes, as they are (valid JSON only if `damage` is None)
    damage: str | None = None  # what is wrong with this row, or None when it is intact

    def wire_sale(self) -> bytes:
        """The `sale` this entry is forwarded and exported with: its stored canonical JSON,
        untouched, or for a damaged row a `damaged_entry` record of its bytes as they are."""
        if self.damage is None:
            return self.sale_json
        return canonical(damaged_sale(self.sale_json, self.damage))


def row_entry(row: Sequence[Any]) -> StoredEntry:
    """The entry of a row selected with ENTRY_SELECT, its `damage` said if it has any."""
    seq, id_raw, receipt_raw, created_raw, sale, prev, digest = row
    try:  # the common case, kept cheap: the forwarder judges every entry it sends
        texts = (id_raw.decode(), receipt_raw.decode(), created_raw.decode())
        sale.decode()
        msgspec.json.decode(sale, type=msgspec.Raw)  # validates without building objects
        intact = (
            len(prev) == HASH_BYTES and entry_hash(prev, entry_bytes(seq, *texts, sale)) == digest
        )
    except (AttributeError, UnicodeDecodeError, msgspec.DecodeError):  # NULL, not text, not JSON
        intact = False
    if intact:
        return StoredEntry(seq, *texts, prev_hash=prev, hash=digest, sale_json=sale)
    return _damaged(seq, [bytes(v or b"") for v in row[1:]])


def _damaged(seq: int, columns: list[bytes]) -> StoredEntry:
    """The entry of a row that is not intact, with every problem found in it."""
    id_raw, receipt_raw, created_raw, sale, prev, digest = columns
    problems: list[str] = []
    sale_id = _text(id_raw, "id", problems)
    receipt_no = _text(receipt_raw, "receipt_no", problems)
    created_at = _text(created_raw, "created_at", problems)
    try:
        sale.decode()
    except UnicodeDecodeError as exc:
        problems.append(f"sale is not valid UTF-8 (byte {exc.start})")
    if not problems:
        problems.append(_problem(sale, prev, digest))
    return StoredEntry(
        seq=seq,
        id=sale_id,
        receipt_no=receipt_no,
        created_at=created_at,
        prev_hash=prev,
        hash=digest,
        sale_json=sale,
        damage="; ".join(problems),
    )


def _text(raw: bytes, column: str, problems: list[str]) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        problems.append(f"{column} is not valid UTF-8 (byte {exc.start})")
        return raw.decode(errors="replace")


def _problem(sale: bytes, prev: bytes, digest: bytes) -> str:
    """What is wrong with a damaged row whose text decoded: JSON, hash sizes, else its hash."""
    try:
        msgspec.json.decode(sale, type=msgspec.Raw)
    except msgspec.DecodeError:
        return "sale is not JSON"
    for column, value in (("prev_hash", prev), ("hash", digest)):
        if len(value) != HASH_BYTES:
            return f"{column} is {len(value)} bytes, not {HASH_BYTES}"
    return ALTERED

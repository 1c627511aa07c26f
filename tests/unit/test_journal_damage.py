"""Damaged journal rows on real files: read flagged (never raised), named by verify."""

from __future__ import annotations

import base64
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from edged.entrykinds import DamagedEntry, special_of
from edged.errors import ChainError, JournalError
from edged.journal import Journal, StoredEntry, damaged
from edged.journal.readonly import JournalReader
from edged.journal.verify import verify_journal
from edged.uplink.forwarder import encode_batch
from edged.wire import decode_tx

MARK = "ZZMARKZZ"  # a sku that finds seq 3's sale bytes in the file


def sale(n: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 100 + n,
        "lines": [{"sku": f"{MARK}{n}" if n == 3 else f"SKU-{n}", "qty": 1, "amount": 100 + n}],
        "payments": [{"method": "cash", "amount": 100 + n}],
    }


async def five_sales(path: Path) -> None:
    j = await Journal.open(path, store_id="S1", terminal_id="T1")
    for n in range(1, 6):
        await j.commit(sale(n))
    await j.close()  # checkpointed: every row is in the main file


def tamper(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql)


# (SQL that damages seq 3, the words its problem must hold)
DAMAGES = [
    pytest.param(
        "UPDATE entries SET sale = CAST(X'7B2261223A22FF227D' AS TEXT) WHERE seq = 3",
        "sale is not valid UTF-8",
        id="sale-not-utf8",
    ),
    pytest.param(
        "UPDATE entries SET sale = substr(sale, 1, 20) WHERE seq = 3",
        "sale is not JSON",
        id="sale-not-json",
    ),
    pytest.param(
        "UPDATE entries SET sale = replace(sale, '103', '903') WHERE seq = 3",
        "altered",
        id="digits-changed",
    ),
    pytest.param(
        "UPDATE entries SET prev_hash = substr(prev_hash, 1, 31) WHERE seq = 3",
        "prev_hash is 31 bytes, not 32",
        id="prev-hash-short",
    ),
    pytest.param(
        "UPDATE entries SET hash = X'00' WHERE seq = 3",
        "hash is 1 bytes, not 32",
        id="hash-short",
    ),
    pytest.param(
        "UPDATE entries SET receipt_no = CAST(X'53FE' AS TEXT) WHERE seq = 3",
        "receipt_no is not valid UTF-8",
        id="receipt-not-utf8",
    ),
]


@pytest.mark.parametrize(("sql", "words"), DAMAGES)
async def test_a_damaged_row_is_read_flagged_and_verify_names_its_seq(
    tmp_path: Path, sql: str, words: str
) -> None:
    path = tmp_path / "j.db"
    await five_sales(path)
    tamper(path, sql)
    with pytest.raises(ChainError) as info:
        verify_journal(path)
    assert info.value.seq == 3 and words in info.value.problem
    assert info.value.damaged == (3,)
    with JournalReader(path) as reader:
        damage = {e.seq: e.damage for e in reader.entries(1, 5)}
    assert damage[3] is not None and words in damage[3]
    assert [s for s, d in damage.items() if d] == [3]
    j = await Journal.open(path, store_id="S1", terminal_id="T1")
    try:
        entries = await j.unacked(0, 10)
    finally:
        await j.close()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.seq for e in entries if e.damage] == [3]


async def test_bytes_flipped_in_the_file_are_a_damaged_row(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await five_sales(path)
    data = bytearray(path.read_bytes())
    at = data.index(MARK.encode())
    data[at] = 0xFF  # the sale of seq 3 is no longer UTF-8, on disk
    path.write_bytes(bytes(data))
    with pytest.raises(ChainError) as info:
        verify_journal(path)
    assert (info.value.seq, info.value.damaged) == (3, (3,))
    assert "sale is not valid UTF-8" in info.value.problem
    with JournalReader(path) as reader:
        (entry,) = reader.entries(3, 3)
    assert entry.sale_json[entry.sale_json.index(b"\xff") + 1 :].startswith(MARK[1:].encode())


async def test_verify_names_every_damaged_seq(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await five_sales(path)
    tamper(path, "UPDATE entries SET sale = CAST(X'FF' AS TEXT) WHERE seq = 2")
    tamper(path, "UPDATE entries SET sale = replace(sale, '104', '904') WHERE seq = 4")
    with pytest.raises(ChainError) as info:
        verify_journal(path)
    assert (info.value.seq, info.value.damaged) == (2, (2, 4))
    assert "seq 4 (hash does not match" in info.value.problem


async def test_verify_still_finds_a_deleted_row_after_a_damaged_one(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await five_sales(path)
    tamper(path, "UPDATE entries SET sale = CAST(X'FF' AS TEXT) WHERE seq = 2")
    tamper(path, "DELETE FROM entries WHERE seq = 4")
    with pytest.raises(ChainError) as info:
        verify_journal(path)
    assert (info.value.seq, info.value.damaged) == (2, (2,))
    assert "entries 4..4 are missing" in info.value.problem


async def test_a_damaged_entry_is_forwarded_as_damaged_with_its_own_seq_and_hashes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    await five_sales(path)
    with JournalReader(path) as reader:
        stored = reader.entry(3)
    assert stored is not None
    tamper(path, "UPDATE entries SET sale = CAST(X'7B2261223A22FF227D' AS TEXT) WHERE seq = 3")
    j = await Journal.open(path, store_id="S1", terminal_id="T1")
    try:
        entries = await j.unacked(0, 10)
    finally:
        await j.close()
    batch = decode_tx(encode_batch("S1", "T1", entries))
    sent = batch.entries[2]
    assert (sent.seq, sent.id, sent.receipt_no, sent.created_at) == (
        3,
        stored.id,
        stored.receipt_no,
        stored.created_at,
    )
    assert (sent.prev_hash, sent.hash) == (stored.prev_hash.hex(), stored.hash.hex())
    record = special_of(bytes(sent.sale))
    assert isinstance(record, DamagedEntry)
    assert record.raw_bytes() == b'{"a":"\xff"}'
    assert record.problem.startswith("sale is not valid UTF-8")
    assert msgspec.json.decode(bytes(sent.sale))["damaged_entry"]["raw"] == base64.b64encode(
        b'{"a":"\xff"}'
    ).decode("ascii")
    # the other entries go as they were stored
    assert [bytes(e.sale) for e in batch.entries[:2]] == [e.sale_json for e in entries[:2]]


async def test_a_truncated_main_file_is_still_reported_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await Journal.open(path, store_id="S1", terminal_id="T1")
    for n in range(300):  # enough pages that half the file cuts through the entries
        await j.commit({**sale(n), "note": "x" * 200})
    await j.close()
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(JournalError, match="corrupt"):
        verify_journal(path)


def test_damaged_seqs_are_said_once_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(damaged, "MAX_REMEMBERED", 3)
    seqs = damaged.DamagedSeqs()

    def entry(seq: int) -> StoredEntry:
        return StoredEntry(seq, "id", "r", "t", b"", b"", b"x", damage="sale is not JSON")

    first = [seqs.note(entry(s)) for s in (5, 6, 5, 7, 8, 9, 6, 8, 10)]
    # new: 5, 6, 7 (remembered), then 8, 9, 10 in seq order; a resend of 6 or 8 is not new
    assert first == [True, True, False, True, True, True, False, False, True]
    assert seqs.status() == {"damaged": [5, 6, 7], "damaged_count": 6}

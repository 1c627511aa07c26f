"""Signed entries on a broker without ACLs: a rogue client stores nothing (DESIGN 12)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from edged.collector.keyadmin import keys_command
from edged.keys import collector_key_path, read_public
from edged.signing import Signer, tx_signed_bytes
from edged.wire import Entry, Sig, TxBatch, decode_ack, encode
from tests.integration.test_collector import (
    S,
    Terminal,
    config,
    db_of,
    make_chain,
    running,
    stored,
    until,
)
from tests.support.mosquitto import Mosquitto


def batch(terminal: str, entries: Sequence[Entry], sig: Sig | None) -> bytes:
    return encode(TxBatch(v=1, store=S, terminal=terminal, entries=list(entries), sig=sig))


def signed(signer: Signer, terminal: str, entries: Sequence[Entry]) -> bytes:
    message = tx_signed_bytes(S, terminal, [(e.seq, e.hash) for e in entries])
    return batch(terminal, entries, signer.sign(message))


def problems(db: str) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute("SELECT seq, kind FROM problems ORDER BY kind, seq"))


def forgeries_seen(db: str) -> int:
    """Forged entries received (the same one again counts up its row)."""
    if not Path(db).exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT coalesce(sum(count), 0) FROM problems").fetchone()[0])


def hashes(db: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return [h for (h,) in conn.execute("SELECT hash FROM transactions ORDER BY seq")]


async def test_a_rogue_client_stores_no_forged_entry_and_gets_no_ack(
    broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1")
    db = db_of(cfg)
    till = Signer.generate()
    chain = make_chain("t1", 10)
    forged = make_chain("t1", 3, start=6, prev=bytes.fromhex(chain[4].hash))  # a valid chain
    first = signed(till, "t1", chain[:5])
    async with (
        running(cfg),
        Terminal(broker.port, "t1") as term,
        Terminal(broker.port, "t1") as rogue,
    ):
        await term.publish_raw(term.topics.tx, first)
        await term.wait_ack(5)  # the till's key is pinned now
        rogue_key = Signer.generate()
        good_sig = till.sign(tx_signed_bytes(S, "t1", [(e.seq, e.hash) for e in chain[5:8]]))
        for payload in (
            batch("t1", forged, None),  # unsigned
            signed(rogue_key, "t1", forged),  # the rogue's own key
            batch("t1", forged, Sig("ed25519", till.public_hex, rogue_key.sign(b"x").value)),
            batch("t1", forged, good_sig),  # the till's signature, over other entries
        ):
            await rogue.publish_raw(rogue.topics.tx, payload)
        await until(lambda: forgeries_seen(db) == 12)
        assert max(term.acks) == 5  # nothing was acknowledged for the forgeries
        await rogue.publish_raw(rogue.topics.tx, first)  # a replay: absorbed, nothing new
        await term.publish_raw(term.topics.tx, signed(till, "t1", chain[5:]))
        await term.wait_ack(10)
    assert [seq for _, seq, _ in stored(db)] == list(range(1, 11))
    assert hashes(db) == [e.hash for e in chain]
    assert problems(db) == [
        (seq, kind) for kind in ("bad_signature", "unsigned", "wrong_key") for seq in (6, 7, 8)
    ]


async def test_acks_are_signed_by_the_collector_key_beside_its_database(
    broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1")
    till = Signer.generate()
    chain = make_chain("t1", 2)
    async with running(cfg), Terminal(broker.port, "t1") as term:
        raw: list[bytes] = []
        term.on_payload = raw.append
        await term.publish_raw(term.topics.tx, signed(till, "t1", chain))
        await term.wait_ack(2)
    key = read_public(collector_key_path(db_of(cfg)))
    ack = decode_ack(raw[-1])
    assert ack.sig is not None and ack.sig.key == key


async def test_a_replaced_till_is_re_pinned_by_the_admin(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1")
    db = db_of(cfg)
    old, new, newer = Signer.generate(), Signer.generate(), Signer.generate()
    chain = make_chain("t1", 9)
    async with running(cfg), Terminal(broker.port, "t1") as term:
        await term.publish_raw(term.topics.tx, signed(old, "t1", chain[:3]))
        await term.wait_ack(3)
        await term.publish_raw(term.topics.tx, signed(new, "t1", chain[3:6]))
        await until(lambda: forgeries_seen(db) == 3)
        assert [seq for _, seq, _ in stored(db)] == [1, 2, 3]
        keys_command(cfg.collector.db, ["pin", S, "t1", new.public_hex])
        await term.publish_raw(term.topics.tx, signed(new, "t1", chain[3:6]))
        await term.wait_ack(6)
        keys_command(cfg.collector.db, ["forget", S, "t1"])  # or: trust the next key again
        await term.publish_raw(term.topics.tx, signed(newer, "t1", chain[6:]))
        await term.wait_ack(9)
    listed = subprocess.run(
        [sys.executable, "-m", "edged.cli", "collector", "--config", str(cfg.source), "keys"],
        capture_output=True,
        check=True,
        text=True,
    )
    found = json.loads(listed.stdout)
    assert found["terminals"] == [
        {
            "store": S,
            "terminal": "t1",
            "key": newer.public_hex,
            "pinned_by": "first_use",
            "pinned_at": found["terminals"][0]["pinned_at"],
        }
    ]
    assert found["collector_key"] == read_public(collector_key_path(db))
    assert problems(db) == [(4, "wrong_key"), (5, "wrong_key"), (6, "wrong_key")]

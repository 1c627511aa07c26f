"""Faults where one side forgets or someone lies, healed the way the README says.

The store loses its database and is rebuilt from the terminal (resend on demand); a till gets
a new disk and adopts the store's seqs; a rogue client on the anonymous broker forges entries
and acks. Each returns a one-line description for the schedule's log and appends to `problems`
what went against the README: those fail the run, as a lost sale does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import aiomqtt

from edged.chain import GENESIS_HASH
from edged.journal.seqmark import SUFFIX as SEQ_MARK_SUFFIX
from edged.keys import collector_pin_path, terminal_key_path
from edged.signing import Signer, ack_signed_bytes, tx_signed_bytes
from edged.wire import DEFAULT_TOPIC_PREFIX, Ack, Entry, Sig, Topics, TxBatch, encode
from tests.fault.rig import Seller, Store
from tests.fault.storage import EDGECTL
from tests.support.entries import make_chain

TRUST_FAULTS = ("collector_db_lost", "till_replaced", "rogue_forger")
EDGED = (sys.executable, "-m", "edged.cli")
FORGED_BATCH = 3  # entries per forged batch
FORGED_ACK_AHEAD = 10_000  # a forged ack claims this many seqs past what the store holds


async def trust_fault(
    store: Store, seller: Seller, name: str, rng: random.Random, problems: list[str]
) -> str:
    """Do fault `name` while `seller` sells; heal it the way the README says."""
    if name == "collector_db_lost":
        return await lose_collector_db(store, rng.uniform(0.2, 1.5), problems)
    if name == "till_replaced":
        return await replace_till(store, seller, problems)
    if name == "rogue_forger":
        return await rogue_forger(store, rng, rng.uniform(1.0, 3.0), problems)
    raise ValueError(f"no trust fault {name!r}")


def _run(args: list[str], what: str, problems: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        problems.append(f"{what} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


async def lose_collector_db(store: Store, down_s: float, problems: list[str]) -> str:
    """kill -9 the collector, delete its database files, `init`, start: rebuilt by resend.

    Only the database (and its -wal/-shm) goes, as a lost or badly restored database would:
    `collector.key` beside it stays, so the terminal still trusts the new database's acks
    (deleting the folder would need `edgectl keys pin-collector`, README "Keys").
    """
    store.collector.kill()
    for suffix in ("", "-wal", "-shm"):
        Path(store.collector.db + suffix).unlink(missing_ok=True)
    await asyncio.sleep(down_s)
    config = str(store.collector.config)
    said = await asyncio.to_thread(
        _run, [*EDGED, "collector", "--config", config, "init"], "collector init", problems
    )
    await store.restart_collector()
    return f"collector_db_lost: down {down_s:.2f}s, {said.strip()[:60]}"


def _retired(store: Store) -> Path:
    """A fresh folder on the journal's disk for the files of a replaced till."""
    base = Path(store.till.journal).parent
    for n in range(1, 1000):
        folder = base / f"replaced-till-{n}"
        if not folder.exists():
            folder.mkdir()
            return folder
    raise RuntimeError(f"too many replaced tills under {base}")


async def replace_till(store: Store, seller: Seller, problems: list[str]) -> str:
    """A new till: new disk (journal, -wal, -shm, seq mark, keys moved aside), same ids.

    Waits for an empty outbox first (the seller paused), so no unsent sale goes with the old
    disk. The admin steps of README "Keys": pin the collector key on the new till, and re-pin
    the new till's key at the collector. The new journal adopts the store's seqs.
    """
    async with seller.paused():
        before = await store.drained()
        await asyncio.to_thread(store.till.terminate)
        journal = store.till.journal
        aside = _retired(store)
        files = [Path(journal + suffix) for suffix in ("", "-wal", "-shm", SEQ_MARK_SUFFIX)] + [
            terminal_key_path(journal),
            collector_pin_path(journal),
        ]
        for path in files:
            if path.exists():
                path.rename(aside / path.name)
        store.retired_journals.append(str(aside / Path(journal).name))
        config = str(store.till.config)
        collector = str(store.collector.config)
        ids = (store.till.store, store.till.terminal)
        listed = await asyncio.to_thread(
            _run, [*EDGED, "collector", "--config", collector, "keys"], "collector keys", problems
        )
        collector_key = json.loads(listed or "{}").get("collector_key") or ""
        await asyncio.to_thread(
            _run,
            [*EDGECTL, "--config", config, "keys", "pin-collector", collector_key],
            "edgectl keys pin-collector",
            problems,
        )
        seller.epoch += 1
        await store.restart_daemon()
        shown = await asyncio.to_thread(
            _run, [*EDGECTL, "--config", config, "keys", "show", "--json"], "keys show", problems
        )
        till_key = json.loads(shown or "{}").get("terminal_key") or ""
        await asyncio.to_thread(
            _run,
            [*EDGED, "collector", "--config", collector, "keys", "pin", *ids, till_key],
            "collector keys pin",
            problems,
        )
    last = before["journal"]["last_seq"]
    status = await store.wait("adopted", lambda s: s["journal"].get("adoption") != "pending")
    if status["journal"]["last_seq"] <= last:
        problems.append(f"till_replaced: the new journal is at seq {status['journal']['last_seq']}")
    return f"till_replaced: old journal drained at seq {last}, new one adopted"


def _store_head(store: Store) -> tuple[int, str]:
    """The highest seq the store holds for the till, and its hash (0 and genesis: none)."""
    with closing(sqlite3.connect(f"file:{store.collector.db}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT seq, hash FROM transactions WHERE store_id = ? AND terminal_id = ?"
            " ORDER BY seq DESC LIMIT 1",
            (store.till.store, store.till.terminal),
        ).fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH.hex())


def _stored_ids(store: Store) -> set[str]:
    with closing(sqlite3.connect(f"file:{store.collector.db}?mode=ro", uri=True)) as conn:
        return {sale_id for (sale_id,) in conn.execute("SELECT id FROM transactions")}


def _forged_batch(store: Store, entries: list[Entry], rogue: Signer, how: str) -> bytes:
    ids = (store.till.store, store.till.terminal)
    sig: Sig | None = None
    if how == "rogue_key":
        sig = rogue.sign(tx_signed_bytes(*ids, [(e.seq, e.hash) for e in entries]))
    elif how == "bad_signature":  # claims a key it does not hold
        sig = Sig("ed25519", Signer.generate().public_hex, rogue.sign(b"forged").value)
    return encode(TxBatch(v=1, store=ids[0], terminal=ids[1], entries=entries, sig=sig))


def _forged_ack(store: Store, rogue: Signer, upto: int, signed: bool) -> bytes:
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    ack = Ack(v=1, upto=upto, at=at, last_seq=upto, last_hash="ab" * 32)
    if signed:
        sig = rogue.sign(ack_signed_bytes(store.till.store, store.till.terminal, ack))
        ack = Ack(v=1, upto=upto, at=at, last_seq=upto, last_hash="ab" * 32, sig=sig)
    return encode(ack)


async def rogue_forger(store: Store, rng: random.Random, hold_s: float, problems: list[str]) -> str:
    """A second client on the anonymous broker, for `hold_s`: forged tx batches (valid chains
    past the store's head: unsigned, signed by its own key, or with a bad signature), replays
    of the till's batches it captured, and forged acks far ahead (retained and not).

    Afterwards nothing forged is stored, and the till's acked_upto never passed the store.
    """
    # Only after the store has acknowledged the till, so its key is pinned: before that, trust
    # on first use trusts whoever speaks first (README "Keys": pre-register keys on such a
    # broker), and a new journal stays silent until it adopted (up to ADOPTION_WAIT_S).
    await store.wait("the till's key pinned", lambda s: s["outbox"]["acked_upto"] > 0)
    topics = Topics(DEFAULT_TOPIC_PREFIX, store.till.store, store.till.terminal)
    rogue = Signer.generate()
    forged_ids: set[str] = set()
    captured: list[bytes] = []
    sent = {"forged": 0, "replayed": 0, "acks": 0}
    overreach: list[str] = []
    async with aiomqtt.Client("127.0.0.1", store.broker.port, identifier="rogue") as client:
        await client.subscribe(topics.tx, qos=1)

        async def capture() -> None:
            async for message in client.messages:
                captured.append(bytes(message.payload))  # type: ignore[arg-type]

        capturing = asyncio.create_task(capture())
        deadline = asyncio.get_running_loop().time() + hold_s
        while asyncio.get_running_loop().time() < deadline:
            head, head_hash = await asyncio.to_thread(_store_head, store)
            chain = make_chain(
                store.till.store,
                store.till.terminal,
                FORGED_BATCH,
                start=head + 1,
                prev=bytes.fromhex(head_hash),
                tag="-forged",
            )
            forged_ids.update(e.id for e in chain)
            how = rng.choice(("unsigned", "rogue_key", "bad_signature"))
            await client.publish(topics.tx, _forged_batch(store, chain, rogue, how), qos=1)
            sent["forged"] += 1
            for payload in captured[-2:]:
                await client.publish(topics.tx, payload, qos=1)
                sent["replayed"] += 1
            upto = head + FORGED_ACK_AHEAD
            retain = rng.random() < 0.5
            await client.publish(
                topics.ack,
                _forged_ack(store, rogue, upto, rng.random() < 0.5),
                qos=1,
                retain=retain,
            )
            sent["acks"] += 1
            status = await store.status()
            acked = status["outbox"]["acked_upto"]
            held, _ = await asyncio.to_thread(_store_head, store)
            if acked > held:
                overreach.append(f"acked_upto {acked} > store's {held}")
            await asyncio.sleep(rng.uniform(0.02, 0.1))
        capturing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await capturing
    # A genuine ack after the rogue stopped replaces its retained one (and shows the till goes on).
    acked = (await store.status())["outbox"]["acked_upto"]
    await store.wait("a genuine ack after the rogue", lambda s: s["outbox"]["acked_upto"] > acked)
    if overreach:
        problems.append(f"rogue_forger: the till acted on a forged ack: {overreach[:3]}")
    stored = forged_ids & await asyncio.to_thread(_stored_ids, store)
    if stored:
        problems.append(f"rogue_forger: {len(stored)} forged entries stored")
    return (
        f"rogue_forger {hold_s:.2f}s: {sent['forged']} forged batches, {sent['replayed']}"
        f" replays, {sent['acks']} forged acks"
    )

"""Resend on demand (DESIGN invariant 11): a store that lost or restored its database asks the
terminal for what it lacks and is rebuilt from the journal; what the terminal purged is a
permanent gap, reported at both ends and accepted with `edged collector accept-gap`.

Real mosquitto, the real collector and the real uplink, in one process; the CLI as a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest
from structlog.testing import capture_logs

from edged.collector import collector_report, init_collector_db, run_collector
from edged.config import CollectorConfig, CollectorSection, TerminalSection, UplinkSection
from edged.events import EventHub
from edged.journal import Journal
from edged.keys import (
    collector_key_path,
    collector_pin_path,
    load_or_create,
    read_pin,
    terminal_key_path,
)
from edged.signing import Signer, resend_signed_bytes
from edged.uplink import Uplink
from edged.uplink.client import connect
from edged.wire import ResendRequest, Topics, decode_resend_answer, decode_tx, encode
from tests.support.checker import compare
from tests.support.faultproxy import FaultProxy
from tests.support.forwarding import bare_forwarder
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import until

STORE, TERMINAL = "s1", "t1"
SUFFIXES = ("", "-wal", "-shm")


def sale(n: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 100 + n,
        "lines": [{"sku": f"SKU-{n}", "qty": 1, "amount": 100 + n}],
        "payments": [{"method": "cash", "amount": 100 + n}],
    }


def uplink_cfg(broker: Mosquitto) -> UplinkSection:
    return UplinkSection(
        host="127.0.0.1",
        port=broker.port,
        keepalive_s=1,
        online_after_s=0.3,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
        ack_timeout_s=1.0,
        batch_max=20,
        window=2,
    )


class Store:
    """The store side: a collector that can be stopped, its database lost or restored."""

    def __init__(self, broker: Mosquitto, tmp_path: Path) -> None:
        self.db = tmp_path / "store.db"
        self.config = tmp_path / "collector.toml"
        self.config.write_text(
            f'[uplink]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "collector-1"\n'
            f'reconnect_min_s = 0.1\nreconnect_max_s = 0.5\n[collector]\ndb = "sqlite:///{self.db}"\n'
        )
        self.cfg = CollectorConfig(
            uplink=uplink_cfg(broker),
            collector=CollectorSection(db=f"sqlite:///{self.db}"),
            source=str(self.config),
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ready = asyncio.Event()
        self._task = asyncio.create_task(run_collector(self.cfg, ready=ready), name="collector")
        await until(lambda: ready.is_set() or self._task is None or self._task.done(), "ready")
        assert ready.is_set(), self._task.exception() if self._task.done() else "not ready"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def ended(self) -> BaseException | None:
        assert self._task is not None
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self._task), 20)
        error = self._task.exception() if self._task.done() else None
        self._task = None
        return error

    def copy_to(self, where: Path) -> None:
        for suffix in SUFFIXES:
            src = Path(f"{self.db}{suffix}")
            if src.exists():
                shutil.copy2(src, f"{where}{suffix}")

    def restore_from(self, where: Path) -> None:
        for suffix in SUFFIXES:
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
            src = Path(f"{where}{suffix}")
            if src.exists():
                shutil.copy2(src, f"{self.db}{suffix}")

    def seqs(self) -> list[int]:
        if not self.db.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT seq FROM transactions WHERE store_id = ? AND terminal_id = ? ORDER BY seq",
                (STORE, TERMINAL),
            ).fetchall()
        return [seq for (seq,) in rows]

    def terminal(self) -> dict[str, Any]:
        report = collector_report(self.cfg.collector.db)
        (found,) = [t for t in report["terminals"] if t["terminal_id"] == TERMINAL]
        return found


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "journal.db", store_id=STORE, terminal_id=TERMINAL)
    try:
        yield j
    finally:
        await j.close()


@contextlib.asynccontextmanager
async def till(broker: Mosquitto, journal: Journal) -> AsyncIterator[Uplink]:
    terminal = TerminalSection(store_id=STORE, terminal_id=TERMINAL)
    signer = load_or_create(terminal_key_path(journal.path))
    uplink = Uplink(uplink_cfg(broker), terminal, journal, EventHub(), "9.9.9-test", signer=signer)
    task = asyncio.create_task(uplink.run(), name="uplink")
    try:
        yield uplink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def commit(journal: Journal, n: int) -> None:
    for i in range(n):
        await journal.commit(sale(i))


def accept_gap(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    """`edged collector --config F accept-gap STORE TERMINAL ...` as a process."""
    command = [sys.executable, "-m", "edged.cli", "collector", "--config", str(store.config)]
    return subprocess.run(
        [*command, "accept-gap", STORE, TERMINAL, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def consistent(journal: Journal, store: Store) -> None:
    result = compare(str(journal.path), str(store.db), STORE, TERMINAL)
    assert result.ok, str(result)
    assert not result.lost


async def test_collector_db_deleted_mid_drain_is_rebuilt_from_the_terminal(
    broker: Mosquitto, journal: Journal, tmp_path: Path
) -> None:
    store = Store(broker, tmp_path)
    await commit(journal, 300)
    await store.start()
    async with till(broker, journal):
        await until(lambda: journal.stats().acked_upto >= 60, "mid-drain")
        for suffix in SUFFIXES:
            Path(f"{store.db}{suffix}").unlink(missing_ok=True)
        assert "missing" in str(await store.ended()) or not store.db.exists()
        init_collector_db(store.cfg.collector.db)  # the documented step after a lost database
        await store.start()
        await commit(journal, 20)  # sales go on meanwhile
        await until(lambda: store.seqs() == list(range(1, 321)), "rebuilt")
        await until(lambda: journal.stats().acked_upto == 320, "acked")
    await store.stop()
    consistent(journal, store)
    rebuild = store.terminal()["rebuild"]
    assert rebuild["requested_from"] == 1
    assert rebuild["remaining"] == 0
    assert store.terminal()["permanent_gaps"] == []


async def test_collector_db_restored_from_an_old_copy_heals(
    broker: Mosquitto, journal: Journal, tmp_path: Path
) -> None:
    store = Store(broker, tmp_path)
    backup = tmp_path / "backup.db"
    await store.start()
    async with till(broker, journal):
        await commit(journal, 50)
        await until(lambda: journal.stats().acked_upto == 50, "first drain")
        await store.stop()
        store.copy_to(backup)  # yesterday's backup
        await store.start()
        await commit(journal, 100)
        await until(lambda: journal.stats().acked_upto == 150, "second drain")
        await store.stop()
        store.restore_from(backup)
        await store.start()
        await commit(journal, 5)  # the next sale shows the store its gap
        await until(lambda: store.seqs() == list(range(1, 156)), "healed")
        await until(lambda: journal.stats().acked_upto == 155, "acked")
    await store.stop()
    consistent(journal, store)
    rebuild = store.terminal()["rebuild"]
    assert (rebuild["requested_from"], rebuild["requested_upto"]) == (51, 150)
    assert rebuild["remaining"] == 0


async def test_a_gap_beyond_retention_is_reported_then_accepted(
    broker: Mosquitto, journal: Journal, tmp_path: Path
) -> None:
    store = Store(broker, tmp_path)
    backup = tmp_path / "backup.db"
    await store.start()
    async with till(broker, journal) as uplink:
        await commit(journal, 30)
        await until(lambda: journal.stats().acked_upto == 30, "first drain")
        await store.stop()
        store.copy_to(backup)
        await store.start()
        await commit(journal, 40)
        await until(lambda: journal.stats().acked_upto == 70, "second drain")
        await store.stop()
        assert await journal.purge(retain_days=0) == 70  # all acknowledged: all purged
        store.restore_from(backup)
        await store.start()
        await commit(journal, 5)  # seqs 71..75
        await until(lambda: store.seqs() == [*range(1, 31), *range(71, 76)], "tail stored")
        await until(lambda: store.terminal()["permanent_gaps"] != [], "permanent gap")
        (gap,) = store.terminal()["permanent_gaps"]
        assert (gap["from"], gap["to"], gap["accepted_at"]) == (31, 70, None)
        problems = collector_report(store.cfg.collector.db)["problems"]
        assert any(p["kind"] == "unavailable" and p["seq"] == 31 for p in problems)
        await until(lambda: uplink.status()["store_permanent_gap"] == [31, 70], "terminal")
        assert journal.stats().acked_upto == 70  # the store acknowledges nothing past its gap

        done = accept_gap(store, "31", "70", "--by", "alice")
        assert done.returncode == 0, done.stderr
        assert "accepted seqs 31..70" in done.stdout
        await until(lambda: journal.stats().acked_upto == 75, "acks past the accepted gap")
        assert uplink.status()["store_permanent_gap"] is None
    await store.stop()
    (gap,) = store.terminal()["permanent_gaps"]
    assert gap["accepted_by"] == "alice" and gap["accepted_at"]
    assert store.terminal()["contiguous_upto"] == 75


async def test_accept_gap_refuses_seqs_that_are_no_reported_gap(
    broker: Mosquitto, tmp_path: Path
) -> None:
    store = Store(broker, tmp_path)
    init_collector_db(store.cfg.collector.db)
    done = accept_gap(store, "5", "9")
    assert done.returncode == 1
    assert "not a permanent gap the terminal reported" in done.stderr


def resend_request(signer: Signer | None, seq_from: int, upto: int) -> bytes:
    request = ResendRequest(v=1, from_=seq_from, upto=upto, reason="test")
    if signer is not None:
        sig = signer.sign(resend_signed_bytes(STORE, TERMINAL, request))
        request = msgspec.structs.replace(request, sig=sig)
    return encode(request)


async def test_only_the_pinned_collectors_resend_requests_are_honoured(
    broker: Mosquitto, journal: Journal, tmp_path: Path
) -> None:
    """On a broker without ACLs, a rogue asking a till for its whole journal gets nothing sent."""
    store = Store(broker, tmp_path)
    await store.start()
    topics = Topics("edged/v1", STORE, TERMINAL)
    answers: list[tuple[int, int]] = []
    resent: list[int] = []

    async def spy(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            if str(message.topic) == topics.tx:
                resent.extend(e.seq for e in decode_tx(message.payload).entries)
            else:
                answer = decode_resend_answer(message.payload)
                answers.append((answer.from_, answer.upto or 0))

    async with till(broker, journal) as uplink:
        await commit(journal, 30)
        await until(lambda: journal.stats().acked_upto == 30, "drained")
        await store.stop()  # nothing but the till and the rogue on the broker now
        collector = load_or_create(collector_key_path(store.db))
        assert read_pin(collector_pin_path(journal.path)) == collector.public_hex
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="rogue") as rogue:
            await rogue.subscribe(topics.tx, qos=1)
            await rogue.subscribe(topics.resend_answer, qos=1)
            reader = asyncio.create_task(spy(rogue), name="spy")
            with capture_logs() as logs:
                await rogue.publish(topics.resend, resend_request(None, 1, 30), qos=1)
                rogue_key = Signer.generate()
                await rogue.publish(topics.resend, resend_request(rogue_key, 1, 30), qos=1)
                # The till handles requests in order: this answer comes after the forged ones.
                await rogue.publish(topics.resend, resend_request(collector, 21, 25), qos=1)
                await until(
                    lambda: (21, 25) in answers and set(range(21, 26)) <= set(resent), "resent"
                )
                await until(lambda: uplink.status()["resend"] is None, "done", timeout_s=5.0)
                await rogue.publish(topics.resend, resend_request(collector, 30, 30), qos=1)
                await until(lambda: 30 in resent, "one entry resent", timeout_s=5.0)
                await until(lambda: uplink.status()["resend"] is None, "done", timeout_s=5.0)
                await asyncio.sleep(0.3)  # a forwarder that failed would say so by now
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert answers == [(21, 25), (30, 30)]
    assert sorted(resent) == [*range(21, 26), 30]  # nothing from the forged requests' seq 1
    failed = [e["event"] for e in logs if e["log_level"] == "error"]
    assert failed == ["resend_ignored", "resend_ignored"]  # the forwarder never failed
    kinds = [(e["log_level"], e["kind"]) for e in logs if e["event"] == "resend_ignored"]
    assert kinds == [("error", "unsigned"), ("error", "wrong_key")]


async def test_resend_requests_set_the_cursor_a_later_one_widens_it(
    broker: Mosquitto, journal: Journal
) -> None:
    """The cursor a request leaves, with no forwarding loop to consume it: from the request's
    `from`, up to its `upto` (at most the journal's last seq); nothing for seqs past the
    journal's end; a second request while one runs covers both."""
    await commit(journal, 30)
    fwd = bare_forwarder(journal, store=STORE, terminal=TERMINAL)
    async with connect(
        uplink_cfg(broker),
        client_id="forwarder-under-test",
        will=None,
        subscribe=[],
        probe_topic="edged/v1/probe",
    ) as conn:
        with capture_logs() as logs:
            await fwd.handle_resend(conn, b'{"v":1,"from":"one"}')
        said = [(e["event"], e["topic"]) for e in logs if e["log_level"] == "warning"]
        assert said == [("ack_rejected", fwd.resend_topic)]  # malformed: said, nothing done
        await fwd.handle_resend(conn, resend_request(None, 40, 50))  # past the journal's end
        assert fwd.resend_status() == {"resend": None, "store_permanent_gap": None}
        await fwd.handle_resend(conn, resend_request(None, 21, 25))
        assert fwd.resend_status()["resend"] == {"from": 21, "sent_upto": 20, "upto": 25}
        await fwd.handle_resend(conn, resend_request(None, 11, 40))
        assert fwd.resend_status()["resend"] == {"from": 11, "sent_upto": 10, "upto": 30}


async def test_a_resend_keeps_its_window_and_its_cursor_until_the_broker_has_its_batches(
    broker: Mosquitto, journal: Journal
) -> None:
    """With no PUBACK coming (a link gone silent), a resend puts at most `window` batches in
    flight (2 of 10 entries here), and one whose entries are all sent stays under way."""
    await commit(journal, 30)
    wide, short = (bare_forwarder(journal, store=STORE, terminal=TERMINAL) for _ in range(2))
    async with FaultProxy(broker.port) as proxy:
        cfg = msgspec.structs.replace(uplink_cfg(broker), port=proxy.port, ack_timeout_s=1.0)
        async with connect(
            cfg, client_id="forwarder-under-test", will=None, subscribe=[], probe_topic="p"
        ) as conn:
            await wide.handle_resend(conn, resend_request(None, 1, 30))
            await short.handle_resend(conn, resend_request(None, 21, 30))
            await proxy.set_mode("blackhole")
            with contextlib.suppress(ExceptionGroup):  # the publishes time out at the end
                async with asyncio.TaskGroup() as tg:
                    await wide._fill_resend(conn, tg)
                    await short._fill_resend(conn, tg)
                    seen = [wide.resend_status()["resend"], short.resend_status()["resend"]]
    assert seen == [
        {"from": 1, "sent_upto": 20, "upto": 30},
        {"from": 21, "sent_upto": 30, "upto": 30},
    ]

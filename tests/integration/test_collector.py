"""The collector against a real mosquitto: store, acknowledge after commit, survive faults."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt
import msgspec
import pytest
import structlog

from edged.chain import GENESIS_HASH
from edged.collector import collector_report, run_collector
from edged.collector import schema as schema_module
from edged.collector import service as service_module
from edged.collector.dburl import configured
from edged.config import CollectorConfig, load_collector_config
from edged.signing import Signer, tx_signed_bytes
from edged.wire import (
    Entry,
    ResendAnswer,
    ResendRequest,
    Topics,
    TxBatch,
    decode_ack,
    decode_resend,
    encode,
)
from tests.support.collectordb import CollectorDb
from tests.support.entries import make_chain as support_chain
from tests.support.faultproxy import FaultProxy
from tests.support.mosquitto import Mosquitto
from tests.support.noshare import NoSharedProxy

WAIT_S = 20.0
ROUND_ACK_TIMEOUT_S = 1.0
PUBACK_SETTLE_S = 0.3
PREFIX = "edged/v1"
S = "s1"


def make_chain(terminal: str, n: int, *, start: int = 1, prev: bytes = GENESIS_HASH) -> list[Entry]:
    """A valid hash chain of n entries for terminal S/`terminal`."""
    return support_chain(S, terminal, n, start=start, prev=prev)


def write_config(
    tmp_path: Path,
    port: int,
    *,
    client_id: str,
    db: str | CollectorDb = "collector.db",
    shared_group: str | None = None,
    uplink_extra: str = "",
) -> Path:
    path = tmp_path / f"{client_id}.toml"
    # None: the default (shared); "": turned off.
    group = f'shared_group = "{shared_group}"\n' if shared_group is not None else ""
    db_lines = db.config_lines if isinstance(db, CollectorDb) else f'db = "sqlite:///{db}"\n'
    path.write_text(
        "[uplink]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'client_id = "{client_id}"\n'
        "reconnect_min_s = 0.1\n"
        "reconnect_max_s = 0.5\n" + uplink_extra + "[collector]\n" + db_lines + group
    )
    return path


def config(
    tmp_path: Path,
    port: int,
    *,
    client_id: str,
    db: str | CollectorDb = "collector.db",
    shared_group: str | None = None,
    uplink_extra: str = "",
) -> CollectorConfig:
    path = write_config(
        tmp_path,
        port,
        client_id=client_id,
        db=db,
        shared_group=shared_group,
        uplink_extra=uplink_extra,
    )
    return load_collector_config(path)


def stored(
    db: str | CollectorConfig | CollectorDb, terminal: str | None = None
) -> list[tuple[str, int, str]]:
    """(terminal, seq, received_by) of every stored entry, read while the collector runs."""
    sql = "SELECT terminal_id, seq, received_by FROM transactions ORDER BY terminal_id, seq"
    if isinstance(db, CollectorConfig):
        db = CollectorDb("", configured(db.collector))
    if isinstance(db, CollectorDb) and db.target.postgres:
        found = db.query(sql) if db.query("SELECT to_regclass('transactions')")[0][0] else []
    else:
        db_path = db.target.path if isinstance(db, CollectorDb) else db
        if not Path(db_path).exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
            found = conn.execute(sql).fetchall()
    return [r for r in found if terminal is None or r[0] == terminal]


def db_of(cfg: CollectorConfig) -> str:
    return cfg.collector.db.removeprefix("sqlite:///")


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(cfg: CollectorConfig) -> AsyncIterator[asyncio.Task[None]]:
    """run_collector in a task, subscribed before the body runs, cancelled after it."""
    ready = asyncio.Event()
    task = asyncio.create_task(run_collector(cfg, ready=ready), name=f"collector {cfg.source}")
    waiter = asyncio.create_task(ready.wait(), name="collector ready")
    try:
        async with asyncio.timeout(WAIT_S):
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped it
            raise AssertionError("collector returned")
        yield task
    finally:
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Terminal:
    """The terminal's side of the wire: publishes tx batches, collects acks."""

    def __init__(
        self,
        port: int,
        terminal: str,
        store: str = S,
        *,
        username: str | None = None,
        password: str | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.port = port
        self.signer = signer  # signs each batch, as edged does; None: an edged before keys
        self.store = store
        self.terminal = terminal
        self.topics = Topics(PREFIX, store, terminal)
        self.acks: list[int] = []
        self.on_payload: Callable[[bytes], None] = lambda payload: None  # each ack, raw
        self.resends: list[ResendRequest] = []
        self._client = aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier=f"test-term-{terminal}-{uuid.uuid4().hex[:6]}",
            username=username,
            password=password,
        )
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(self.topics.ack, qos=1)
        await self._client.subscribe(self.topics.resend, qos=1)
        self._reader = asyncio.create_task(self._read(), name=f"acks {self.terminal}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        async for message in self._client.messages:
            assert isinstance(message.payload, bytes)
            if str(message.topic) == self.topics.resend:
                self.resends.append(decode_resend(message.payload))
            else:
                self.on_payload(message.payload)
                self.acks.append(decode_ack(message.payload).upto)

    async def publish(self, entries: Sequence[Entry]) -> None:
        sig = None
        if self.signer is not None:
            signed = tx_signed_bytes(self.store, self.terminal, [(e.seq, e.hash) for e in entries])
            sig = self.signer.sign(signed)
        batch = TxBatch(
            v=1, store=self.store, terminal=self.terminal, entries=list(entries), sig=sig
        )
        await self.publish_raw(self.topics.tx, encode(batch))

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        await self._client.publish(topic, payload, qos=1)

    async def wait_ack(self, upto: int) -> None:
        await until(lambda: bool(self.acks) and max(self.acks) >= upto)


async def test_batches_are_stored_and_acknowledged(
    broker: Mosquitto, tmp_path: Path, collector_db: CollectorDb
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1", db=collector_db)
    chain = make_chain("t1", 15)
    async with running(cfg), Terminal(broker.port, "t1") as term:
        for i in range(0, 15, 5):
            await term.publish(chain[i : i + 5])
        await term.wait_ack(15)
    assert [seq for _, seq, _ in stored(cfg)] == list(range(1, 16))
    assert sorted(set(term.acks)) == sorted(term.acks)  # one ack per stored prefix, no repeats
    assert term.acks[-1] == 15


async def test_resent_batch_is_reacknowledged_not_stored_again(
    broker: Mosquitto, tmp_path: Path, collector_db: CollectorDb
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1", db=collector_db)
    chain = make_chain("t1", 5)
    async with running(cfg), Terminal(broker.port, "t1") as term:
        await term.publish(chain)
        await term.wait_ack(5)
        await term.publish(chain)  # the terminal did not see the ack in time and resends
        await until(lambda: len(term.acks) == 2)
    assert term.acks == [5, 5]
    assert len(stored(cfg)) == 5
    (report,) = collector_report(configured(cfg.collector))["terminals"]
    assert report["duplicates"] == 5


async def test_gap_is_not_acknowledged_until_filled(
    broker: Mosquitto, tmp_path: Path, collector_db: CollectorDb
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1", db=collector_db)
    chain = make_chain("t1", 10)
    async with running(cfg), Terminal(broker.port, "t1") as term:
        await term.publish(chain[5:])
        await until(lambda: len(term.acks) == 1)
        assert term.acks == [0]
        (report,) = collector_report(configured(cfg.collector))["terminals"]
        assert report["gaps"] == [[1, 5]]
        await term.publish(chain[:5])
        await term.wait_ack(10)
    assert term.acks == [0, 10]


async def test_bad_payloads_are_quarantined_and_the_collector_keeps_working(
    broker: Mosquitto, tmp_path: Path, collector_db: CollectorDb
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1", db=collector_db)
    good = make_chain("t1", 3)
    tampered = make_chain("tbad", 2)
    tampered[1] = msgspec.structs.replace(
        tampered[1], sale=msgspec.Raw(bytes(tampered[1].sale).replace(b"1002", b"9"))
    )
    t1 = Topics(PREFIX, S, "t1").tx
    bad = [
        (t1, b"this is not json", "JSON is malformed"),
        (t1, b'{"v":1,"store":"s1","terminal":"t1","entries":"nope"}', "$.entries"),
        (
            t1,
            encode(TxBatch(v=2, store=S, terminal="t1", entries=good)),
            "unsupported version 2",
        ),
        (
            t1,
            b'{"v":1,"store":"s1","terminal":"t1","entries":[{"sale":'
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}]}",
            "nested too deeply",
        ),
        (
            Topics(PREFIX, S, "t9").tx,
            encode(TxBatch(v=1, store=S, terminal="t1", entries=good)),
            "topic says store 's1' terminal 't9'",
        ),
    ]
    with structlog.testing.capture_logs() as logs:
        async with (
            running(cfg) as task,
            Terminal(broker.port, "t1") as term,
            Terminal(broker.port, "tbad") as term_bad,
        ):
            for topic, payload, _ in bad:
                await term.publish_raw(topic, payload)
            await term_bad.publish(tampered)
            await until(lambda: len(term_bad.acks) == 1)
            await term.publish(good)
            await term.wait_ack(3)
            await until(lambda: len(quarantined_events(logs)) == len(bad))
            assert not task.done()
    for (topic, _, problem), event in zip(bad, quarantined_events(logs), strict=True):
        assert event["topic"] == topic
        assert problem in event["problem"], event
        assert event["log_level"] == "error"
    assert term_bad.acks == [2]  # seq 2 is no sale, but held in its slot: the stream goes on
    assert [(t, seq) for t, seq, _ in stored(cfg)] == [
        ("t1", 1),
        ("t1", 2),
        ("t1", 3),
        ("tbad", 1),
    ]
    problems = collector_report(configured(cfg.collector))["problems"]
    assert sorted((p["terminal_id"], p["seq"], p["kind"], p["count"]) for p in problems) == [
        *[("t1", 0, "quarantined", 1)] * 4,  # kept with its bytes, each once
        ("t9", 0, "quarantined", 1),
        ("tbad", 2, "bad_hash", 1),
    ]
    assert not [e for e in logs if e["event"] in ("component_failed", "collector_store_failed")]


def quarantined_events(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "tx_quarantined"]


async def test_messages_queued_while_away_arrive_after_restart(
    broker: Mosquitto, tmp_path: Path, collector_db: CollectorDb
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1", db=collector_db)
    chain = make_chain("t1", 6)
    async with Terminal(broker.port, "t1") as term:
        async with running(cfg):
            await term.publish(chain[:3])
            await term.wait_ack(3)
        await term.publish(chain[3:])  # the collector is away: its session queues this
        async with running(cfg):
            await term.wait_ack(6)
    assert term.acks == [3, 3, 6]  # at its restart it republishes its last ack first
    assert len(stored(cfg)) == 6


async def test_collector_reconnects_after_the_broker_restarts(
    broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1")
    chain = make_chain("t1", 6)
    async with running(cfg) as task:
        async with Terminal(broker.port, "t1") as term:
            await term.publish(chain[:3])
            await term.wait_ack(3)
        broker.stop()
        broker.start()  # no persistence: the collector must subscribe again
        async with Terminal(broker.port, "t1") as term:
            async with asyncio.timeout(WAIT_S):
                # It republishes ack 3 as it reconnects; 6 needs the resend on ack timeout, as
                # the terminal's pump does.
                while max(term.acks, default=0) < 6:
                    await term.publish(chain[3:])
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            await term.wait_ack(6)
        assert not task.done()
    assert max(term.acks) == 6
    assert len(stored(db_of(cfg))) == 6


async def test_shared_group_splits_the_load_without_duplicates(
    broker: Mosquitto, tmp_path: Path, collector_db: CollectorDb
) -> None:
    # One db shared by both: `upto` is a property of the whole stream of a terminal, and a
    # member sees only part of it; with separate dbs neither could ever acknowledge past a gap.
    # No shared_group in either config: sharing is the default.
    cfg_a = config(tmp_path, broker.port, client_id="ca", db=collector_db)
    cfg_b = config(tmp_path, broker.port, client_id="cb", db=collector_db)
    terminals = ["t1", "t2", "t3"]
    chains = {t: make_chain(t, 40) for t in terminals}
    async with running(cfg_a), running(cfg_b), contextlib.AsyncExitStack() as stack:
        terms = [await stack.enter_async_context(Terminal(broker.port, t)) for t in terminals]
        for i in range(0, 40, 5):
            for term in terms:
                await term.publish(chains[term.terminal][i : i + 5])
        for term in terms:
            await term.wait_ack(40)
    rows = stored(cfg_a)
    assert len(rows) == 120
    assert {by for _, _, by in rows} == {"ca", "cb"}  # both members took a share
    report = collector_report(configured(cfg_a.collector))
    assert [
        (t["terminal_id"], t["contiguous_upto"], t["duplicates"]) for t in report["terminals"]
    ] == [
        ("t1", 40, 0),
        ("t2", 40, 0),
        ("t3", 40, 0),
    ]


async def test_a_broker_without_shared_subscriptions_gets_a_plain_one(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The default shared group on a broker whose CONNACK says it has none: one warning, a
    plain subscription, and the collector stores and acknowledges as usual."""
    async with NoSharedProxy(broker.port) as proxy:
        cfg = config(tmp_path, proxy.port, client_id="c1")
        assert cfg.collector.group == "collectors"  # the default
        chain = make_chain("t1", 5)
        with structlog.testing.capture_logs() as logs:
            async with running(cfg), Terminal(broker.port, "t1") as term:
                await term.publish(chain)
                await term.wait_ack(5)
        assert proxy.rewritten >= 1
    warned = [e for e in logs if e["event"] == "collector_shared_unavailable"]
    assert [(e["shared_group"], e["log_level"]) for e in warned] == [("collectors", "warning")]
    subscribed = [e for e in logs if e["event"] == "collector_subscribed"]
    assert subscribed and subscribed[0]["shared_group"] is None
    assert subscribed[0]["filter"] == f"{PREFIX}/+/+/tx"
    assert [seq for _, seq, _ in stored(cfg)] == [1, 2, 3, 4, 5]


# The ACL of the admin README (docs: collector-readme.md), checked here against mosquitto.
ACL = """\
user edged-collector
topic read edged/v1/+/+/tx
topic write edged/v1/+/+/ack
topic read edged/v1/+/+/status
topic write edged/v1/+/+/resend
topic read edged/v1/+/+/resend_answer

user s1-t1
topic write edged/v1/s1/t1/tx
topic write edged/v1/s1/t1/status
topic read edged/v1/s1/t1/ack
topic read edged/v1/s1/t1/resend
topic write edged/v1/s1/t1/resend_answer
"""


@pytest.mark.parametrize("shared_group", ["", None])  # off, and the default (shared)
async def test_collector_authenticates_and_works_under_the_readme_acl(
    tmp_path: Path, shared_group: str | None
) -> None:
    passwords = tmp_path / "passwd"
    for user, password in (("edged-collector", "c-secret"), ("s1-t1", "t-secret")):
        subprocess.run(
            [
                "mosquitto_passwd",
                "-b",
                *(["-c"] if not passwords.exists() else []),
                str(passwords),
                user,
                password,
            ],
            check=True,
        )
    (tmp_path / "acl").write_text(ACL)
    (tmp_path / "collector.pw").write_text("c-secret\n")
    (tmp_path / "wrong.pw").write_text("nope\n")
    broker = Mosquitto(
        tmp_path,
        extra_conf=(
            f"allow_anonymous false\npassword_file {passwords}\nacl_file {tmp_path / 'acl'}\n"
        ),
    )
    broker.start()
    try:
        auth = 'username = "edged-collector"\npassword_file = "collector.pw"\n'
        cfg = config(
            tmp_path, broker.port, client_id="c1", shared_group=shared_group, uplink_extra=auth
        )
        chain = make_chain("t1", 3)
        async with (
            running(cfg),
            Terminal(broker.port, "t1", username="s1-t1", password="t-secret") as term,
        ):
            await term.publish(chain)
            await term.wait_ack(3)
            # Resend on demand under the same ACL: the store asks for 4..5, the till answers.
            more = make_chain("t1", 3, start=4, prev=bytes.fromhex(chain[-1].hash))
            await term.publish(more[2:])
            await until(lambda: [(r.from_, r.upto) for r in term.resends] == [(4, 5)])
            answer = ResendAnswer(v=1, from_=4, upto=5, retained_from=1, last_seq=6)
            await term._client.publish(term.topics.resend_answer, encode(answer), qos=1)
            await term.publish(more[:2])
            await term.wait_ack(6)
            db = db_of(cfg)
            await until(
                lambda: (
                    collector_report(cfg.collector.db)["terminals"][0]["rebuild"]["answered_at"]
                    is not None
                )
            )
            assert len(stored(db)) == 6
        bad = 'username = "edged-collector"\npassword_file = "wrong.pw"\n'
        cfg_bad = config(tmp_path, broker.port, client_id="c2", db="other.db", uplink_extra=bad)
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(run_collector(cfg_bad), name="collector wrong password")
            try:
                await until(lambda: any(e["event"] == "collector_link_down" for e in logs))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        (down, *_) = [e for e in logs if e["event"] == "collector_link_down"]
        assert down["log_level"] == "warning"
        assert "authori" in down["error"].lower(), down
    finally:
        broker.stop()


async def start_collector_process(config_path: Path) -> asyncio.subprocess.Process:
    """`edged collector` as systemd runs it; returns once it is subscribed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edged.cli",
        "collector",
        "--config",
        str(config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT_S):
        while b"collector_subscribed" not in (line := await proc.stdout.readline()):
            if not line:
                raise AssertionError(f"collector exited with {await proc.wait()}")
    return proc


async def drain_output(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while await proc.stdout.readline():
        pass


async def test_collector_killed_between_commit_and_ack_loses_and_duplicates_nothing(
    broker: Mosquitto, tmp_path: Path, collector_db: CollectorDb
) -> None:
    chain = make_chain("t1", 10)
    async with FaultProxy(broker.port) as proxy, Terminal(broker.port, "t1") as term:
        config_path = write_config(
            tmp_path, proxy.port, client_id="store-collector", db=collector_db
        )
        first = await start_collector_process(config_path)
        output = asyncio.create_task(drain_output(first), name="collector output")
        try:
            await term.publish(chain[:5])
            await term.wait_ack(5)
            # From now on nothing the collector sends reaches the broker: neither its PUBACK
            # nor its ack. It still receives, and it commits.
            await proxy.set_mode("drop_upstream")
            await term.publish(chain[5:])
            await until(lambda: len(stored(collector_db)) == 10)
        finally:
            first.kill()
            await first.wait()
            await output
        assert term.acks == [5]  # committed, but the terminal was never told
        await proxy.set_mode("pass")
        second = await start_collector_process(config_path)
        output = asyncio.create_task(drain_output(second), name="collector output")
        try:
            # No resend from the terminal: the broker redelivers the un-PUBACKed batch from
            # the collector's persistent session, the store absorbs it, the ack follows (after
            # the ack it republishes as it connects).
            await until(lambda: term.acks.count(10) == 2)
        finally:
            second.terminate()
            assert await second.wait() == 0  # SIGTERM: a clean exit
            await output
    assert term.acks == [5, 10, 10]  # republished as it connects, then for the redelivery
    assert [seq for _, seq, _ in stored(collector_db)] == list(range(1, 11))
    (report,) = collector_report(collector_db.target)["terminals"]
    assert report["duplicates"] == 5
    assert report["contiguous_upto"] == 10


async def test_broker_keeps_the_batch_until_the_collector_has_committed(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The PUBACK waits for the commit: a crash before it leaves the batch with the broker."""
    chain = make_chain("t1", 10)
    async with FaultProxy(broker.port) as proxy, Terminal(broker.port, "t1") as term:
        cfg = config(tmp_path, proxy.port, client_id="store-collector")
        with contextlib.closing(sqlite3.connect(db_of(cfg), isolation_level=None)) as blocker:
            async with running(cfg):
                await term.publish(chain[:5])
                await term.wait_ack(5)
                blocker.execute("BEGIN IMMEDIATE")  # the collector's next commit must wait
                with structlog.testing.capture_logs() as logs:
                    await term.publish(chain[5:])
                    await until(lambda: any(e["event"] == "tx_group_received" for e in logs))
                # Time for a collector that PUBACKs on receipt to do so (it would fail below).
                await asyncio.sleep(PUBACK_SETTLE_S)
                await proxy.set_mode("reset")  # the connection dies as in a crash
                blocker.execute("ROLLBACK")
            assert term.acks == [5]
        await proxy.set_mode("pass")
        async with running(cfg):
            await term.wait_ack(10)  # redelivered by the broker, not resent by the terminal
    assert [seq for _, seq, _ in stored(db_of(cfg))] == list(range(1, 11))


@pytest.mark.parametrize(
    ("group_max_bytes", "groups"),
    [(None, [1, 1, 4]), (1, [1, 1, 1, 1, 1, 1])],  # the default; one message a transaction
)
async def test_the_next_group_waits_for_the_commit_before_it(
    broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    group_max_bytes: int | None,
    groups: list[int],
) -> None:
    """A group that arrives while the one before is being stored is decoded and verified
    meanwhile, but stored and acknowledged only after that commit; what arrives during the
    wait joins it, up to GROUP_MAX_BYTES of payloads."""
    if group_max_bytes is not None:
        monkeypatch.setattr(service_module, "GROUP_MAX_BYTES", group_max_bytes)
    cfg = config(tmp_path, broker.port, client_id="c1")
    chain = make_chain("t1", 30)
    with (
        structlog.testing.capture_logs() as logs,
        contextlib.closing(sqlite3.connect(db_of(cfg), isolation_level=None)) as blocker,
    ):
        async with running(cfg), Terminal(broker.port, "t1") as term:
            await term.publish(chain[:5])
            await term.wait_ack(5)
            blocker.execute("BEGIN IMMEDIATE")  # the next commit waits for this writer
            await term.publish(chain[5:10])
            await until(lambda: len(group_sizes(logs)) == 2)
            for start in range(10, 30, 5):
                await term.publish(chain[start : start + 5])
            await asyncio.sleep(PUBACK_SETTLE_S)
            assert term.acks == [5]  # nothing acknowledged before its own commit
            assert [seq for _, seq, _ in stored(db_of(cfg))] == list(range(1, 6))
            blocker.execute("ROLLBACK")
            await term.wait_ack(30)
    assert group_sizes(logs) == groups
    assert [seq for _, seq, _ in stored(db_of(cfg))] == list(range(1, 31))


def group_sizes(logs: list[MutableMapping[str, Any]]) -> list[int]:
    return [e["messages"] for e in logs if e["event"] == "tx_group_received"]


async def test_store_failure_is_retried_and_the_batch_redelivered(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema_module, "BUSY_TIMEOUT_MS", 100)
    cfg = config(tmp_path, broker.port, client_id="c1")
    chain = make_chain("t1", 4)
    with (
        structlog.testing.capture_logs() as logs,
        contextlib.closing(sqlite3.connect(db_of(cfg), isolation_level=None)) as blocker,
    ):
        async with running(cfg) as task, Terminal(broker.port, "t1") as term:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the db: commits fail
            await term.publish(chain)
            await until(lambda: any(e["event"] == "collector_store_failed" for e in logs))
            blocker.execute("ROLLBACK")
            await term.wait_ack(4)  # the broker redelivered after the reconnect
            assert not task.done()
    failed = [e for e in logs if e["event"] == "collector_store_failed"]
    assert failed[0]["log_level"] == "error"
    assert "database is locked" in failed[0]["error"]
    assert len(stored(db_of(cfg))) == 4


@pytest.mark.parametrize("seed", [1, 2])
async def test_collector_killed_at_random_moments_loses_and_duplicates_nothing(
    broker: Mosquitto, tmp_path: Path, collector_db: CollectorDb, seed: int
) -> None:
    rng = random.Random(seed)
    n_batches, per_batch, window = 30, 4, 3
    chain = make_chain("t1", n_batches * per_batch)
    # Everything needs at least n_batches / window rounds, so these kills all happen.
    kill_rounds = set(rng.sample(range(1, n_batches // window - 1), 3))
    config_path = write_config(tmp_path, broker.port, client_id="store-collector", db=collector_db)
    async with Terminal(broker.port, "t1") as term:
        proc = await start_collector_process(config_path)
        output = asyncio.create_task(drain_output(proc), name="collector output")
        kills = 0
        try:
            for round_no in itertools.count():
                acked = max(term.acks, default=0)
                if acked == len(chain):
                    break
                # A terminal's pump: a window of batches after the last ack, all resent when
                # no ack comes in time (a crude stand-in for the uplink's ack timeout).
                for start in range(acked, min(len(chain), acked + window * per_batch), per_batch):
                    await term.publish(chain[start : start + per_batch])
                if round_no in kill_rounds:
                    await asyncio.sleep(rng.uniform(0, 0.03))
                    proc.kill()
                    await proc.wait()
                    await output
                    kills += 1
                    proc = await start_collector_process(config_path)
                    output = asyncio.create_task(drain_output(proc), name="collector output")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ROUND_ACK_TIMEOUT_S):
                        await until(lambda a=acked: max(term.acks, default=0) > a)  # type: ignore[misc]
        finally:
            proc.kill()
            await proc.wait()
            await output
    assert kills == 3
    assert [seq for _, seq, _ in stored(collector_db)] == list(range(1, len(chain) + 1))
    (report,) = collector_report(collector_db.target)["terminals"]
    assert report["contiguous_upto"] == len(chain)
    assert report["problems"] == 0

"""Store-side faults on a real broker: a poison message; the database deleted or replaced."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import structlog

from edged.collector import CollectorStore
from edged.wire import Topics
from tests.integration.test_collector import (
    PREFIX,
    S,
    Terminal,
    config,
    db_of,
    make_chain,
    running,
    start_collector_process,
    stored,
    write_config,
)
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import until

EX_IOERR = 74
EXIT_WAIT_S = 20.0


def poison_payload() -> bytes:
    """A tx batch of terminal tp whose seq no SQLite INTEGER can hold."""
    entry = make_chain("tp", 1)[0]
    fields = {
        "seq": 2**63,
        "id": entry.id,
        "receipt_no": entry.receipt_no,
        "created_at": entry.created_at,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        "sale": json.loads(bytes(entry.sale)),
    }
    return json.dumps({"v": 1, "store": S, "terminal": "tp", "entries": [fields]}).encode()


def quarantine_counts(db_path: str) -> list[tuple[str, int]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT terminal_id, count FROM problems WHERE kind = 'quarantined'"
        ).fetchall()


async def test_poison_message_is_quarantined_once_and_every_other_terminal_is_acknowledged(
    broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1")
    chains = {t: make_chain(t, 6) for t in ("t1", "t2")}
    with structlog.testing.capture_logs() as logs:
        async with Terminal(broker.port, "t1") as t1, Terminal(broker.port, "t2") as t2:
            async with running(cfg):
                pass  # the session exists: what comes next waits for the collector
            await t1.publish(chains["t1"][:3])
            await t1.publish_raw(Topics(PREFIX, S, "tp").tx, poison_payload())
            await t2.publish(chains["t2"][:3])
            async with running(cfg) as task:  # all three arrive at once
                await t1.wait_ack(3)
                await t2.wait_ack(3)
                await until(lambda: quarantine_counts(db_of(cfg)) == [("tp", 1)], "quarantined")
                assert not task.done()
            # Settled (PUBACKed) with its group: a restarted collector does not get it again.
            async with running(cfg):
                await t1.publish(chains["t1"][3:])
                await t1.wait_ack(6)
    assert quarantine_counts(db_of(cfg)) == [("tp", 1)]
    assert [seq for t, seq, _ in stored(db_of(cfg)) if t == "tp"] == []
    (event,) = [e for e in logs if e["event"] == "tx_quarantined"]
    assert "$.entries[0].seq" in event["problem"], event
    failures = [e for e in logs if e["event"] in ("component_failed", "collector_store_failed")]
    assert failures == []  # the collector never restarted


class Collector:
    """`edged collector` as a child process, its output kept for the assertions."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output: list[str] = []
        self._reader = asyncio.create_task(self._read(), name="collector output")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.output.append(line.decode(errors="replace"))

    async def exit_status(self) -> int:
        async with asyncio.timeout(EXIT_WAIT_S):
            status = await self.proc.wait()
            await self._reader
        return status

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.exit_status()


async def edged_collector(config_path: Path, *args: str) -> tuple[int, str]:
    """`edged collector --config FILE ARGS` to its end: exit status and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edged.cli",
        "collector",
        "--config",
        str(config_path),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(EXIT_WAIT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(f"edged collector {args} did not end: {out.decode()}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def replace_with_another_db(db_path: str, tmp_path: Path) -> None:
    """Move the database aside and put another (valid, empty) collector database there."""
    os.rename(db_path, db_path + ".moved")
    other = tmp_path / "other"
    other.mkdir()
    CollectorStore.open(str(other / "c.db")).close()
    shutil.copy(other / "c.db", db_path)


async def check_db_swap(broker: Mosquitto, tmp_path: Path, how: str) -> None:
    config_path = write_config(tmp_path, broker.port, client_id="store-collector")
    db_path = str(tmp_path / "collector.db")
    chain = make_chain("t1", 6)
    async with Terminal(broker.port, "t1") as term:
        collector = Collector(await start_collector_process(config_path))
        try:
            await term.publish(chain[:3])
            await term.wait_ack(3)
            if how == "deleted":
                os.unlink(db_path)
            else:
                replace_with_another_db(db_path, tmp_path)
            await term.publish(chain[3:])
            assert await collector.exit_status() == EX_IOERR, "".join(collector.output)
        finally:
            await collector.stop()
        assert term.acks == [3]  # nothing acknowledged after the swap
        output = "".join(collector.output)
        assert "collector_db_changed" in output and "while the collector was running" in output
        # systemd (or an admin) starts it again: it refuses rather than start on an empty db.
        status, output = await edged_collector(config_path)
        assert status == EX_IOERR, output
        assert ("is missing" if how == "deleted" else "was replaced") in output, output
        status, output = await edged_collector(config_path, "init")
        assert status == 0, output
        collector = Collector(await start_collector_process(config_path))
        try:
            await term.publish(chain)  # the terminal resends what was not acknowledged
            await term.wait_ack(6)
        finally:
            await collector.stop()
    assert [seq for _, seq, _ in stored(db_path)] == list(range(1, 7))


async def test_database_deleted_while_running_stops_acks_and_exits_74(
    broker: Mosquitto, tmp_path: Path
) -> None:
    await check_db_swap(broker, tmp_path, "deleted")


async def test_database_replaced_while_running_stops_acks_and_exits_74(
    broker: Mosquitto, tmp_path: Path
) -> None:
    await check_db_swap(broker, tmp_path, "replaced")

"""`edgectl journal adopt` as a technician runs it: the real command, collector and broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edged.keys import collector_key_path, read_public
from tests.integration.test_trust_no_one import (
    acked,
    collector_cli,
    commit,
    query,
    status,
    stop,
)
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.waiting import until_awaited

EDGECTL = str(Path(sys.executable).with_name("edgectl"))


def adopt(till: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGECTL, "--config", str(till.config), "journal", "adopt", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


async def pending_till(workdir: Path, terminal: str, sales: int, port: int) -> DaemonProcess:
    """A till with a new journal that never reached the store: `sales` provisional entries,
    then stopped, its config pointed at the broker on `port`."""
    nowhere = free_port()
    till = DaemonProcess(workdir, terminal=terminal, uplink=uplink_section(nowhere))
    till.start()
    try:
        await commit(till.socket, sales)
        assert (await status(till.socket))["journal"]["adoption"] == "pending"
        refused = adopt(till, "--wait", "1")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "edged is running" in refused.stderr
    finally:
        till.terminate()
    till.config.write_text(till.config.read_text().replace(f"port = {nowhere}", f"port = {port}"))
    return till


async def test_a_technician_adopts_the_stores_seqs_then_the_till_goes_on(
    broker: Mosquitto, tmp_path: Path
) -> None:
    collector = CollectorProcess(tmp_path / "store", uplink_section(broker.port))
    old = DaemonProcess(tmp_path / "old-till", uplink=uplink_section(broker.port))
    new = await pending_till(tmp_path / "new-till", "T1", 2, broker.port)
    stranger = await pending_till(tmp_path / "other-till", "T2", 1, broker.port)
    collector.start()
    old.start()
    try:
        await commit(old.socket, 3)
        await until_awaited(lambda: acked(old, 3), "the old till acknowledged")
        old.terminate()  # its disk is replaced: `new` is its successor

        done = adopt(new, "--wait", "20")
        assert done.returncode == 0, done.stdout + done.stderr
        collector_key = read_public(collector_key_path(collector.db))
        assert f"pinned the collector key {collector_key}" in done.stdout
        assert (
            "adopted: seqs 1..3 are the store's (the till this one replaced); seq 4 records it, "
            "2 provisional entries were renumbered after it; the next sale is seq 7"
        ) in done.stdout
        again = adopt(new, "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        assert '"adoption": "adopted"' in again.stdout

        nothing = adopt(stranger, "--wait", "1")  # T2 has no history at the store
        assert nothing.returncode == 1, nothing.stdout + nothing.stderr
        assert "no ack of the store on edged/v1/S1/T2/ack within 1 s" in nothing.stderr
        assert "start edged, its journal keeps its seqs" in nothing.stderr

        new.start()
        forgot = collector_cli(collector, "keys", "forget", "S1", "T1")  # the new till's key
        assert forgot.returncode == 0, forgot.stderr
        await until_awaited(lambda: acked(new, 6), "the adopted journal acknowledged")
        assert (await status(new.socket))["journal"]["adoption"] is None
    finally:
        stop(new, old, collector)
    stored = query(collector.db, "SELECT seq FROM transactions ORDER BY seq")
    assert [seq for (seq,) in stored] == [1, 2, 3, 5, 6]
    assert query(collector.db, "SELECT seq, kind FROM held") == [(4, "journal_gap")]
    assert query(collector.db, "SELECT kind FROM problems WHERE kind = 'seq_conflict'") == []
    verify = subprocess.run(
        [EDGECTL, "--config", str(new.config), "journal", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "adopted: seqs 1..3 are the store's" in verify.stdout

"""edged benchmarks: each scenario next to the raw baselines it is compared with, in one run.

Prints one JSON object per line: scenario, metric, value, unit, and for comparisons baseline
and ratio. Shared machines are noisy: compare ratios across commits, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_devices as dev
import bench_refdata
import fleet

from edged.carddata import find_card_data
from edged.chain import GENESIS_HASH
from edged.client import ApiClient
from edged.collector.store import Batch, CollectorStore
from edged.log import configure as configure_logging
from edged.sim.printer import SimPrinter
from tests.support.collectordb import (
    BACKENDS,
    CollectorDb,
    fresh_collector_db,
    postgres_unavailable,
)
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.entries import make_chain
from tests.support.flood import flood_connect, rss_mib
from tests.support.mosquitto import Mosquitto
from tests.support.sales import uuid7

SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], Awaitable[None]]] = {}
SALE_IDS = "v7"  # the kind of sale ids the bench's UI clients choose (`--ids`)
NEW_SALE_ID: dict[str, Callable[[], str]] = {"v4": lambda: str(uuid.uuid4()), "v7": uuid7}


def scenario(func: Callable[[argparse.Namespace, Path], Awaitable[None]]) -> Any:
    SCENARIOS[func.__name__] = func
    return func


def emit(name: str, metric: str, value: float, unit: str, baseline: float | None = None) -> None:
    row: dict[str, Any] = {
        "scenario": name,
        "metric": metric,
        "value": round(value, 4),
        "unit": unit,
    }
    if baseline is not None:
        row["baseline"] = round(baseline, 4)
        row["ratio"] = round(value / baseline, 3) if baseline else None
    print(json.dumps(row), flush=True)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sale_id() -> str:
    """A sale id that edged accepts, as `--ids` says: a UUIDv7 (time-ordered, as the README's
    `sale.commit` advises) or a random UUIDv4. About one in 40,000 random ones holds a digit
    run that passes as a card number (refused, as it should be): those are drawn again."""
    while find_card_data(found := NEW_SALE_ID[SALE_IDS]()) is not None:
        pass
    return found


def sale(total: int = 1299) -> dict[str, Any]:
    return {
        "id": sale_id(),
        "currency": "EUR",
        "total": total,
        "lines": [
            {"sku": "4006381333931", "qty": 1, "amount": 999, "unit_price": 999, "name": "Tea"},
            {"sku": "BANANA", "qty": "0.350", "amount": 300, "name": "Bananas"},
        ],
        "payments": [{"method": "cash", "amount": total}],
        "meta": {"cashier": "anna", "ui": "bench"},
    }


def sqlite_commit_latencies(path: Path, n: int) -> list[float]:
    """Baseline: one ~500-byte row per transaction, WAL, synchronous=FULL, same disk."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    body = json.dumps(sale())
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.execute("INSERT INTO t (body) VALUES (?)", (body,))
        out.append(time.perf_counter() - t0)
    conn.close()
    return out


ECHO_SERVER = """
import asyncio, sys
async def handle(r, w):
    while line := await r.readline():
        w.write(line)
        await w.drain()
async def main():
    server = await asyncio.start_unix_server(handle, sys.argv[1], limit=1 << 21)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


async def echo_latencies(path: Path, n: int) -> list[float]:
    """Baseline: newline JSON echo over a Unix socket to an asyncio server in another process."""
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        reader, writer = await asyncio.open_unix_connection(str(path))
        line = (
            json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "sale.commit", "params": {"sale": sale()}}
            ).encode()
            + b"\n"
        )
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            writer.write(line)
            json.loads(await reader.readline())
            out.append(time.perf_counter() - t0)
        writer.close()
        return out
    finally:
        proc.kill()
        proc.wait()


# structlog imports rich (and rich pygments) when they are importable; they come into the
# development venv only with the test tools (import-linter, pytest), not with edged. The
# daemons the bench starts import them as they would on a till: not at all.
NOT_SHIPPED = ("rich", "pygments")


def ship_daemons_as_installed(work: Path) -> None:
    """Make the daemons this process starts fail to import NOT_SHIPPED (through PYTHONPATH)."""
    stubs = work / "not-shipped"
    stubs.mkdir()
    for name in NOT_SHIPPED:
        (stubs / f"{name}.py").write_text(
            f"raise ImportError('{name} is not installed with edged')\n"
        )
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(stubs), os.environ.get("PYTHONPATH")])
    )


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_rss_with_test_tools(work: Path) -> None:
    """The idle RSS of a daemon that may import NOT_SHIPPED, as in the development venv."""
    shipped = os.environ["PYTHONPATH"]
    os.environ["PYTHONPATH"] = os.pathsep.join(shipped.split(os.pathsep)[1:])
    daemon = DaemonProcess(work)
    try:
        daemon.start()
        assert daemon.proc is not None
        await asyncio.sleep(0.5)
        emit("startup", "idle_rss_with_test_tools", rss_mib(daemon.proc.pid), "MiB")
    finally:
        os.environ["PYTHONPATH"] = shipped
        daemon.terminate()


@scenario
async def commit(args: argparse.Namespace, work: Path) -> None:
    """sale.commit over the socket: sequential p50/p99 and 8-client throughput vs baselines."""
    n = 300 if args.quick else 2000
    sqlite_lat = sqlite_commit_latencies(work / "baseline.db", n)
    echo_lat = await echo_latencies(work / "echo.sock", n)
    daemon = DaemonProcess(work / "d1")
    t0 = time.perf_counter()
    daemon.start()
    ready_s = time.perf_counter() - t0
    assert daemon.proc is not None
    try:
        await asyncio.sleep(0.5)
        emit("startup", "idle_rss", rss_mib(daemon.proc.pid), "MiB")
        emit("startup", "start_to_ready", ready_s, "s")
        await idle_rss_with_test_tools(work / "d0")
        async with ApiClient(daemon.socket) as client:
            for _ in range(50):
                await client.call("sale.commit", {"sale": sale()})
            lat = []
            for _ in range(n):
                s = sale()
                t = time.perf_counter()
                await client.call("sale.commit", {"sale": s})
                lat.append(time.perf_counter() - t)
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            base = pct(sqlite_lat, q) + pct(echo_lat, q)
            emit("commit_sequential", f"{label}_latency", pct(lat, q) * 1e3, "ms", base * 1e3)
            emit("baseline", f"sqlite_full_commit_{label}", pct(sqlite_lat, q) * 1e3, "ms")
            emit("baseline", f"unix_socket_echo_{label}", pct(echo_lat, q) * 1e3, "ms")

        clients, per_client = 8, (150 if args.quick else 1000)

        async def one_client() -> None:
            async with ApiClient(daemon.socket) as c:
                for _ in range(per_client):
                    await c.call("sale.commit", {"sale": sale()})

        before = (await status_of(daemon.socket))["journal"]["sale_transactions"]
        t = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        rate = clients * per_client / (time.perf_counter() - t)
        after = (await status_of(daemon.socket))["journal"]["sale_transactions"]
        one_fsync_each = 1 / statistics.median(sqlite_lat)
        emit("commit_8_clients", "throughput", rate, "commits/s", one_fsync_each)
        emit(
            "commit_8_clients",
            "commits_per_fsync",
            clients * per_client / (after - before),
            "commits",
        )
    finally:
        daemon.terminate()


async def commit_backlog(path: str, count: int, clients: int = 8) -> None:
    async def one(n: int) -> None:
        async with ApiClient(path) as c:
            for _ in range(n):
                await c.call("sale.commit", {"sale": sale()})

    await asyncio.gather(*(one(count // clients) for _ in range(clients)))


async def wait_status(path: str, check: Callable[[dict[str, Any]], bool], timeout_s: float) -> None:
    async with ApiClient(path) as c, asyncio.timeout(timeout_s):
        while not check(await c.call("status")):
            await asyncio.sleep(0.02)


async def wait_drained(path: str, timeout_s: float) -> None:
    """Until the daemon's outbox is empty, told by its `outbox` events (the last one of a drain
    always comes): no status polling competing with the drain for the till's CPU."""
    async with ApiClient(path) as c, asyncio.timeout(timeout_s):
        await c.call("subscribe", {"events": ["outbox"]})
        if (await c.call("status"))["outbox"]["pending"] == 0:
            return
        async for event in c.events():
            if event["data"]["pending"] == 0:
                return


def raw_qos1_rate(port: int, payload: bytes, count: int) -> float:
    """Baseline: paho publishing `count` QoS 1 messages, one sale each, until all PUBACKed."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw")
    client.max_inflight_messages_set(0)  # no paho limit; measured fastest in reference/mqtt.md
    client.max_queued_messages_set(0)
    done = threading.Event()
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == count:
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    t = time.perf_counter()
    for _ in range(count):
        client.publish("bench/raw", payload, qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - t
    client.loop_stop()
    client.disconnect()
    return count / elapsed


def one_entry_payload(journal: str) -> bytes:
    """A real tx payload holding one journal entry, as the terminal would send it alone."""
    with sqlite3.connect(journal) as conn:
        seq, sale_id, receipt_no, created_at, body, prev_hash, digest = conn.execute(
            "SELECT seq, id, receipt_no, created_at, sale, prev_hash, hash FROM entries LIMIT 1"
        ).fetchone()
    entry = {
        "seq": seq,
        "id": sale_id,
        "receipt_no": receipt_no,
        "created_at": created_at,
        "prev_hash": prev_hash.hex(),
        "hash": digest.hex(),
        "sale": json.loads(body),
    }
    return json.dumps({"v": 1, "store": "S1", "terminal": "T1", "entries": [entry]}).encode()


@scenario
async def drain(args: argparse.Namespace, work: Path) -> None:
    """A backlog drained through mosquitto and the collector, acknowledged, vs raw QoS 1; once
    per collector database (`--db`), each from a copy of the same backlog."""
    count = 10_000 if args.quick else 100_000
    offline = DaemonProcess(work / "till")  # builds the backlog with no uplink configured
    offline.start()
    t = time.perf_counter()
    await commit_backlog(offline.socket, count)
    emit("backlog", "commit_8_clients_pipelined", count / (time.perf_counter() - t), "sales/s")
    offline.terminate()
    for backend in args.db:
        if backend == "postgresql" and (reason := postgres_unavailable()) is not None:
            print(f"drain on postgresql skipped: {reason}", file=sys.stderr)
            continue
        till = work / f"till-{backend}"
        shutil.copytree(work / "till", till, ignore=shutil.ignore_patterns("notify-*"))
        # A broker of its own: the other run's retained acks are signed by another collector.
        broker = Mosquitto(work)
        broker.start()
        try:
            with fresh_collector_db(backend, work / f"store-{backend}") as db:
                await drain_into(backend, db, till, uplink_section(broker.port), broker.port, count)
        finally:
            broker.stop()


async def drain_into(
    backend: str, db: CollectorDb, till: Path, uplink: str, port: int, count: int
) -> None:
    """One drain of the backlog in `till` into the collector database `db`."""
    collector = CollectorProcess(db.target_dir, uplink, db_lines=db.config_lines)
    collector.start()
    try:
        daemon = DaemonProcess(till, uplink=uplink)
        daemon.start()
        t = time.perf_counter()
        await wait_drained(daemon.socket, 900)
        rate = count / (time.perf_counter() - t)
        payload = one_entry_payload(daemon.journal)
        raw = await asyncio.to_thread(raw_qos1_rate, port, payload, min(count, 50_000))
        emit(f"drain_{backend}", "acked_throughput", rate, "sales/s", raw)
        emit(f"baseline_{backend}", "raw_qos1_one_sale_per_message", raw, "msgs/s")
        ((stored,),) = db.query("SELECT count(*) FROM transactions")
        emit(f"drain_{backend}", "stored_at_collector", stored, "sales")
        daemon.terminate()
    finally:
        collector.terminate()


class RssSampler:
    """Peak RSS of a process, sampled every 20 ms in a thread while a flood runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@scenario
async def api_flood(args: argparse.Namespace, work: Path) -> None:
    """edged's RSS with hostile clients, before, during and after: 600 connections holding
    1 MiB without a newline, 15 rounds of 100 of them, 3,000 idle connections."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    daemon = DaemonProcess(work / "d")
    daemon.start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    try:
        await asyncio.sleep(1.0)
        idle = rss_mib(pid)
        emit("api_flood", "idle_rss", idle, "MiB")
        floods = [("partial_600x1MiB", 600, 1 << 20, 1)]
        floods.append(("partial_15_rounds_100x1MiB", 100, 1 << 20, 3 if args.quick else 15))
        floods.append(("idle_3000", 3000, 0, 1))
        for name, count, partial, rounds in floods:
            lines_before = len(daemon.log.read_bytes().splitlines())
            t = time.perf_counter()
            with RssSampler(pid) as sampler:
                for _ in range(rounds):
                    socks = await asyncio.to_thread(flood_connect, daemon.socket, count, partial)
                    await asyncio.sleep(0.5)
                    for s in socks:
                        s.close()
            emit(name, "flood_s", time.perf_counter() - t, "s")
            emit(name, "peak_rss", sampler.peak, "MiB", idle)
            await asyncio.sleep(2.0)  # the daemon trims 1 s after the flood
            emit(name, "rss_after", rss_mib(pid), "MiB", idle)
            status = await status_of(daemon.socket)
            emit(name, "status_after", 1.0 if "journal" in status else 0.0, "ok")
            text = daemon.log.read_bytes().splitlines()[lines_before:]
            emit(name, "log_lines", len(text), "lines")
            emit(name, "tracebacks", sum(b"Traceback" in line for line in text), "lines")
    finally:
        daemon.terminate()


@scenario
async def reconnect(args: argparse.Namespace, work: Path) -> None:
    """Broker killed and restarted on the same port: time from restart to the first ack."""
    broker = Mosquitto(work)
    broker.start()
    uplink = uplink_section(broker.port)
    collector = CollectorProcess(work / "store", uplink)
    collector.start()
    daemon = DaemonProcess(work / "till", uplink=uplink)
    daemon.start()
    rounds = 2 if args.quick else 5
    try:
        for outage_s in [1.0, 5.0][:rounds] + [2.0] * max(0, rounds - 2):
            await wait_status(daemon.socket, lambda s: s["outbox"]["pending"] == 0, 60)
            broker.stop()
            await commit_backlog(daemon.socket, 16, clients=2)
            await asyncio.sleep(outage_s)
            target = (await status_of(daemon.socket))["journal"]["last_seq"]
            broker.start()
            t = time.perf_counter()
            await wait_status(
                daemon.socket, lambda s, first=target - 15: s["outbox"]["acked_upto"] >= first, 60
            )
            emit(
                "reconnect",
                f"restart_to_first_ack_after_{outage_s:g}s_outage",
                time.perf_counter() - t,
                "s",
            )
    finally:
        daemon.terminate()
        collector.terminate()
        broker.stop()


QUANTILES = ((0.5, "p50"), (0.99, "p99"), (1.0, "max"))
SCAN_TARGET_S = 0.005  # issue 4: a scan is an event within 5 ms of its last byte
WARMUP = 20


def within(samples: list[float], limit_s: float) -> float:
    return 100 * sum(s <= limit_s for s in samples) / len(samples)


@scenario
async def scan_latency(args: argparse.Namespace, work: Path) -> None:
    """Scan bytes written -> scan delivered: the serial driver alone, and the whole daemon
    (`sim.scan` sent -> `scanner.scan` event) vs the raw pty (+ a socket echo)."""
    n = 200 if args.quick else 1000
    codes = [dev.ean13(i) for i in range(WARMUP + n)]
    frames = [dev.scan_frame(code) for code in codes]
    raw = dev.pty_latencies(frames)[WARMUP:]
    loop_raw = (await dev.asyncio_pty_latencies(frames))[WARMUP:]
    echo_lat = await echo_latencies(work / "echo.sock", n)
    driver = (await dev.driver_scan_latencies(work, codes))[WARMUP:]
    daemon = dev.scanner_daemon(work / "till")
    daemon.start()
    try:
        events, answers = await dev.daemon_scan_latencies(daemon.socket, codes)
    finally:
        daemon.terminate()
    events, answers = events[WARMUP:], answers[WARMUP:]
    for q, label in QUANTILES:
        emit("scan_driver", f"{label}_latency", pct(driver, q) * 1e3, "ms", pct(raw, q) * 1e3)
        base = pct(raw, q) + pct(echo_lat, q)
        emit("scan_daemon", f"{label}_latency", pct(events, q) * 1e3, "ms", base * 1e3)
        emit("baseline", f"pty_write_read_{label}", pct(raw, q) * 1e3, "ms")
        emit("baseline", f"pty_asyncio_reader_{label}", pct(loop_raw, q) * 1e3, "ms")
        emit("baseline", f"unix_socket_echo_{label}", pct(echo_lat, q) * 1e3, "ms")
    emit("scan_daemon", "sim_scan_answered_p50", pct(answers, 0.5) * 1e3, "ms")
    emit("scan_driver", "within_5ms", within(driver, SCAN_TARGET_S), "%")
    emit("scan_daemon", "within_5ms", within(events, SCAN_TARGET_S), "%")


@scenario
async def print_run(args: argparse.Namespace, work: Path) -> None:
    """Receipts of committed sales through the daemon's ESC/POS driver to the simulated
    printer on a pty, one after another and all at once, each until the printer confirmed it
    (GS r); checked at the printer and in the journal. Baselines: the receipt's bytes through
    a bare pty and back, the simulator's own work, three durable commits (the job queued,
    sending, printed) and a socket echo."""
    n = 200
    sqlite_lat = sqlite_commit_latencies(work / "baseline.db", n)
    echo_lat = await echo_latencies(work / "echo.sock", n)
    link = work / "printer"
    async with SimPrinter.start(link) as sim:
        daemon = dev.printer_daemon(work / "till", str(link))
        daemon.start()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        try:
            async with ApiClient(daemon.socket) as client:
                await dev.until_ready(client, "printer")
                sales = [sale() for _ in range(2 * n)]
                receipt_nos = [
                    (await client.call("sale.commit", {"sale": s}))["receipt_no"] for s in sales
                ]
                ids = [s["id"] for s in sales]
                t, cpu = time.perf_counter(), cpu_s(pid)
                one_by_one = await dev.print_sequential(client, ids[:n])
                one_by_one_rate = n / (time.perf_counter() - t)
                one_by_one_cpu = (cpu_s(pid) - cpu) / n
            t, cpu = time.perf_counter(), cpu_s(pid)
            at_once = await dev.print_burst(daemon.socket, ids[n:])
            at_once_rate = n / (time.perf_counter() - t)
            at_once_cpu = (cpu_s(pid) - cpu) / n
        finally:
            daemon.terminate()
        jobs = dev.job_rows(daemon.journal)
        dev.check_printed(sim, jobs, receipt_nos)
        printed, copies = len(sim.receipts), sum("COPY" in r.text for r in sim.receipts)
    payloads = dev.rendered_receipts(daemon.journal)
    pty = dev.pty_receipt_latencies(payloads)
    parse = dev.sim_receipt_latencies(payloads)

    def base(q: float) -> float:
        """The receipt through a bare pty, the printer's work, 3 durable commits, the API."""
        return pct(pty, q) + pct(parse, q) + 3 * pct(sqlite_lat, q) + pct(echo_lat, q)

    for q, label in QUANTILES:
        emit("print_one_by_one", f"{label}_latency", pct(one_by_one, q) * 1e3, "ms", base(q) * 1e3)
        emit("print_all_at_once", f"{label}_latency", pct(at_once, q) * 1e3, "ms")
        emit("baseline", f"pty_receipt_round_trip_{label}", pct(pty, q) * 1e3, "ms")
        emit("baseline", f"sim_printer_work_{label}", pct(parse, q) * 1e3, "ms")
        emit("baseline", f"sqlite_full_commit_{label}", pct(sqlite_lat, q) * 1e3, "ms")
        emit("baseline", f"unix_socket_echo_{label}", pct(echo_lat, q) * 1e3, "ms")
    emit("print_one_by_one", "throughput", one_by_one_rate, "receipts/s", 1 / base(0.5))
    emit("print_all_at_once", "throughput", at_once_rate, "receipts/s", 1 / base(0.5))
    emit("print_one_by_one", "daemon_cpu_per_receipt", one_by_one_cpu * 1e3, "ms")
    emit("print_all_at_once", "daemon_cpu_per_receipt", at_once_cpu * 1e3, "ms")
    emit("print_check", "receipts_at_printer", printed, "receipts")
    emit("print_check", "receipts_marked_copy", copies, "receipts")
    emit("print_journal", "print_job_rows", jobs.rows, "rows")
    emit("print_journal", "document_bytes_per_job", jobs.document_bytes / jobs.rows, "bytes")


async def status_of(path: str) -> dict[str, Any]:
    async with ApiClient(path) as c:
        result: dict[str, Any] = await c.call("status")
        return result


ID_INDEX_TXN = 8_000  # sales a transaction: 8 batches of 1000, a drain's group


@scenario
async def sale_id_index(args: argparse.Namespace, work: Path) -> None:
    """The collector's own SQLite store taking 300k sales (60k with --quick) in transactions
    of 8,000, with random UUIDv4 and with time-ordered UUIDv7 sale ids: the time per sale over
    the last quarter, as the sale-id index has grown. Baseline: the same rows into a bare table
    with the store's other unique index but none on the sale id, in the same transactions."""
    total = 60_000 if args.quick else 304_000  # whole transactions
    timed_from = total - total // 4
    per_sale: dict[str, float] = {}
    for kind, new_id in NEW_SALE_ID.items():
        store = CollectorStore.open(str(work / f"{kind}.db"), init=True)
        prev, spent, timed = GENESIS_HASH, 0.0, 0
        for start in range(1, total + 1, ID_INDEX_TXN):
            chain = make_chain("s1", "t1", ID_INDEX_TXN, start=start, prev=prev, new_id=new_id)
            prev = bytes.fromhex(chain[-1].hash)
            batches = [
                Batch.of("s1", "t1", chain[i : i + 1000]).verified()
                for i in range(0, ID_INDEX_TXN, 1000)
            ]  # verified before the clock starts: the store's own time is measured
            t = time.perf_counter()
            store.store_batches(batches)
            if start > timed_from:
                spent, timed = spent + time.perf_counter() - t, timed + len(chain)
        store.close()
        per_sale[kind] = spent / timed * 1e6
    bare = bare_table_us_per_sale(work / "v4.db", work / "bare.db", timed_from)
    emit("sale_id_index", "store_us_per_sale_uuid4", per_sale["v4"], "us", bare)
    emit("sale_id_index", "store_us_per_sale_uuid7", per_sale["v7"], "us", bare)
    emit("sale_id_index", "bare_table_no_sale_id_index", bare, "us")


def bare_table_us_per_sale(source: Path, target: Path, timed_from: int) -> float:
    """The rows of the store at `source` written again into a table with no sale-id index,
    in the same transactions and settings (WAL, synchronous=FULL, 64 MiB cache)."""
    with contextlib.closing(sqlite3.connect(source)) as src:
        rows = src.execute("SELECT * FROM transactions ORDER BY seq").fetchall()
        (ddl,) = src.execute("SELECT sql FROM sqlite_master WHERE name = 'transactions'").fetchone()
    bare_ddl = ddl.replace(",\n    UNIQUE (id)", "")
    assert bare_ddl != ddl, "the store's schema changed: update the bare table"
    conn = sqlite3.connect(target, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "cache_size = -65536"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(bare_ddl)
    one = "(" + ",".join("?" * len(rows[0])) + ")"
    spent, timed = 0.0, 0
    for start in range(0, len(rows), ID_INDEX_TXN):
        chunk = rows[start : start + ID_INDEX_TXN]
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for i in range(0, len(chunk), 500):
            part = chunk[i : i + 500]
            params = [value for row in part for value in row]
            conn.execute(f"INSERT INTO transactions VALUES {','.join([one] * len(part))}", params)
        conn.execute("COMMIT")
        if start >= timed_from:
            spent, timed = spent + time.perf_counter() - t, timed + len(chunk)
    conn.close()
    return spent / timed * 1e6


@scenario
async def signing(args: argparse.Namespace, work: Path) -> None:
    """Ed25519 per sale: the terminal signs once per batch, the collector verifies once per
    batch; baseline: encoding the same batch unsigned (what forwarding did before)."""
    from edged.signing import Signer, tx_signed_bytes, verify
    from edged.wire import TxBatch, encode
    from tests.support.entries import make_chain

    signer = Signer.generate()
    rounds = 50 if args.quick else 500
    for size in (1, 20, 200):
        entries = make_chain("S1", "T1", size)
        pairs = [(e.seq, e.hash) for e in entries]
        t = time.perf_counter()
        for _ in range(rounds):
            encode(TxBatch(v=1, store="S1", terminal="T1", entries=entries))
        unsigned = (time.perf_counter() - t) / rounds / size
        t = time.perf_counter()
        for _ in range(rounds):
            sig = signer.sign(tx_signed_bytes("S1", "T1", pairs))
        sign = (time.perf_counter() - t) / rounds / size
        t = time.perf_counter()
        for _ in range(rounds):
            assert verify(sig, tx_signed_bytes("S1", "T1", pairs)) is None
        check = (time.perf_counter() - t) / rounds / size
        emit("signing", f"sign_per_sale_batch_{size}", sign * 1e6, "us", unsigned * 1e6)
        emit("signing", f"verify_per_sale_batch_{size}", check * 1e6, "us", unsigned * 1e6)
        emit("baseline", f"encode_unsigned_per_sale_batch_{size}", unsigned * 1e6, "us")


@scenario
async def refdata_lookup(args: argparse.Namespace, work: Path) -> None:
    """article.lookup p50/p99 through the socket with a 200k catalog (baseline: `status`,
    interleaved), the time from publish to active, and the daemon's RSS with the catalog."""
    await bench_refdata.lookup(args.quick, work, emit)


@scenario
async def decode(args: argparse.Namespace, work: Path) -> None:
    """Parsing one sale.commit line (JSON-RPC checks, ids, repeated keys) and one batch of 20;
    baseline: msgspec's bare decode of the same bytes, which the parser starts with."""
    import msgspec

    from edged.api.jsonrpc import Batch, Request, parse

    call = {"jsonrpc": "2.0", "id": 7, "method": "sale.commit", "params": {"sale": sale()}}
    call["params"]["sale"]["meta"]["at"] = "2026-11-23T09:41:00.123Z"  # colons in strings
    batch = [{**call, "id": i} for i in range(20)]
    rounds = 5_000 if args.quick else 50_000
    for name, frame, kind in (
        ("sale_commit", msgspec.json.encode(call), Request),
        ("batch_20", msgspec.json.encode(batch), Batch),
    ):
        assert isinstance(parse(frame), kind)
        bare = min(_per_call(lambda f=frame: msgspec.json.decode(f), rounds) for _ in range(3))
        full = min(_per_call(lambda f=frame: parse(f), rounds) for _ in range(3))
        emit("decode", f"parse_{name}", full * 1e6, "us", bare * 1e6)
        emit("baseline", f"msgspec_decode_{name}", bare * 1e6, "us")


def _per_call(func: Callable[[], object], rounds: int) -> float:
    t = time.perf_counter()
    for _ in range(rounds):
        func()
    return (time.perf_counter() - t) / rounds


@scenario
async def fleet_scaling(args: argparse.Namespace, work: Path) -> None:
    """scripts/fleet for 1, 2 and 3 collectors on one db: ingest vs 1 collector's, same run."""
    # Offered above what this machine ingests (about 1-1.6k sales/s): the ingest is the limit.
    tills, seconds, rate = (50, 5.0, 1500) if args.quick else (200, 30.0, 3000)
    settings = fleet.parse([f"--terminals={tills}", f"--rate={rate}", f"--seconds={seconds}"])
    single: float | None = None
    for n in (1, 2, 3):
        result = await fleet.one_run(settings, n, work / f"collectors-{n}")
        rate = result["ingest_sales_per_s"]
        single = single or rate
        emit(f"fleet_{n}_collectors", "ingest", rate, "sales/s", single)
        emit(f"fleet_{n}_collectors", "commit_to_ack_p50", result["commit_to_ack_p50_ms"], "ms")
        emit(f"fleet_{n}_collectors", "commit_to_ack_p99", result["commit_to_ack_p99_ms"], "ms")
        emit(f"fleet_{n}_collectors", "collectors_cpu", result["collectors_cpu_cores"], "cores")
        lost = result["lost"] + result["duplicated"] + result["unacknowledged"]
        emit(f"fleet_{n}_collectors", "lost_duplicated_unacked", lost, "sales")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, under a minute")
    parser.add_argument(
        "--db",
        action="append",
        choices=BACKENDS,
        help="the collector database(s) of `drain` (repeat it; default: both)",
    )
    parser.add_argument(
        "--ids",
        choices=("v7", "v4"),
        default="v7",
        help="sale ids: time-ordered UUIDv7 as README advises (default), or random UUIDv4",
    )
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (all)")
    args = parser.parse_args()
    args.db = args.db or list(BACKENDS)
    global SALE_IDS  # read by sale_id() in every scenario
    SALE_IDS = args.ids
    names = args.scenarios or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    os.environ.setdefault("EDGED_LOG_LEVEL", "warning")
    configure_logging()  # the simulators and drivers that run in this process log to stderr
    with tempfile.TemporaryDirectory(prefix="edged-bench-", dir=os.getcwd()) as tmp:
        ship_daemons_as_installed(Path(tmp))
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            asyncio.run(SCENARIOS[name](args, work))


if __name__ == "__main__":
    main()

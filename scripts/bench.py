"""edged benchmarks: each scenario next to the raw baselines it is compared with, in one run.

Prints one JSON object per line: scenario, metric, value, unit, and for comparisons baseline
and ratio. Shared machines are noisy: compare ratios across commits, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edged.client import ApiClient
from tests.support.daemon import DaemonProcess

SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], Awaitable[None]]] = {}


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


def sale(total: int = 1299) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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

        t = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        rate = clients * per_client / (time.perf_counter() - t)
        one_fsync_each = 1 / statistics.median(sqlite_lat)
        emit("commit_8_clients", "throughput", rate, "commits/s", one_fsync_each)
    finally:
        daemon.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, under a minute")
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (all)")
    args = parser.parse_args()
    names = args.scenarios or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    os.environ.setdefault("EDGED_LOG_LEVEL", "warning")
    with tempfile.TemporaryDirectory(prefix="edged-bench-", dir=os.getcwd()) as tmp:
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            asyncio.run(SCENARIOS[name](args, work))


if __name__ == "__main__":
    main()

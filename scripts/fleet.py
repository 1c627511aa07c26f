"""A fleet of simulated terminals (real journals and uplinks, no devices) against mosquitto
and 1..n collectors sharing one database; then the journal-versus-store checker.

    scripts/fleet [--terminals 200] [--rate 1000] [--seconds 30] [--collectors 1 2 3]
                  [--processes 2] [--bridge]

Prints one JSON object per collector count: sales committed and acknowledged, ingest
sales/s (committed sales over the time from the first commit to the last ack), commit-to-ack
p50/p99, the collectors' CPU (from /proc/PID/stat, in cores), and the checker's counts. The
tills live in `--processes` worker processes (this script again, `--worker`); with
`--bridge` they talk to a store broker bridged (the README's bridge) to a chain broker where
the collectors run. Exit status 1 if anything was lost, duplicated or left unacknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edged.log import configure as configure_logging
from tests.support.daemon import CollectorProcess, uplink_section
from tests.support.fleet import Fleet, uplink_settings
from tests.support.mosquitto import Mosquitto
from tests.support.readme_broker import bridge_conf

DRAIN_S = 120.0
SCRIPT = Path(__file__).resolve()
# The store broker queues every till's batches for the one collector or bridge: room for all.
QUEUE_CONF = "max_queued_messages 200000\nmax_inflight_messages 100\n"


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def worker(args: argparse.Namespace) -> None:
    """One process's share of the tills: ready, wait for `go`, sell, drain, check, report."""
    configure_logging("error")
    cfg = uplink_settings("127.0.0.1", args.port, ack_timeout_s=args.ack_timeout)
    fleet = Fleet(Path(args.workdir), cfg, args.count, first=args.first, seed=args.first)
    async with fleet:
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started, cpu_before = time.time(), time.process_time()  # all threads of this process
        sold = await fleet.sell(args.rate, args.seconds)
        drained = await fleet.drain(DRAIN_S)
        done, cpu = time.time(), time.process_time() - cpu_before
        verdict = fleet.check(args.db)
        report = {
            "started": started,
            "done": done,
            "cpu_s": cpu,
            "sold": sold,
            "drained": drained,
            "pending": fleet.pending,
            "latencies": fleet.latencies,
            "lost": verdict.lost,
            "duplicated": verdict.duplicated,
            "mismatched": verdict.mismatched,
            "stored_once": verdict.stored_once,
            "problems": verdict.problems[:5],
        }
    print(json.dumps(report), flush=True)


async def spawn_worker(
    args: argparse.Namespace, port: int, db: str, workdir: Path, first: int, count: int
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--worker",
        f"--port={port}",
        f"--db={db}",
        f"--workdir={workdir}",
        f"--first={first}",
        f"--count={count}",
        f"--rate={args.rate * count / args.terminals}",
        f"--seconds={args.seconds}",
        f"--ack-timeout={args.ack_timeout}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 28,
    )
    return proc


async def read_json(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a fleet worker exited with {await proc.wait()}")
    result: dict[str, Any] = json.loads(line)
    return result


async def one_run(args: argparse.Namespace, collectors_n: int, work: Path) -> dict[str, Any]:
    """Brokers, `collectors_n` collectors on one db, the fleet; the figures of one run."""
    work.mkdir(parents=True)
    chain = Mosquitto(work, extra_conf=QUEUE_CONF)
    chain.start()
    brokers = [chain]
    tills_port = chain.port
    collectors: list[CollectorProcess] = []
    workers: list[asyncio.subprocess.Process] = []
    try:
        if args.bridge:
            store = Mosquitto(work, extra_conf=QUEUE_CONF + bridge_conf(f"127.0.0.1:{chain.port}"))
            store.start()
            brokers.append(store)
            tills_port = store.port
        db = str(work / "chain.db")
        uplink = uplink_section(chain.port, reconnect_min_s=0.2, reconnect_max_s=1.0)
        for n in range(collectors_n):
            collectors.append(CollectorProcess(work / f"collector-{n}", uplink, db=db))
            await asyncio.to_thread(collectors[-1].start)
        share = -(-args.terminals // args.processes)
        for first in range(1, args.terminals + 1, share):
            count = min(share, args.terminals + 1 - first)
            workers.append(await spawn_worker(args, tills_port, db, work / "fleet", first, count))
        for proc in workers:
            await read_json(proc)  # ready: journals open, uplinks started
        pids = [c.proc.pid for c in collectors if c.proc is not None]
        broker_pids = [b.proc.pid for b in brokers if b.proc is not None]
        cpu_before = [cpu_s(pid) for pid in pids]
        brokers_before = sum(cpu_s(pid) for pid in broker_pids)
        go = time.time()
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        reports = [await read_json(proc) for proc in workers]
        cpu_after = [cpu_s(pid) for pid in pids]
        brokers_used = sum(cpu_s(pid) for pid in broker_pids) - brokers_before
        for proc in workers:
            await proc.wait()
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for collector in collectors:
            collector.kill()
        for broker in brokers:
            broker.stop()
    end = max(r["done"] for r in reports)
    window = end - go
    cpu = sum(cpu_after) - sum(cpu_before)
    latencies = [x for r in reports for x in r["latencies"]]
    sold = sum(r["sold"] for r in reports)
    return {
        "scenario": "fleet",
        "collectors": collectors_n,
        "terminals": args.terminals,
        "bridge": args.bridge,
        "offered_sales_per_s": args.rate,
        "seconds": args.seconds,
        "committed": sold,
        "ingest_sales_per_s": round(sold / window, 1),
        "commit_to_ack_p50_ms": round(pct(latencies, 0.5) * 1000, 1),
        "commit_to_ack_p99_ms": round(pct(latencies, 0.99) * 1000, 1),
        "commit_to_ack_mean_ms": round(statistics.fmean(latencies) * 1000, 1)
        if latencies
        else None,
        "collectors_cpu_cores": round(cpu / window, 2),
        "collector_cpu_ms_per_sale": round(1000 * cpu / sold, 3) if sold else None,
        "tills_cpu_cores": round(sum(r["cpu_s"] for r in reports) / window, 2),
        "brokers_cpu_cores": round(brokers_used / window, 2),
        "unacknowledged": sum(r["pending"] for r in reports),
        "stored_once": sum(r["stored_once"] for r in reports),
        "lost": sum(r["lost"] for r in reports),
        "duplicated": sum(r["duplicated"] for r in reports),
        "mismatched": sum(r["mismatched"] for r in reports),
        "problems": [p for r in reports for p in r["problems"]][:5],
    }


async def main_async(args: argparse.Namespace) -> int:
    failed = False
    with tempfile.TemporaryDirectory(prefix="edged-fleet-") as tmp:
        for n in args.collectors:
            result = await one_run(args, n, Path(tmp) / f"run-{n}")
            print(json.dumps(result), flush=True)
            failed |= bool(result["lost"] or result["duplicated"] or result["mismatched"]) or bool(
                result["unacknowledged"]
            )
    return 1 if failed else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1000.0, help="sales/s, all tills together")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--collectors", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--processes", type=int, default=2, help="worker processes for the tills")
    parser.add_argument("--bridge", action="store_true", help="tills at a bridged store broker")
    parser.add_argument("--ack-timeout", type=float, default=10.0, help="the tills' ack_timeout_s")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--port", "--first", "--count"):
        parser.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    for hidden in ("--db", "--workdir"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    args = parse()
    if args.worker:
        asyncio.run(worker(args))
        return 0
    configure_logging("error")
    # Stopped by a signal, still stop the brokers and collectors it started (`finally`).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, _frame: sys.exit(128 + signum))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

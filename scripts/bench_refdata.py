"""The refdata_lookup scenario of scripts/bench: article.lookup against status, through the
socket, with a large catalog published by the real collector CLI; and the daemon's RSS.

Every timed lookup's answer is checked against the article it was generated from (and an
unknown barcode must answer null): a run that answered wrongly raises BenchError, with no
figures, because fast wrong answers measure nothing.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_devices import BenchError

from edged.client import ApiClient
from edged.keys import collector_key_path, collector_pin_path, load_or_create, write_pin
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.flood import rss_mib
from tests.support.mosquitto import Mosquitto

Emit = Callable[..., None]
FIRST = 4000000000000  # barcodes FIRST .. FIRST + n - 1


def article(i: int) -> dict[str, Any]:
    """Article i of the generated catalog, as article.lookup answers it."""
    return {
        "barcode": str(FIRST + i),
        "description": f"Article number {i} of the bench catalog",
        "price": 100 + i % 5000,
        "tax_code": "A",
    }


def write_catalog(path: Path, n: int) -> None:
    with path.open("w") as out:
        out.write("barcode,description,price,tax_code\n")
        for i in range(n):
            a = article(i)
            out.write(f"{a['barcode']},{a['description']},{a['price']},{a['tax_code']}\n")


def check_answers(answers: list[tuple[int | None, Any]], date: str) -> None:
    """BenchError unless each answer is the article it asked for (None: unknown, null)."""
    wrong = [
        (i, got)
        for i, got in answers
        if got != {"article": None if i is None else article(i), "snapshot": date}
    ]
    if wrong:
        raise BenchError(
            f"article.lookup answered {len(wrong)} of {len(answers)} lookups wrongly; the "
            f"first (article index, answer; None: an unknown barcode): {wrong[:3]}"
        )
    unknown = sum(i is None for i, _ in answers)
    if unknown in (0, len(answers)):
        raise BenchError(f"{unknown} of {len(answers)} lookups were unknown: both must be asked")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def active(sock: str, timeout_s: float) -> dict[str, Any]:
    async with ApiClient(sock) as c, asyncio.timeout(timeout_s):
        while True:
            status: dict[str, Any] = await c.call("refdata.status")
            if status["active"] is not None:
                return status
            await asyncio.sleep(0.1)


async def lookup(quick: bool, work: Path, emit: Emit) -> None:
    n_articles = 20_000 if quick else 200_000
    n_calls = 500 if quick else 3000
    (work / "broker").mkdir()
    broker = Mosquitto(work / "broker")
    broker.start()
    up = uplink_section(broker.port)
    collector = CollectorProcess(work / "store", up)
    daemon = DaemonProcess(work / "till", uplink=up)
    write_pin(
        collector_pin_path(daemon.journal),
        load_or_create(collector_key_path(collector.db)).public_hex,
    )
    source = work / "catalog.csv"
    write_catalog(source, n_articles)
    try:
        daemon.start()
        assert daemon.proc is not None
        await asyncio.sleep(0.5)
        emit("refdata_lookup", "idle_rss_no_catalog", rss_mib(daemon.proc.pid), "MiB")
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable, "-m", "edged.cli", "collector", "--config",
                str(collector.config), "--log-level", "warning", "refdata", "publish",
                str(source), "--store", "S1", "--date", "2026-01-01",
            ],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        emit("refdata_lookup", f"publish_{n_articles}", time.perf_counter() - t, "s")
        status = await active(daemon.socket, 600)
        if status["active"]["articles"] != n_articles:
            raise BenchError(f"{n_articles} articles published, the terminal holds {status}")
        emit("refdata_lookup", f"publish_to_active_{n_articles}", time.perf_counter() - t, "s")
        rng = random.Random(13)
        lookups: list[float] = []
        statuses: list[float] = []
        answers: list[tuple[int | None, Any]] = []  # (article index or None: unknown, answer)
        async with ApiClient(daemon.socket) as c:
            for _ in range(200):  # warm up both paths
                await c.call("status")
                await c.call("article.lookup", {"barcode": str(FIRST + rng.randrange(n_articles))})
            for i in range(n_calls):  # interleaved, so both see the same machine noise
                # one in ten is unknown: the answer is null
                index = rng.randrange(n_articles) + (n_articles if i % 10 == 0 else 0)
                t = time.perf_counter()
                answer = await c.call("article.lookup", {"barcode": str(FIRST + index)})
                lookups.append(time.perf_counter() - t)
                answers.append((index if index < n_articles else None, answer))
                t = time.perf_counter()
                await c.call("status")
                statuses.append(time.perf_counter() - t)
        check_answers(answers, status["active"]["date"])
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            emit(
                "refdata_lookup",
                f"lookup_{label}_latency_{n_articles}",
                pct(lookups, q) * 1e3,
                "ms",
                pct(statuses, q) * 1e3,
            )
            emit("baseline", f"status_{label}_latency", pct(statuses, q) * 1e3, "ms")
        await asyncio.sleep(1.0)
        emit("refdata_lookup", f"idle_rss_with_{n_articles}", rss_mib(daemon.proc.pid), "MiB")
    finally:
        daemon.terminate()
        broker.stop()

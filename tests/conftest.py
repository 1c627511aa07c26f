from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.collectordb import BACKENDS, CollectorDb, fresh_collector_db
from tests.support.leaks import (
    describe,
    leaked_tasks,
    leaked_threads,
    live_timers,
    stop_unclosed_sqlite,
)
from tests.support.mosquitto import Mosquitto

# A fault test drives a whole chain through broker restarts, kills and full disks, with hang
# detectors of its own of up to 90 s per step: pyproject's default timeout is for the rest.
FAULT_TIMEOUT_S = 600


def pytest_configure(config: pytest.Config) -> None:
    """python-escpos pickles its printer database into a new temp folder on each import; give
    this run (and the daemons it spawns) one folder, filled here before any child starts, so
    that no child reads a pickle another is still writing."""
    if "ESCPOS_CAPABILITIES_PICKLE_DIR" not in os.environ:
        os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = tempfile.mkdtemp(prefix="edged-escpos-")
    import escpos.capabilities  # noqa: F401


def pytest_sessionfinish() -> None:
    """The last net: a connection left open by a test that failed without the leak check
    (a sync test, an error in a fixture) must not keep the process from exiting."""
    stop_unclosed_sqlite()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fault tests get FAULT_TIMEOUT_S unless they name their own timeout."""
    for item in items:
        if item.get_closest_marker("fault") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(FAULT_TIMEOUT_S))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port, killed after the test."""
    b = Mosquitto(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(params=BACKENDS)
def collector_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CollectorDb]:
    """A fresh collector database, once on SQLite and once on PostgreSQL (skipped, saying why,
    where no server answers): the collector's contract tests run on both."""
    with fresh_collector_db(request.param, tmp_path) as db:
        yield db


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks, timers or threads behind."""
    threads_before = set(threading.enumerate())
    yield
    tasks = await leaked_tasks()
    timers = live_timers(asyncio.get_running_loop())
    for task in tasks:
        task.cancel()
    for timer in timers:
        timer.cancel()
    assert not tasks, f"the test left tasks running: {[describe(t) for t in tasks]}"
    assert not timers, f"the test left timers armed: {timers}"
    # asyncio.to_thread's workers end with the loop; end them now, before the thread check.
    await asyncio.get_running_loop().shutdown_default_executor()
    threads = leaked_threads(threads_before)
    if threads:
        stop_unclosed_sqlite()  # else the process waits for them forever at exit
    assert not threads, f"the test left threads running: {[t.name for t in threads]}"

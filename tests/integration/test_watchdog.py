"""The honest watchdog: the daemon in-process, a vital component killed from inside.

WATCHDOG=1 must stop while the journal writer, the uplink or the API is down, the component
must come back by itself, and one that cannot be restarted must end the daemon with an error
(so that systemd restarts it) instead of leaving it half alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from edged import daemon
from edged.api import codes
from edged.client import ApiClient, ApiError
from edged.config import Config, load_config
from edged.sdnotify import Notifier
from edged.supervise import ComponentFailed
from tests.support.mosquitto import Mosquitto
from tests.support.sales import cash_sale
from tests.support.waiting import until

WATCHDOG_USEC = "100000"  # the daemon pings every 50 ms


@dataclass
class Notifications:
    """Every datagram the daemon sent to its NOTIFY_SOCKET, in order."""

    sock: socket.socket
    seen: list[bytes] = field(default_factory=list)

    async def pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.seen.append(await loop.sock_recv(self.sock, 4096))

    def count(self, prefix: bytes) -> int:
        return sum(d.startswith(prefix) or b"\n" + prefix in d for d in self.seen)


@dataclass
class Running:
    cfg: Config
    notes: Notifications
    task: asyncio.Task[None]
    logs: list[dict[str, Any]]

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        async with ApiClient(self.cfg.api.socket) as client:
            return await client.call(method, params)

    def logged(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.logs
            if e["event"] == event and all(e.get(k) == v for k, v in match.items())
        ]


def write_config(tmp_path: Path, broker_port: int) -> Config:
    run = tmp_path / "run"
    run.mkdir()
    path = tmp_path / "edged.toml"
    path.write_text(
        '[terminal]\nstore_id = "S1"\nterminal_id = "T1"\n'
        f'[journal]\npath = "{tmp_path / "journal.db"}"\n'
        f'[api]\nsocket = "{run / "edged.sock"}"\n'
        f'[uplink]\nhost = "127.0.0.1"\nport = {broker_port}\nonline_after_s = 0.1\n'
    )
    return load_config(str(path))


@contextlib.asynccontextmanager
async def running_daemon(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[Running]:
    cfg = write_config(tmp_path, broker.port)
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.setblocking(False)
        notes = Notifications(sock)
        pump = asyncio.create_task(notes.pump(), name="notify-pump")
        notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": WATCHDOG_USEC})
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(daemon.run(cfg, notifier), name="daemon-under-test")
            try:
                await until(lambda: notes.count(b"WATCHDOG=1") > 0 or task.done(), "first ping")
                yield Running(cfg, notes, task, logs)
            finally:
                pump.cancel()
                task.cancel()
                await asyncio.wait([pump, task])


def task_named(name: str) -> asyncio.Task[Any]:
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]
    return task


def withheld_then_resumed(seen: list[bytes], component: str) -> None:
    """No WATCHDOG=1 between the STATUS naming the component and the next healthy STATUS,
    and pings again after it."""
    marker = f"NOT HEALTHY: {component}".encode()
    sick = next(i for i, d in enumerate(seen) if marker in d)
    well = next(i for i, d in enumerate(seen) if i > sick and b"NOT HEALTHY" not in d)
    assert seen[well].startswith(b"STATUS="), seen[sick : well + 1]
    assert not [d for d in seen[sick:well] if b"WATCHDOG=1" in d]
    assert any(b"WATCHDOG=1" in d for d in seen[well:])


# Which task to kill, and how to see the component work again.
KILLS: dict[str, tuple[str, Callable[[Running], Any]]] = {}


async def journal_works(daemon_: Running) -> None:
    result = await daemon_.call("sale.commit", {"sale": cash_sale()})
    assert result["duplicate"] is False


async def api_works(daemon_: Running) -> None:
    assert (await daemon_.call("status"))["health"]["ok"] is True


async def uplink_works(daemon_: Running) -> None:
    async def online() -> bool:
        return (await daemon_.call("status"))["link"]["state"] == "online"

    for _ in range(200):
        if await online():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the uplink did not come back online")


@pytest.mark.parametrize(
    ("component", "task_name", "works"),
    [
        ("journal-writer", "journal-writer", journal_works),
        ("api", "api-server", api_works),
        ("uplink", "uplink-attempt", uplink_works),
    ],
)
async def test_a_vital_component_killed_from_inside_stops_the_watchdog_and_comes_back(
    tmp_path: Path,
    broker: Mosquitto,
    monkeypatch: pytest.MonkeyPatch,
    component: str,
    task_name: str,
    works: Callable[[Running], Any],
) -> None:
    # Restarts take 1-2 s here, so the 50 ms health check sees the component down.
    monkeypatch.setattr(daemon, "VITAL_RESTART_MIN_S", 1.0)
    monkeypatch.setattr(daemon, "VITAL_RESTART_MAX_S", 2.0)
    async with running_daemon(tmp_path, broker) as d:
        await uplink_works(d)
        await journal_works(d)
        task_named(task_name).cancel()
        await until(lambda: d.logged("watchdog_withheld"), f"{component} reported unhealthy")
        (withheld, *_) = d.logged("watchdog_withheld")
        assert withheld["log_level"] == "error"
        assert component in withheld["problems"], withheld
        (stopped, *_) = d.logged("component_stopped_unexpectedly", component=component) or (
            d.logged("component_failed", component=component)
        )
        assert stopped["log_level"] == "error"
        await until(lambda: d.logged("watchdog_resumed"), f"{component} healthy again")
        await works(d)
        pings = d.notes.count(b"WATCHDOG=1")
        await until(lambda: d.notes.count(b"WATCHDOG=1") > pings, "pings after the restart")
        withheld_then_resumed(d.notes.seen, component)
        assert not d.task.done()


async def test_status_tells_while_the_journal_writer_is_down(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "VITAL_RESTART_MIN_S", 2.0)
    monkeypatch.setattr(daemon, "VITAL_RESTART_MAX_S", 3.0)
    async with running_daemon(tmp_path, broker) as d:
        task_named("journal-writer").cancel()
        health: dict[str, Any] = {}

        async def poll() -> None:
            nonlocal health
            while not (health := (await d.call("status"))["health"]).get("problems"):
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), 20)
        assert health["ok"] is False
        assert "journal-writer" in health["problems"]
        # A commit made meanwhile fails at once and says what to do; once the writer is back
        # the same sale is committed (once).
        retried = cash_sale()
        with pytest.raises(ApiError, match="retry with the same id") as caught:
            await asyncio.wait_for(d.call("sale.commit", {"sale": retried}), 20)
        assert caught.value.code == codes.JOURNAL_ERROR
        await until(lambda: d.logged("watchdog_resumed"), "the writer back")
        result = await d.call("sale.commit", {"sale": retried})
        assert result["duplicate"] is False


async def test_a_component_that_cannot_be_restarted_ends_the_daemon(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "VITAL_RESTART_MIN_S", 0.01)
    monkeypatch.setattr(daemon, "VITAL_RESTART_MAX_S", 0.02)
    monkeypatch.setattr(daemon, "VITAL_GIVE_UP", 3)
    async with running_daemon(tmp_path, broker) as d:
        run_dir = Path(d.cfg.api.socket).parent
        run_dir.rename(tmp_path / "run-moved")
        run_dir.write_text("not a directory: the socket cannot be bound again\n")
        task_named("api-server").cancel()
        with pytest.raises(ComponentFailed, match="api failed 3 times"):
            await asyncio.wait_for(asyncio.shield(d.task), 20)
        assert d.logged("daemon_giving_up")[0]["log_level"] == "critical"
        assert os.path.exists(d.cfg.journal.path)

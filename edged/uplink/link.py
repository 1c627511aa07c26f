"""Link supervision: reconnect forever with backoff, report a hysteresis-filtered state."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from enum import StrEnum
from typing import Any, NoReturn

import structlog

from edged.clock import utc_now_iso
from edged.config import UplinkSection
from edged.errors import EdgedError
from edged.events import EventHub
from edged.supervise import Fault, RestartPolicy, Supervisor, in_own_task, unwrap
from edged.uplink.client import Connection, LinkError, Will, connect, peer_of
from edged.uplink.pulse import Pulse

log = structlog.get_logger(__name__)

GOODBYE_TIMEOUT_S = 2.0  # publishing the retained `offline` status on a clean stop
# Unexpected session failures (bugs) in a row, none of them reaching a stable connection,
# after which the daemon exits and systemd restarts it.
GIVE_UP_AFTER_BUGS = 5


class LinkState(StrEnum):
    """The link state that status, events and the API report (after hysteresis)."""

    # Since start-up no connection attempt has finished yet (or the first connection has not
    # yet stayed up for online_after_s).
    CONNECTING = "connecting"
    # A connection has stayed up for at least online_after_s and is still up.
    ONLINE = "online"
    # The connection was lost or the last attempt failed; retrying with backoff. Also while a
    # new connection is younger than online_after_s (forwarding already runs on it).
    OFFLINE = "offline"
    # No [uplink] in the config: a journal-only terminal. Set by the daemon, never here.
    DISABLED = "disabled"


class StateTracker:
    """Pure hysteresis: `offline` at once on loss, `online` only once a connection is stable.

    Times are monotonic seconds passed in by the caller; methods return the new reported
    state when it changes, else None.
    """

    def __init__(self, online_after_s: float) -> None:
        self.online_after_s = online_after_s
        self.state = LinkState.CONNECTING
        self.up_since: float | None = None  # monotonic time the current connection came up

    @property
    def up(self) -> bool:
        return self.up_since is not None

    def connected(self, now: float) -> LinkState | None:
        self.up_since = now
        return self.poll(now)

    def down(self, now: float) -> LinkState | None:
        """The connection was lost, or an attempt failed."""
        self.up_since = None
        return self._set(LinkState.OFFLINE)

    def stable_at(self) -> float | None:
        """When poll() will turn the state `online`, if a connection is up and not yet there."""
        if self.up_since is None or self.state is LinkState.ONLINE:
            return None
        return self.up_since + self.online_after_s

    def poll(self, now: float) -> LinkState | None:
        due = self.stable_at()
        if due is not None and now >= due:
            return self._set(LinkState.ONLINE)
        return None

    def _set(self, state: LinkState) -> LinkState | None:
        if state is self.state:
            return None
        self.state = state
        return state


Session = Callable[[Connection], Coroutine[Any, Any, None]]


class Link:
    """Keeps one connection to the broker up, forever; runs `session` on each connection.

    `session` runs as soon as a connection is up (hysteresis only affects the reported
    state); it ends by raising (LinkError when the connection broke).
    """

    def __init__(
        self,
        cfg: UplinkSection,
        *,
        client_id: str,
        status_topic: str,
        ack_topic: str,
        probe_topic: str,
        extra_topics: Sequence[str] = (),
        status_payload: Callable[[str, str, bool], bytes],
        session: Session,
        events: EventHub,
        changed: Pulse,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.peer = peer_of(cfg)
        self._client_id = client_id
        self._status_topic = status_topic
        self._ack_topic = ack_topic
        self._extra_topics = list(extra_topics)  # subscribed too: the store's resend requests
        self._probe_topic = probe_topic
        # (state, since, is_will) -> retained status bytes
        self._status_payload = status_payload
        self._session = session
        self._events = events
        self._tracker = StateTracker(cfg.online_after_s)
        self.since = utc_now_iso()
        self.attempts_failed = 0  # total since start; sync_now watches it
        self.last_error: str | None = None
        self._connected_now = False  # the current attempt got a connection
        self._conn: Connection | None = None  # the connection up now, for resubscribe()
        self._changed = changed  # fired on every state change and failed attempt
        self.supervisor = Supervisor(
            "link",
            self._attempt,
            policy=RestartPolicy(
                min_s=cfg.reconnect_min_s,
                max_s=cfg.reconnect_max_s,
                give_up_after=GIVE_UP_AFTER_BUGS,
            ),
            expected=self._expected,
            before=self._before,
            on_failure=self._failed,
            still_down_event="link_still_down",
            fields={"peer": self.peer},
            rng=rng,
        )

    @property
    def state(self) -> LinkState:
        return self._tracker.state

    @property
    def up(self) -> bool:
        """A connection is up right now (forwarding runs), whatever the reported state."""
        return self._tracker.up

    def wake(self) -> None:
        """Skip the current backoff wait and try at once."""
        self.supervisor.wake()

    async def resubscribe(self, topics: Sequence[str]) -> None:
        """Subscribe to `topics` again, so the broker sends their retained messages anew.

        Without a connection, or if it fails now, nothing: the next connection subscribes, and
        the session notices a broken one itself.
        """
        conn = self._conn
        if conn is None:
            return
        try:
            for topic in topics:
                await conn.subscribe(topic)
        except LinkError as exc:
            log.debug("link_resubscribe_failed", peer=self.peer, error=exc.problem)

    async def run(self) -> NoReturn:
        """Connect, run the session, reconnect after backoff; forever, until cancelled.

        Raises ComponentFailed when the session keeps failing for an unexpected reason.
        """
        await self.supervisor.run()

    def _before(self) -> None:
        self._connected_now = False

    async def _attempt(self) -> None:
        async with connect(
            self.cfg,
            client_id=self._client_id,
            will=Will(self._status_topic, self._status_payload("offline", utc_now_iso(), True)),
            subscribe=[self._ack_topic, *self._extra_topics],
            probe_topic=self._probe_topic,
        ) as conn:
            self._connected_now = True
            self._conn = conn
            try:
                await self._connected(conn)
            finally:
                self._conn = None

    def _expected(self, exc: BaseException) -> Fault | None:
        if isinstance(exc, LinkError):
            event = "link_lost" if self._connected_now else "link_connect_failed"
            return Fault(event, str(exc.problem))
        if isinstance(exc, EdgedError):
            # The journal could not be read or updated (e.g. disk full): it says so itself.
            return Fault("uplink_journal_error", str(exc))
        return None  # a bug: logged with its traceback, restarted, counted towards giving up

    async def _connected(self, conn: Connection) -> None:
        up_at = utc_now_iso()
        log.info("link_connected", peer=self.peer, failed_attempts=self.supervisor.backoff.failures)
        self._report(self._tracker.connected(time.monotonic()))
        try:
            await conn.publish(
                self._status_topic,
                self._status_payload("online", up_at, False),
                retain=True,
                timeout=self.cfg.ack_timeout_s,
            )
            # In a task of its own: the failed group leaves no cancellation in this one, so
            # the clean DISCONNECT's timeout below still works on 3.11.2.
            await in_own_task(self._serve(conn), "uplink-serve")
        except asyncio.CancelledError:
            await self._goodbye(conn)
            raise

    async def _serve(self, conn: Connection) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(conn.watchdog(self.cfg.keepalive_s), name="uplink-watchdog")
                tg.create_task(self._stabilize(), name="uplink-stabilize")
                tg.create_task(self._session(conn), name="uplink-session")
        except ExceptionGroup as group:
            raise unwrap(group, prefer=(LinkError,)) from None

    async def _goodbye(self, conn: Connection) -> None:
        """On a clean stop say `offline` ourselves: a clean DISCONNECT fires no will."""
        with contextlib.suppress(LinkError, TimeoutError):
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                await conn.publish(
                    self._status_topic,
                    self._status_payload("offline", utc_now_iso(), False),
                    retain=True,
                    timeout=GOODBYE_TIMEOUT_S,
                )
        log.info("link_closed", peer=self.peer)
        self._report(self._tracker.down(time.monotonic()))

    async def _stabilize(self) -> None:
        """Turn the reported state `online` once the connection stayed up online_after_s."""
        due = self._tracker.stable_at()
        if due is not None:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self._report(self._tracker.poll(time.monotonic()))
        self.supervisor.healthy()

    def _failed(self, error: str) -> None:
        self.attempts_failed += 1
        self.last_error = error
        self._report(self._tracker.down(time.monotonic()))
        self._changed.fire()

    def _report(self, state: LinkState | None) -> None:
        if state is None:
            return
        self.since = utc_now_iso()
        log.info("link_state", state=state.value, since=self.since, peer=self.peer)
        self._events.publish("link", {"state": state.value, "since": self.since})
        self._changed.fire()

    def status(self) -> dict[str, Any]:
        status = {"state": self.state.value, "since": self.since, "peer": self.peer}
        if self.state is not LinkState.ONLINE and self.last_error is not None:
            status["error"] = self.last_error
        return status

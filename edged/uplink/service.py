"""The uplink as the daemon sees it: one object wiring the link and the forwarder."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from edged.backlog import Thresholds
from edged.config import TerminalSection, UplinkSection
from edged.events import EventHub
from edged.journal import Journal
from edged.keys import collector_pin_path
from edged.signing import Signer
from edged.uplink.ackgate import AckGate
from edged.uplink.client import terminal_client_id
from edged.uplink.forwarder import Forwarder
from edged.uplink.link import Link, LinkState
from edged.uplink.pulse import Pulse
from edged.uplink.refdata import RefdataSync
from edged.wire import WIRE_VERSION, Status, Topics, encode

SYNC_NOW_TIMEOUT_S = 5.0  # sync_now waits this (plus online_after_s) at most


class Uplink:
    """Link supervision plus the forwarding pump for one terminal."""

    def __init__(
        self,
        cfg: UplinkSection,
        terminal: TerminalSection,
        journal: Journal,
        events: EventHub,
        version: str,
        *,
        signer: Signer,
        rng: random.Random | None = None,
        refdata: RefdataSync | None = None,
    ) -> None:
        self.cfg = cfg
        self._journal = journal
        self._version = version
        topics = Topics(cfg.topic_prefix, terminal.store_id, terminal.terminal_id)
        self.topics = topics
        self._changed = Pulse()
        self.backlog = Thresholds(cfg.outbox_warn_after_s, cfg.outbox_alarm_after_s)
        self.forwarder = Forwarder(
            journal,
            events,
            store=terminal.store_id,
            terminal=terminal.terminal_id,
            tx_topic=topics.tx,
            ack_topic=topics.ack,
            batch_max=cfg.batch_max,
            window=cfg.window,
            ack_timeout_s=cfg.ack_timeout_s,
            changed=self._changed,
            signer=signer,
            acks=AckGate(
                collector_pin_path(journal.path),
                store=terminal.store_id,
                terminal=terminal.terminal_id,
                require_signed=cfg.require_signed_acks,
            ),
            backlog=self.backlog,
            others=refdata.handle if refdata else None,
        )
        self.link = Link(
            cfg,
            client_id=terminal_client_id(cfg, terminal.store_id, terminal.terminal_id),
            status_topic=topics.status,
            ack_topic=topics.ack,
            extra_topics=[topics.resend, *(refdata.topics.filters if refdata else ())],
            probe_topic=topics.status.removesuffix("/status") + "/probe",
            status_payload=self._status_payload,
            session=self.forwarder.run,
            events=events,
            changed=self._changed,
            rng=rng,
        )
        if refdata is not None:
            refdata.refetch = self.link.resubscribe

    async def run(self) -> None:
        """Run forever; cancellation is a clean stop (retained `offline`, then DISCONNECT)."""
        await self.link.run()

    def status(self) -> dict[str, Any]:
        """{"state", "since", "last_ack_at", "peer"} of the link, as reported."""
        return {
            **self.link.status(),
            "last_ack_at": self._journal.stats().last_ack_at,
            **self.forwarder.resend_status(),
        }

    async def sync_now(self) -> dict[str, Any]:
        """Try the link at once and flush; returns {"link", "pending"} after a bounded wait.

        Waits until the link is online with nothing pending, or the next attempt failed, or
        SYNC_NOW_TIMEOUT_S + online_after_s passed.
        """
        failed_before = self.link.attempts_failed
        self.link.wake()
        self.forwarder.wake()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SYNC_NOW_TIMEOUT_S + self.cfg.online_after_s):
                while not self._settled(failed_before):
                    await self._changed.wait()
        return {"link": self.link.state.value, "pending": self._journal.stats().pending}

    def _settled(self, failed_before: int) -> bool:
        if self.link.attempts_failed > failed_before:
            return True
        return self.link.state is LinkState.ONLINE and self._journal.stats().pending == 0

    def _status_payload(self, state: str, since: str, is_will: bool) -> bytes:
        # The will is written at connect time: a pending count in it would be stale.
        pending = None if is_will else self._journal.stats().pending
        return encode(
            Status(v=WIRE_VERSION, state=state, since=since, pending=pending, version=self._version)
        )

"""A forwarder over a journal with no connection: for acks handed to it directly."""

from __future__ import annotations

from edged.events import EventHub
from edged.journal import Journal
from edged.uplink.forwarder import Forwarder
from edged.uplink.pulse import Pulse


def bare_forwarder(
    journal: Journal, events: EventHub | None = None, *, store: str = "S1", terminal: str = "T1"
) -> Forwarder:
    base = f"edged/v1/{store}/{terminal}"
    return Forwarder(
        journal,
        events or EventHub(),
        store=store,
        terminal=terminal,
        tx_topic=f"{base}/tx",
        ack_topic=f"{base}/ack",
        batch_max=10,
        window=2,
        ack_timeout_s=1.0,
        changed=Pulse(),
    )

"""A forwarder over a journal with no connection: for acks handed to it directly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from edged.events import EventHub
from edged.journal import Journal
from edged.keys import collector_pin_path
from edged.signing import Signer
from edged.uplink.ackgate import AckGate
from edged.uplink.client import Incoming
from edged.uplink.forwarder import Forwarder
from edged.uplink.pulse import Pulse


def bare_forwarder(
    journal: Journal,
    events: EventHub | None = None,
    *,
    store: str = "S1",
    terminal: str = "T1",
    require_signed: bool = False,
    others: Callable[[Incoming], Awaitable[bool]] | None = None,
) -> Forwarder:
    """Unsigned acks count unless `require_signed` or a collector key is pinned beside the
    journal (as for a terminal upgraded before its collector). `others` takes messages on
    further topics, as reference data does."""
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
        signer=Signer.generate(),
        acks=AckGate(
            collector_pin_path(journal.path),
            store=store,
            terminal=terminal,
            require_signed=require_signed,
        ),
        others=others,
    )

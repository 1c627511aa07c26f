"""MQTT link supervision and the forwarding pump (the terminal's uplink to the store)."""

from edged.uplink.client import LinkError
from edged.uplink.link import LinkState
from edged.uplink.service import Uplink

__all__ = ["LinkError", "LinkState", "Uplink"]

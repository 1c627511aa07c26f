"""Which acks a terminal acts on: those signed by the collector key it pinned (DESIGN 12).

The first ack whose signature verifies pins its key (trust on first use) unless a key was
pinned beforehand (`edgectl keys pin-collector KEY`). Once a key is pinned, an ack that is
unsigned or signed by any other key is ignored: logged at ERROR once per problem, then at
DEBUG. Before any key is pinned, an unsigned ack (a collector older than signing) is acted on
only with `[uplink] require_signed_acks = false`.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from edged.errors import KeyFileError
from edged.keys import read_pin, write_pin
from edged.signing import ack_signed_bytes, verify
from edged.wire import Ack

log = structlog.get_logger(__name__)


class AckGate:
    """Checks each ack's signature against the pinned collector key, pinning the first one."""

    def __init__(self, pin_path: Path, *, store: str, terminal: str, require_signed: bool) -> None:
        self.pin_path = pin_path
        self._store = store
        self._terminal = terminal
        self._require_signed = require_signed
        self._said: set[str] = set()  # problems logged at ERROR since the last good ack
        self.rejected = 0

    def admit(self, ack: Ack, topic: str) -> bool:
        """True if the ack may be acted on; otherwise logs why (once) and returns False."""
        try:
            pinned = read_pin(self.pin_path)
        except KeyFileError as exc:
            return self._reject(topic, ack, "pin_unreadable", str(exc))
        if ack.sig is None:
            if pinned is not None:
                return self._reject(
                    topic, ack, "unsigned", f"unsigned ack, but collector key {pinned} is pinned"
                )
            if self._require_signed:
                return self._reject(
                    topic,
                    ack,
                    "unsigned",
                    "unsigned ack and no collector key pinned: upgrade the collector, pin its "
                    "key (edgectl keys pin-collector KEY), or set [uplink] require_signed_acks = "
                    "false while an old collector runs",
                )
            self._said.clear()
            return True
        if pinned is not None and ack.sig.key != pinned:
            return self._reject(
                topic,
                ack,
                "wrong_key",
                f"ack signed by key {ack.sig.key}, not by the pinned collector key {pinned}",
            )
        problem = verify(ack.sig, ack_signed_bytes(self._store, self._terminal, ack))
        if problem is not None:
            return self._reject(topic, ack, "bad_signature", problem)
        if pinned is None:
            try:
                write_pin(self.pin_path, ack.sig.key)
            except KeyFileError as exc:
                return self._reject(topic, ack, "pin_unwritable", str(exc))
            log.warning(
                "collector_key_pinned", key=ack.sig.key, path=str(self.pin_path), how="first_use"
            )
        self._said.clear()
        return True

    def _reject(self, topic: str, ack: Ack, kind: str, problem: str) -> bool:
        self.rejected += 1
        fields = {"topic": topic, "kind": kind, "upto": ack.upto, "problem": problem}
        if kind in self._said:
            log.debug("ack_ignored", **fields)
        else:
            self._said.add(kind)
            log.error("ack_ignored", **fields)
        return False

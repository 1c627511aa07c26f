"""Which acks and resend requests a terminal acts on: those signed by the collector key it
pinned (DESIGN 12).

The first ack whose signature verifies pins its key (trust on first use) unless a key was
pinned beforehand (`edgectl keys pin-collector KEY`); a resend request never pins one. Once a
key is pinned, an ack or resend request that is unsigned or signed by any other key is ignored:
logged at ERROR once per message and problem, then at DEBUG. Before any key is pinned, an
unsigned one (a collector older than signing) is acted on only with `[uplink]
require_signed_acks = false`, and so is a signed resend request (its key is nobody's yet).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from edged.errors import KeyFileError
from edged.keys import read_pin, write_pin
from edged.signing import ack_signed_bytes, resend_signed_bytes, verify
from edged.wire import Ack, ResendRequest, Sig

log = structlog.get_logger(__name__)

_UNPINNED_HINT = (
    "upgrade the collector, pin its key (edgectl keys pin-collector KEY), or set [uplink] "
    "require_signed_acks = false while an old collector runs"
)


class AckGate:
    """Checks each ack's and resend request's signature against the pinned collector key,
    pinning the first ack's."""

    def __init__(self, pin_path: Path, *, store: str, terminal: str, require_signed: bool) -> None:
        self.pin_path = pin_path
        self._store = store
        self._terminal = terminal
        self._require_signed = require_signed
        self._said: dict[str, set[str]] = {"ack": set(), "resend": set()}  # since the last good
        self.rejected = 0

    def admit(self, ack: Ack, topic: str) -> bool:
        """True if the ack may be acted on; otherwise logs why (once) and returns False."""
        message = ack_signed_bytes(self._store, self._terminal, ack)
        return self._admit("ack", ack.sig, message, topic, {"upto": ack.upto})

    def admit_resend(self, request: ResendRequest, topic: str) -> bool:
        """True if the resend request may be acted on; otherwise logs why (once), False."""
        message = resend_signed_bytes(self._store, self._terminal, request)
        fields = {"seq_from": request.from_, "seq_to": request.upto}
        return self._admit("resend", request.sig, message, topic, fields)

    def _admit(
        self, what: str, sig: Sig | None, message: bytes, topic: str, fields: dict[str, Any]
    ) -> bool:
        def reject(kind: str, problem: str) -> bool:
            return self._reject(what, kind, problem, {"topic": topic, **fields})

        name = "ack" if what == "ack" else "resend request"
        try:
            pinned = read_pin(self.pin_path)
        except KeyFileError as exc:
            return reject("pin_unreadable", str(exc))
        if sig is None:
            if pinned is not None:
                return reject("unsigned", f"unsigned {name}, but collector key {pinned} is pinned")
            if self._require_signed:
                return reject(
                    "unsigned", f"unsigned {name} and no collector key pinned: {_UNPINNED_HINT}"
                )
            self._said[what].clear()
            return True
        if pinned is not None and sig.key != pinned:
            return reject(
                "wrong_key",
                f"{name} signed by key {sig.key}, not by the pinned collector key {pinned}",
            )
        problem = verify(sig, message)
        if problem is not None:
            return reject("bad_signature", problem)
        if pinned is None and what == "resend":  # only an ack pins a key
            if self._require_signed:
                return reject(
                    "unpinned",
                    f"resend request signed by key {sig.key}, but no collector key is pinned yet "
                    "(the collector's first ack pins it)",
                )
        elif pinned is None:
            try:
                write_pin(self.pin_path, sig.key)
            except KeyFileError as exc:
                return reject("pin_unwritable", str(exc))
            log.warning(
                "collector_key_pinned", key=sig.key, path=str(self.pin_path), how="first_use"
            )
        self._said[what].clear()
        return True

    def _reject(self, what: str, kind: str, problem: str, fields: dict[str, Any]) -> bool:
        self.rejected += 1
        event = f"{what}_ignored"
        if kind in self._said[what]:
            log.debug(event, kind=kind, problem=problem, **fields)
        else:
            self._said[what].add(kind)
            log.error(event, kind=kind, problem=problem, **fields)
        return False

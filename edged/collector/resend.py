"""When to ask a terminal to resend: once per gap, again after a timeout, a bounded number of
times. Pure bookkeeping over monotonic time; the service publishes what it says is due."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from edged.collector.state import TerminalKey

log = structlog.get_logger(__name__)

RESEND_RETRY_S = 15.0  # ask again if the gap is still there after this long
RESEND_ATTEMPTS_MAX = 5  # then give up on this gap (logged) until it changes or a restart


@dataclass(slots=True)
class _Ask:
    gap: tuple[int, int]  # the range asked for first; a gap within it is the same gap
    attempts: int
    due: float  # monotonic


class ResendTracker:
    """The gaps terminals were asked to fill, and when each may be asked for again."""

    def __init__(
        self, retry_s: float = RESEND_RETRY_S, attempts_max: int = RESEND_ATTEMPTS_MAX
    ) -> None:
        self.retry_s = retry_s
        self.attempts_max = attempts_max
        self._asks: dict[TerminalKey, _Ask] = {}
        self._current: dict[TerminalKey, tuple[int, int]] = {}

    def saw(self, key: TerminalKey, gap: tuple[int, int] | None, now: float) -> None:
        """The store's current first gap for a terminal (None: it has none)."""
        if gap is None:
            self._asks.pop(key, None)
            self._current.pop(key, None)
            return
        self._current[key] = gap
        ask = self._asks.get(key)
        if ask is None or not (ask.gap[0] <= gap[0] and gap[1] <= ask.gap[1]):
            self._asks[key] = _Ask(gap, 0, now)

    def due(self, now: float) -> list[tuple[TerminalKey, tuple[int, int]]]:
        """The (terminal, gap) pairs to ask for now; each is counted as asked."""
        found: list[tuple[TerminalKey, tuple[int, int]]] = []
        for key, ask in self._asks.items():
            if ask.attempts >= self.attempts_max or ask.due > now:
                continue
            ask.attempts += 1
            ask.due = now + self.retry_s
            found.append((key, self._current[key]))
        return found

    def settled(self, key: TerminalKey) -> None:
        """Nothing in the gap can be asked for (the terminal purged it): stop asking."""
        ask = self._asks.get(key)
        if ask is not None:
            ask.attempts = self.attempts_max

    def unanswered(self, key: TerminalKey) -> bool:
        """Whether the last allowed request for this terminal's gap was just sent."""
        ask = self._asks.get(key)
        return ask is not None and ask.attempts == self.attempts_max

    def wait_s(self, now: float) -> float | None:
        """Seconds until the next request is due, or None if none will be."""
        dues = [a.due for a in self._asks.values() if a.attempts < self.attempts_max]
        return max(0.0, min(dues) - now) if dues else None

"""Operations that need the store (loyalty, vouchers, ...): refused at once while the link is down.

The config's `[operations]` table names each operation kind a UI uses and whether it needs
the store link ("online") or works anywhere ("any"). Selling never depends on the link; only
these operations do, and they fail fast with one error the UI can show instead of hanging.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from edged.errors import EdgedError, Problem, ValidationError
from edged.sale import validate_sale

ONLINE = "online"  # the link state in which "online" operations are allowed


class NeedsStoreError(EdgedError):
    """Operations that need the store were asked for while the store link is not online."""

    def __init__(self, kinds: list[str], link: str) -> None:
        self.kinds = kinds
        self.link = link
        super().__init__(needs_store_message(kinds))


def _label(kind: str) -> str:
    return kind.replace("_", " ").replace("-", " ")


def needs_store_message(kinds: list[str]) -> str:
    """What the UI shows the cashier, in plain words, e.g. for ["loyalty"]:

    "Loyalty needs the store's server, which this till cannot reach right now; sell without
    it or try again when the link is back"
    """
    names = [_label(k) for k in kinds]
    subject = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    verb, it = ("needs", "it") if len(names) == 1 else ("need", "them")
    return (
        f"{subject[0].upper()}{subject[1:]} {verb} the store's server, which this till cannot "
        f"reach right now; sell without {it} or try again when the link is back"
    )


class OperationPolicy:
    """The `[operations]` table: which operation kinds need the store link."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self._table = dict(table)

    def _unknown(self, kind: str) -> str:
        known = ", ".join(sorted(self._table))
        return (
            f"unknown operation kind {kind[:40]!r}; this till's [operations] names: {known} "
            '(add it there as "online" or "any")'
        )

    def needs_store(self, kind: Any, path: str) -> bool:
        """Whether `kind` needs the link; ValidationError at `path` if it is not a known kind."""
        if not isinstance(kind, str) or kind not in self._table:
            problem = self._unknown(kind) if isinstance(kind, str) else "must be a string"
            raise ValidationError([Problem(path, problem)])
        return self._table[kind] == ONLINE

    def sale_kinds(self, sale: Any) -> list[str]:
        """The kinds a sale's optional `operations` array names (ValidationError if malformed)."""
        if not isinstance(sale, dict) or "operations" not in sale:
            return []
        kinds = sale["operations"]
        if not isinstance(kinds, list):
            problem = 'must be an array of operation kinds, e.g. ["loyalty"]'
            raise ValidationError([Problem("sale.operations", problem)])
        problems = []
        for i, kind in enumerate(kinds):
            try:
                self.needs_store(kind, f"sale.operations[{i}]")
            except ValidationError as exc:
                problems += exc.problems
        if problems:
            raise ValidationError(problems)
        return list(dict.fromkeys(kinds))

    def refused(self, kinds: list[str], link: str) -> list[str]:
        """The kinds among `kinds` that cannot be done in link state `link`."""
        if link == ONLINE:
            return []
        return [k for k in kinds if self._table[k] == ONLINE]

    async def admit_sale(
        self, sale: Any, link: Callable[[], str], committed: Callable[[str], Awaitable[bool]]
    ) -> None:
        """Raise NeedsStoreError if `sale` carries operations the link state `link()` refuses.

        An invalid sale gets its ValidationError instead, and a sale already committed (a
        retried commit, whose answer is its duplicate result) is let through.
        """
        kinds = self.sale_kinds(sale)
        if not kinds:
            return  # most sales: no operation, no look at the link
        state = link()
        refused = self.refused(kinds, state)
        if not refused:
            return
        validate_sale(sale)
        if await committed(sale["id"]):
            return
        raise NeedsStoreError(refused, state)

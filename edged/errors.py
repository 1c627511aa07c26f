"""One exception root for edged; subclasses carry the context a person needs to act."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class EdgedError(Exception):
    """Root of every error edged raises on purpose."""


class ConfigError(EdgedError):
    """The configuration cannot be used: names the file, the key and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem at a JSON path such as `sale.lines[2].amount`."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem


class ValidationError(EdgedError):
    """Input failed validation; `problems` lists every path that is wrong."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class JournalError(EdgedError):
    """The journal cannot be opened, read or written."""


class JournalFullError(JournalError):
    """The disk holding the journal is full: nothing was committed, nothing was lost."""


class SaleConflictError(EdgedError):
    """A sale id was committed before with different content."""

    def __init__(self, sale_id: str, seq: int) -> None:
        self.sale_id = sale_id
        self.seq = seq
        super().__init__(
            f"sale {sale_id} was already committed as seq {seq} with different content; "
            "use a new id for a new sale"
        )


class ChainError(EdgedError):
    """The journal's hash chain or seq continuity is broken at `seq`."""

    def __init__(self, seq: int, problem: str) -> None:
        self.seq = seq
        self.problem = problem
        super().__init__(f"seq {seq}: {problem}")

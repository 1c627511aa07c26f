"""One line of `edgectl doctor`: what was checked, how it went, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["OK", "WARN", "FAIL"]
NAME_WIDTH = 12


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # "config", "journal", "printer", "broker tls", ...
    level: Level
    found: str  # what was found, for a person
    todo: str = ""  # what to do about it; empty when nothing needs doing

    def line(self) -> str:
        text = f"{self.level:<4}  {self.name:<{NAME_WIDTH}}  {self.found}"
        return f"{text} -> {self.todo}" if self.todo else text

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "level": self.level, "found": self.found, "todo": self.todo}

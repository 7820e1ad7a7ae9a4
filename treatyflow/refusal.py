"""The hub's refusal of a message: a problem code and every reason, as the sender is told."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Refusal(Exception):
    """The hub refuses a message: ``problem`` is a code, ``reasons`` say why."""

    problem: str
    reasons: list[str]

    def __str__(self) -> str:
        return f"{self.problem}: {'; '.join(self.reasons)}"

"""The figures of ``treatyflow stats``: counts and durations per group, from facts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from treatyflow.settings import SECONDS_PER_DAY
from treatyflow.statistics.facts import Fact
from treatyflow.statistics.models import Figures


def figures_of(facts: Sequence[Fact], *, treaty: str | None = None, state: str | None = None,
               since: date | None = None, now: datetime | None = None,
               seconds_per_day: float = SECONDS_PER_DAY, longest: int = 10) -> Figures:
    raise NotImplementedError

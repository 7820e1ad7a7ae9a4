"""Open requests by age band: what the gateway's gauges count every few seconds, kept
apart from the survival models so that counting loads neither numpy nor lifelines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from treatyflow.statistics.facts import Fact
from treatyflow.statistics.models import AgeBand

AGE_BANDS: tuple[tuple[int, int | None], ...] = ((0, 30), (31, 90), (91, 180), (181, 365),
                                                 (366, None))


def open_by_age(facts: Sequence[Fact], now: datetime) -> list[AgeBand]:
    """The open requests by days waited since sending."""
    ages = [math.floor(f.waited(now)) for f in facts if f.ended_at is None]  # whole days
    return [AgeBand(band=f"{low}-{high}" if high is not None else f"{low}+", lower_days=low,
                    upper_days=high,
                    open=sum(1 for a in ages if a >= low and (high is None or a <= high)))
            for low, high in AGE_BANDS]

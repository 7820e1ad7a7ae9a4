"""Statistics and forecasts from the hub's record: how long requests abroad hold up the
domestic cases they serve (docs/design.md, "Statistics"; docs/operators/statistics.md).

Everything is derived from the record's entries (``facts``: one row per request), read
with the payload keys; nothing is kept beside the log. The public calls:

- ``figures(record, ...)``: counts and Kaplan–Meier durations per treaty, state, authority,
  form and year, curves per requested state, open requests by age, overdue by month,
  refusals by ground, the cases waiting longest;
- ``case(record, case_no)``: the requests abroad one domestic case waits on, with forecasts;
- ``waiting_longest(record, limit)``: the domestic cases waiting longest;
- ``forecast(record, request_id)``: when one request's answer can be expected;
- ``history.generate(record, signer, ...)``: years of simulated history, written as the hub
  writes (``treatyflow history generate``).

Each takes ``seconds_per_day`` (the declared clock, for requests whose record states none)
and ``now`` (the instant the figures are as of; default: now). The pure forms over facts
already read (``figures_of``, ``case_of``, ...) let a caller read the record once.
"""

from __future__ import annotations

import importlib
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from treatyflow.record import Record
from treatyflow.settings import SECONDS_PER_DAY
from treatyflow.statistics.cases import AmbiguousCase
from treatyflow.statistics.facts import Fact, read_facts
from treatyflow.statistics.models import (
    AgeBand,
    CaseRequest,
    CaseSummary,
    CaseView,
    Clock,
    Curve,
    CurvePoint,
    Durations,
    Figures,
    Filters,
    Forecast,
    Group,
    HistorySummary,
    MonthPoint,
    RefusalCount,
    TrueBehaviour,
)

if TYPE_CHECKING:
    from treatyflow.statistics.cases import case_of, waiting_longest_of
    from treatyflow.statistics.survival import ForecastModel, fit_forecasts
    from treatyflow.statistics.tables import figures_of

# The survival models load numpy and lifelines (seconds of CPU, 200 MB): imported when a
# caller first needs them, so that the gateway's gauges (``gauges``) never do.
_LAZY = {"case_of": "cases", "waiting_longest_of": "cases", "figures_of": "tables",
         "ForecastModel": "survival", "fit_forecasts": "survival"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AgeBand", "AmbiguousCase", "CaseRequest", "CaseSummary", "CaseView", "Clock", "Curve",
    "CurvePoint",
    "Durations", "Fact", "Figures", "Filters", "Forecast", "ForecastModel", "Group",
    "HistorySummary", "MonthPoint", "RefusalCount", "TrueBehaviour", "case", "case_of",
    "figures", "figures_of", "fit_forecasts", "forecast", "read_facts", "waiting_longest",
    "waiting_longest_of",
]




class UnknownCase(LookupError):
    """No request in the record carries this domestic case number."""


class UnknownRequest(LookupError):
    """No request in the record has this id."""


async def figures(record: Record, *, treaty: str | None = None, state: str | None = None,
                  since: date | None = None, seconds_per_day: float = SECONDS_PER_DAY,
                  now: datetime | None = None, longest: int = 10) -> Figures:
    """The figures of the record's requests (filtered by treaty, state, sending date)."""
    from treatyflow.statistics.tables import figures_of

    facts = await read_facts(record, seconds_per_day=seconds_per_day, now=now)
    return figures_of(facts, treaty=treaty, state=state, since=since, now=now,
                      seconds_per_day=seconds_per_day, longest=longest)


async def case(record: Record, case_no: str, *, state: str | None = None,
               seconds_per_day: float = SECONDS_PER_DAY,
               now: datetime | None = None) -> CaseView:
    """The requests abroad domestic case ``case_no`` of requesting ``state`` waits on
    (without ``state``: the one state whose requests carry it); UnknownCase if none,
    AmbiguousCase if requests of several states carry the number."""
    from treatyflow.statistics.cases import case_of
    from treatyflow.statistics.survival import fit_forecasts

    facts = await read_facts(record, seconds_per_day=seconds_per_day, now=now)
    view = case_of(facts, case_no, fit_forecasts(facts, now=now), state=state, now=now)
    if not view.requests:
        of = f" of {state}" if state else ""
        raise UnknownCase(f"no request{of} in the record carries domestic case {case_no!r}")
    return view


async def waiting_longest(record: Record, limit: int = 10, *,
                          seconds_per_day: float = SECONDS_PER_DAY,
                          now: datetime | None = None) -> list[CaseSummary]:
    """The ``limit`` domestic cases whose oldest open request has waited longest."""
    from treatyflow.statistics.cases import waiting_longest_of
    from treatyflow.statistics.survival import fit_forecasts

    facts = await read_facts(record, seconds_per_day=seconds_per_day, now=now)
    return waiting_longest_of(facts, fit_forecasts(facts, now=now), limit, now=now)


async def forecast(record: Record, request_id: str, *,
                   seconds_per_day: float = SECONDS_PER_DAY,
                   now: datetime | None = None) -> Forecast | None:
    """When request ``request_id``'s answer can be expected (None: too few answers in
    the record to fit any model); UnknownRequest if there is no such request."""
    from treatyflow.statistics.survival import fit_forecasts

    facts = await read_facts(record, seconds_per_day=seconds_per_day, now=now)
    found = [f for f in facts if f.request_id == request_id]
    if not found:
        raise UnknownRequest(f"no request {request_id!r} in the record")
    return fit_forecasts(facts, now=now).for_fact(found[0], now=now)

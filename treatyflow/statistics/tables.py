"""The figures of ``treatyflow stats``: counts and durations per group, from facts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime

from treatyflow.schemas.treaty import load_profile
from treatyflow.settings import SECONDS_PER_DAY
from treatyflow.statistics.ages import open_by_age
from treatyflow.statistics.cases import waiting_longest_of
from treatyflow.statistics.facts import Fact
from treatyflow.statistics.models import (
    Clock,
    Curve,
    Figures,
    Filters,
    Group,
    MonthPoint,
    RefusalCount,
)
from treatyflow.statistics.survival import curve, durations, fit_forecasts

DIMENSIONS: dict[str, Callable[[Fact], str]] = {
    "treaty": lambda f: f.treaty,
    "requesting_state": lambda f: f.requesting_state,
    "requested_state": lambda f: f.requested_state,
    "requesting_authority": lambda f: f.requesting_authority,
    "requested_authority": lambda f: f.requested_authority,
    "form": lambda f: f.form,
    "year": lambda f: str(f.sent_at.year),
}


def selected(facts: Sequence[Fact], *, treaty: str | None = None, state: str | None = None,
             since: date | None = None) -> list[Fact]:
    """The facts of ``treaty``, of requests ``state`` sent or received, sent since ``since``."""
    return [f for f in facts
            if (treaty is None or f.treaty == treaty)
            and (state is None or state in (f.requesting_state, f.requested_state))
            and (since is None or f.sent_at.date() >= since)]


def group(dimension: str, value: str, facts: Sequence[Fact], now: datetime) -> Group:
    """The counts and Kaplan–Meier durations of one group of requests as of ``now``."""
    to_receipt = [(f.days(f.sent_at, f.received_at) if f.received_at
                   else f.waited(now), f.received_at is not None) for f in facts]
    to_final = [(f.waited(now), f.final_at is not None) for f in facts]
    started = [f for f in facts if (f.received_at or f.deemed_at) is not None]
    receipt_to_final = []
    for f in started:
        start = f.received_at or f.deemed_at
        assert start is not None
        receipt_to_final.append((f.days(start, min(f.ended_at or now, now)),
                                 f.final_at is not None))
    ran = [f for f in facts if f.term_ran(now)]
    late = sum(f.overdue(now) for f in facts)
    outcomes: dict[str, int] = defaultdict(int)
    for f in facts:
        outcomes[f.outcome] += 1
    return Group(
        dimension=dimension, value=value, sent=len(facts),
        received=sum(f.received_at is not None for f in facts),
        executed_full=outcomes["executed_full"], executed_part=outcomes["executed_part"],
        refused=outcomes["refused"],
        refused_in_part=sum(any(e == "part" for _, e in f.refusals) for f in facts),
        deferred=sum(f.deferred for f in facts),
        clarifications=sum(f.clarifications for f in facts),
        withdrawn=outcomes["withdrawn"], lapsed=outcomes["lapsed"], open=outcomes["open"],
        overdue=late, share_overdue=round(late / len(ran), 4) if ran else None,
        to_receipt=durations(*_split(to_receipt)), to_final=durations(*_split(to_final)),
        receipt_to_final=durations(*_split(receipt_to_final)))


def _split(pairs: Sequence[tuple[float, bool]]) -> tuple[list[float], list[bool]]:
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _month_ends(first: datetime, now: datetime) -> list[tuple[str, datetime]]:
    out = []
    year, month = first.year, first.month
    while True:
        year_next, month_next = (year + 1, 1) if month == 12 else (year, month + 1)
        end = datetime(year_next, month_next, 1, tzinfo=UTC)
        out.append((f"{year:04d}-{month:02d}", min(end, now)))
        if end >= now:
            return out
        year, month = year_next, month_next


def overdue_by_month(facts: Sequence[Fact], now: datetime) -> list[MonthPoint]:
    """At each month's end (and now): the requests open, and those past their term."""
    if not facts:
        return []
    dues = [(f.sent_at, f.ended_at, f.deadline(now)) for f in facts]
    out = []
    for month, end in _month_ends(min(f.sent_at for f in facts), now):
        open_, late = 0, 0
        for sent, ended, due in dues:
            if sent <= end and (ended is None or ended > end):
                open_ += 1
                late += due is not None and due < end
        out.append(MonthPoint(month=month, open=open_, overdue=late,
                              share_overdue=round(late / open_, 4) if open_ else None))
    return out


def refusals(facts: Sequence[Fact]) -> list[RefusalCount]:
    """Refusals in whole and in part by treaty and ground, with the ground's article."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for f in facts:
        for ground, extent in f.refusals:
            counts[(f.treaty, ground)][0 if extent == "whole" else 1] += 1
    out = []
    for (treaty, ground), (whole, part) in sorted(counts.items()):
        try:
            found = load_profile(treaty).ground(ground)
        except (KeyError, FileNotFoundError, ValueError):
            found = None
        out.append(RefusalCount(treaty=treaty, ground=ground,
                                article=found.article if found else None,
                                whole=whole, part=part))
    return out


def figures_of(facts: Sequence[Fact], *, treaty: str | None = None, state: str | None = None,
               since: date | None = None, now: datetime | None = None,
               seconds_per_day: float = SECONDS_PER_DAY, longest: int = 10) -> Figures:
    """Every figure of the chosen requests as of ``now`` (default: now)."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    chosen = selected(facts, treaty=treaty, state=state, since=since)
    groups = []
    for dimension, key in DIMENSIONS.items():
        by: dict[str, list[Fact]] = defaultdict(list)
        for f in chosen:
            by[key(f)].append(f)
        groups += [group(dimension, value, members, at) for value, members in sorted(by.items())]
    by_state: dict[str, list[Fact]] = defaultdict(list)
    for f in chosen:
        by_state[f.requested_state].append(f)
    curves = []
    for requested, members in sorted(by_state.items()):
        values, events = _split([(f.waited(at), f.final_at is not None) for f in members])
        summary = durations(values, events)
        curves.append(Curve(requested_state=requested, n=summary.n, events=summary.events,
                            median_days=summary.median_days, points=curve(values, events)))
    model = fit_forecasts(facts, now=at)
    clocks = sorted({f.seconds_per_day for f in chosen})
    stated = sum(f.clock_from_record for f in chosen)
    return Figures(
        as_of=at, filters=Filters(treaty=treaty, state=state, since=since),
        clock=Clock(declared_seconds_per_day=seconds_per_day, from_record=stated,
                    declared=len(chosen) - stated, seconds_per_day=clocks),
        totals=group("all", "all", chosen, at), groups=groups, curves=curves,
        open_by_age=open_by_age(chosen, at), overdue_by_month=overdue_by_month(chosen, at),
        refusals=refusals(chosen),
        cases_waiting=len({f.domestic_case for f in chosen
                           if f.domestic_case and f.ended_at is None}),
        waiting_longest=waiting_longest_of(chosen, model, longest, now=at))

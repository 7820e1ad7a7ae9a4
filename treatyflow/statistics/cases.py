"""Domestic cases: the requests abroad each waits on, and the cases waiting longest."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from treatyflow.statistics.facts import Fact
from treatyflow.statistics.models import CaseRequest, CaseSummary, CaseView

if TYPE_CHECKING:  # the model's module loads numpy: only its callers import it
    from treatyflow.statistics.survival import ForecastModel


def _request(fact: Fact, model: ForecastModel, now: datetime) -> CaseRequest:
    waiting = fact.ended_at is None
    return CaseRequest(
        request_id=fact.request_id, treaty=fact.treaty,
        requesting_authority=fact.requesting_authority,
        requested_authority=fact.requested_authority, requested_state=fact.requested_state,
        form=fact.form, status=fact.status, outcome=fact.outcome, sent_at=fact.sent_at,
        answered_at=fact.final_at, days_waited=round(fact.waited(now), 3),
        overdue=fact.overdue(now),
        forecast=model.for_fact(fact, now) if waiting else None)


class AmbiguousCase(LookupError):
    """Requests of more than one requesting state carry this case number: name the state."""


def case_key(state: str, case_no: str) -> str:
    """One domestic case: its number within the state whose investigation it is."""
    return f"{state}:{case_no}"


def states_of(facts: Sequence[Fact], case_no: str) -> list[str]:
    """The requesting states whose requests carry case number ``case_no``."""
    return sorted({f.requesting_state for f in facts if f.domestic_case == case_no})


def case_of(facts: Sequence[Fact], case_no: str, model: ForecastModel, *,
            state: str | None = None, now: datetime | None = None) -> CaseView:
    """Every request of ``state`` carrying domestic case ``case_no``, oldest first (empty
    if none). A case number is its requesting state's: another state's request carrying
    the same number is another case, never merged into this one. Without ``state``, the
    one state whose requests carry it (AmbiguousCase if several do)."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    if state is None:
        states = states_of(facts, case_no)
        if len(states) > 1:
            raise AmbiguousCase(f"requests of {', '.join(states)} carry case number "
                                f"{case_no!r}: name the state whose case it is")
        state = states[0] if states else ""
    requests = [_request(f, model, at)
                for f in sorted((f for f in facts if f.domestic_case == case_no
                                 and f.requesting_state == state), key=lambda f: f.sent_at)]
    waiting = [r for r in requests if r.outcome == "open"]
    expected = [r.forecast.expected_at for r in waiting
                if r.forecast is not None and r.forecast.expected_at is not None]
    return CaseView(case_no=case_no, requesting_state=state, as_of=at, requests=requests,
                    open=len(waiting),
                    longest_wait_days=max((r.days_waited for r in waiting), default=None),
                    expected_complete_at=max(expected) if len(expected) == len(waiting)
                    and expected else None)


def waiting_longest_of(facts: Sequence[Fact], model: ForecastModel, limit: int = 10, *,
                       now: datetime | None = None) -> list[CaseSummary]:
    """The ``limit`` domestic cases whose oldest open request abroad has waited longest."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    by_case: dict[tuple[str, str], list[Fact]] = defaultdict(list)
    for f in facts:
        if f.domestic_case:
            by_case[(f.requesting_state, f.domestic_case)].append(f)
    waits = []
    for key, members in by_case.items():
        waiting = [f for f in members if f.ended_at is None]
        if waiting:
            waits.append((max(f.waited(at) for f in waiting), key, members, waiting))
    waits.sort(key=lambda w: (-w[0], w[1]))
    out = []
    for longest, (state, case_no), members, waiting in waits[:limit]:
        forecasts = [model.for_fact(f, at) for f in waiting]
        expected = [fc.expected_at for fc in forecasts
                    if fc is not None and fc.expected_at is not None]
        out.append(CaseSummary(
            case_no=case_no, requesting_state=state,
            requesting_authority=members[0].requesting_authority,
            open=len(waiting), requests=len(members), longest_wait_days=round(longest, 3),
            expected_complete_at=max(expected) if len(expected) == len(waiting) else None))
    return out

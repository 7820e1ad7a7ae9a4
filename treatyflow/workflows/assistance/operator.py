"""An operator's steps on a request for assistance: extend its deadline, resend the last
notice, withdraw or close it; each checked, then recorded with name and reason."""

from __future__ import annotations

from datetime import datetime

from treatyflow.schemas import limits
from treatyflow.schemas.treaty import TreatyProfile
from treatyflow.workflows.assistance.state import (
    RequestState,
    Status,
    Transition,
    _day,
    _notify,
    _record,
)
from treatyflow.workflows.common import Notice, OperatorAction, Rejected


def check_operator(state: RequestState, action: OperatorAction) -> list[str]:
    """Every reason this operator action is not allowed now (empty: it is)."""
    if state.final:
        return [f"request {state.request_id} is already {state.status}; nothing more can be done"]
    problems = limits.operator_problems([e.event for e in state.timeline])
    if action.action == "extend_deadline":
        if action.days is None:
            problems.append("extend_deadline needs the number of days")
        if action.deadline is not None:
            problems.append("a request has one deadline, its execution (art. 6.1): name none")
        if state.deadline is None:
            problems.append(f"no execution deadline runs yet (request is {state.status}): "
                            "it starts on receipt (art. 6.1)")
    problems += action.resend_problems({state.requesting, state.requested})
    return problems


def apply_operator(
    state: RequestState, profile: TreatyProfile, action: OperatorAction, now: datetime
) -> Transition:
    """Apply an operator action; raises ``Rejected`` with every reason if not allowed now.
    ``resend_last_notice`` changes nothing here: the workflow resends what it sent."""
    problems = check_operator(state, action)
    if problems:
        raise Rejected(problems)
    s = state.model_copy(deep=True)
    both = [s.requesting, s.requested]
    key = f"operator-{len(s.timeline)}-{action.action}"
    notices: list[Notice] = []
    note = f"{action.operator}: {action.reason}"
    if action.action == "extend_deadline":
        assert s.deadline is not None and action.days is not None
        s.deadline += _day(s) * action.days
        s.overdue = s.paused_at is None and now >= s.deadline
        # Reminders whose moment has passed under the new deadline are not sent late.
        s.reminders_done = [d for d in profile.deadlines.reminder_days_before
                            if s.deadline - _day(s) * d <= now]
        note += f" (+{action.days} days)"
        notices += _notify(s, "deadline_extended", both, about=None, key=key,
                           days=action.days, reason=action.reason)
    elif action.action == "withdraw":
        s.status = Status.WITHDRAWN
        notices += _notify(s, "withdrawn", both, about=None, key=key, reason=action.reason)
    elif action.action == "close":
        s.status = Status.CLOSED
        notices += _notify(s, "closed", both, about=None, key=key, reason=action.reason)
    _record(s, now, f"operator_{action.action}", f"operator:{action.operator}", note=note)
    return Transition(state=s, notices=notices)

"""The hub's operators' actions on a transfer or a transit request.

Operators act on the written instruction of a central authority, or when a party has
abandoned the procedure; art. 17 lets the central authorities agree on any practical
measure that helps apply the treaty. Each action is recorded in the timeline with the
operator's name and reason, and told to the parties.
"""

from __future__ import annotations

from datetime import datetime

from treatyflow.schemas import limits
from treatyflow.schemas.transfer import TransferProfile
from treatyflow.workflows.lifecycle import Notice, OperatorAction, Rejected
from treatyflow.workflows.transfer.state import (
    ALLOWED_FROM,
    Deadline,
    TimelineEntry,
    TransferState,
    TransferStatus,
    Transition,
    _close,
    _day,
    _notify,
    _record,
)
from treatyflow.workflows.transfer.transit import TransitState, TransitStatus, TransitTransition


def _matching(state: TransferState, which: str | None) -> list[Deadline]:
    return [d for d in state.deadlines if d.open and which in (None, d.code, d.key)]


def _listed(deadlines: list[Deadline]) -> str:
    return ", ".join(f"{d.code} (art. {d.article}, key {d.key}, due "
                     f"{d.due.isoformat(timespec='minutes')})" for d in deadlines)


def check_operator(
    state: TransferState, profile: TransferProfile, action: OperatorAction, now: datetime
) -> list[str]:
    """Every reason this operator action is not allowed on the transfer now (empty: it is)."""
    if state.final:
        return [f"transfer {state.request_id} is already {state.status}; nothing more can be "
                "done"]
    problems = limits.operator_problems([e.event for e in state.timeline])
    if action.action == "extend_deadline":
        if action.days is None:
            problems.append("extend_deadline needs the number of days")
        open_ = _matching(state, None)
        chosen = _matching(state, action.deadline)
        if not open_:
            problems.append(f"no deadline runs on transfer {state.request_id} now (it is "
                            f"{state.status}): nothing to extend")
        elif not chosen:
            problems.append(f"no open deadline {action.deadline!r}; open: {_listed(open_)}")
        elif len(chosen) > 1:
            problems.append(f"{len(chosen)} open deadlines: name one by code or key "
                            f"(--deadline): {_listed(chosen)}")
        elif action.days is not None:
            d = chosen[0]
            due = d.due + _day(state) * action.days
            if due <= now:
                problems.append(f"art. {d.article}: {d.code} was due {d.due.isoformat()}; "
                                f"{action.days} more days end {due.isoformat()}, which has "
                                "passed too: extend by more")
    # The foreign ministries get notices too: relay_requested (art. 5.1).
    problems += action.resend_problems({state.requesting, state.requested,
                                        *profile.channel.relays.values()})
    if action.action == "withdraw" and state.status not in ALLOWED_FROM["transfer_withdrawal"]:
        problems.append(f"a transfer is withdrawn before the handover; it is {state.status} "
                        "(close it if a party has abandoned it)")
    return problems


def apply_operator(
    state: TransferState, profile: TransferProfile, action: OperatorAction, now: datetime
) -> Transition:
    """Apply an operator action; raises ``Rejected`` with every reason if not allowed now.
    ``resend_last_notice`` only records it here: the workflow resends what it sent."""
    problems = check_operator(state, profile, action, now)
    if problems:
        raise Rejected(problems)
    s = state.model_copy(deep=True)
    both = [s.requesting, s.requested]
    key = f"operator-{len(s.timeline)}-{action.action}"
    note = f"{action.operator}: {action.reason}"
    notices: list[Notice] = []
    if action.action == "extend_deadline":
        assert action.days is not None
        d = _matching(s, action.deadline)[0]
        d.due += _day(s) * action.days
        d.overdue = False
        d.key = f"{d.key}+{key}"  # the overdue notice of the new date is a new message
        note += (f" ({d.code}, art. {d.article}, {d.basis}: +{action.days} days, due "
                 f"{d.due.isoformat(timespec='seconds')})")
        notices += _notify(s.request_id, "deadline_extended", [*both, d.owner], about=None,
                           key=key, deadline=d.code, article=d.article, basis=d.basis,
                           owner=d.owner, due=d.due.isoformat(), days=action.days,
                           reason=action.reason)
    elif action.action == "withdraw":
        s.status = TransferStatus.WITHDRAWN
        _close(s, now, lambda dl: dl.code != "relay_hop")  # what is on its way still arrives
        notices += _notify(s.request_id, "withdrawn", both, about=None, key=key,
                           reason=action.reason)
    elif action.action == "close":
        s.status = TransferStatus.CLOSED
        _close(s, now, lambda dl: True)
        notices += _notify(s.request_id, "closed", both, about=None, key=key,
                           reason=action.reason)
    else:
        note += f" (to {action.party})"
    _record(s, now, f"operator_{action.action}", f"operator:{action.operator}", note=note)
    return Transition(state=s, notices=notices)


def check_transit_operator(transit: TransitState, action: OperatorAction) -> list[str]:
    """Every reason this operator action is not allowed on the transit request now."""
    if transit.status is not TransitStatus.REQUESTED:
        return [f"transit {transit.request_id} is already {transit.status}; nothing more can "
                "be done"]
    problems: list[str] = []
    if action.action == "extend_deadline":
        problems.append("art. 16: the hub watches no deadline on a transit request; nothing to "
                        "extend")
    problems += action.resend_problems({transit.requesting, transit.transit_authority})
    return problems


def apply_transit_operator(
    transit: TransitState, action: OperatorAction, now: datetime
) -> TransitTransition:
    """Withdraw (the requesting state's instruction) or close (abandoned) a transit request,
    or record a resend; its transfer learns of the end through ``link_transit``."""
    problems = check_transit_operator(transit, action)
    if problems:
        raise Rejected(problems)
    t = transit.model_copy(deep=True)
    key = f"operator-{len(t.timeline)}-{action.action}"
    note = f"{action.operator}: {action.reason}"
    notices: list[Notice] = []
    if action.action in ("withdraw", "close"):
        t.status = (TransitStatus.WITHDRAWN if action.action == "withdraw"
                    else TransitStatus.CLOSED)
        t.reason = action.reason
        notices += _notify(t.request_id, t.status.value, [t.requesting, t.transit_authority],
                           about=None, key=key, transfer_request_id=t.transfer_request_id,
                           reason=action.reason)
    else:
        note += f" (to {action.party})"
    t.timeline.append(TimelineEntry(at=now, event=f"operator_{action.action}",
                                    actor=f"operator:{action.operator}",
                                    status=t.status.value, note=note))
    return TransitTransition(state=t, notices=notices)

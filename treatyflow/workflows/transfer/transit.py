"""Transit through a third state (art. 16): its own small procedure, linked to one
transfer, from the request to the transit state's decision."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from treatyflow.schemas.transfer import (
    Route,
    TransferProfile,
    TransitDecisionMessage,
    TransitInbound,
    TransitRequestMessage,
)
from treatyflow.workflows.lifecycle import Notice, Rejected
from treatyflow.workflows.transfer.state import (
    TimelineEntry,
    TransferState,
    TransferStatus,
    Transition,
    _leg,
    _notify,
    _record,
)


def transit_needed(route: Route, profile: TransferProfile) -> list[str]:
    """The states whose permit is needed on this route: none by air without landing (16.4)."""
    if (profile.transit.exempt_by_air_without_landing and route.mode == "air"
            and not route.landing_in_transit):
        return []
    return list(dict.fromkeys(route.transit_states))


class TransitStatus(StrEnum):
    REQUESTED = "transit_requested"
    GRANTED = "transit_granted"
    REFUSED = "transit_refused"
    WITHDRAWN = "transit_withdrawn"  # by an operator, on the requesting state's instruction
    CLOSED = "transit_closed"  # by an operator: abandoned


class TransitState(BaseModel):
    """A transit request (art. 16), its own small procedure linked to one transfer."""

    treaty_id: str
    request_id: str
    transfer_request_id: str
    requesting: str
    transit_authority: str
    transit_state: str
    status: TransitStatus
    period_from: date
    period_to: date
    route: Route
    reason: str | None = None
    applied: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class TransitTransition(BaseModel):
    state: TransitState
    notices: list[Notice] = Field(default_factory=list)


def check_transit_request(
    profile: TransferProfile, transfer: TransferState, message: TransitRequestMessage
) -> list[str]:
    """Art. 16.1, 16.2, 16.4: who asks, when, through whom, with which documents."""
    b = message.body
    art = profile.transit.article
    problems: list[str] = []
    if message.treaty_id != profile.id or b.transfer_request_id != transfer.request_id:
        return [f"transit request is about {message.treaty_id}/{b.transfer_request_id}, "
                f"not {transfer.treaty_id}/{transfer.request_id}"]
    if message.sender not in (transfer.requesting, transfer.requested):
        problems.append(f"art. {art}.1: {message.sender} is not a central authority of this "
                        "transfer")
    if transfer.status not in (TransferStatus.AGREED, TransferStatus.HANDOVER_ARRANGED):
        problems.append(f"art. {art}.1: transit is requested once the states have agreed to the "
                        f"transfer (it is {transfer.status})")
    if b.transit_state in (transfer.sentencing_state, transfer.executing_state):
        problems.append(f"art. {art}: {b.transit_state} is a party to the transfer, not a "
                        "transit state")
    if not message.recipient.startswith(f"{b.transit_state}-"):
        problems.append(f"the request goes to an authority of {b.transit_state}, not "
                        f"{message.recipient}")
    if b.transit_state not in b.route.transit_states:
        problems.append(f"art. {art}: {b.transit_state} is not on the route")
    elif not transit_needed(b.route, profile):
        problems.append(f"art. {profile.transit.exemption_article}: no transit permit is "
                        "requested for a transit by air without landing")
    if transfer.handover is not None and b.transit_state not in transfer.transits:
        problems.append(f"art. {art}: {b.transit_state} needs no permit on the agreed route")
    have = {d.code for d in b.documents}
    for code in profile.transit.required_documents:
        if code not in have:
            found = profile.document(code)
            where = found[1].article if found else "7"
            problems.append(f"art. {profile.transit.documents_article}: the transit request "
                            f"lacks {code} (art. {where})")
    return problems


def open_transit(
    profile: TransferProfile, transfer: TransferState, message: TransitRequestMessage,
    now: datetime,
) -> TransitTransition:
    problems = check_transit_request(profile, transfer, message)
    if problems:
        raise Rejected(problems)
    b = message.body
    t = TransitState(treaty_id=profile.id, request_id=message.request_id,
                     transfer_request_id=transfer.request_id, requesting=message.sender,
                     transit_authority=message.recipient, transit_state=b.transit_state,
                     status=TransitStatus.REQUESTED, period_from=b.period_from,
                     period_to=b.period_to, route=b.route, applied=[message.message_id])
    t.timeline.append(TimelineEntry(
        at=now, event="transfer_transit_request", actor=message.sender,
        status=t.status.value, message_id=message.message_id,
        hop=_leg(message.sender, message.recipient),
        note=f"through {b.transit_state}, {b.period_from} to {b.period_to} (art. 16.3)"))
    notices = _notify(t.request_id, "transit_requested", [t.transit_authority],
                      about=message.message_id, transfer_request_id=t.transfer_request_id,
                      message=message.model_dump(mode="json"))
    return TransitTransition(state=t, notices=notices)


def check_transit(transit: TransitState, message: TransitInbound) -> list[str]:
    if message.request_id != transit.request_id:
        return [f"message is about {message.request_id}, not {transit.request_id}"]
    if message.message_id in transit.applied:
        return [f"duplicate: message {message.message_id} was already applied"]
    if not isinstance(message, TransitDecisionMessage):
        return [f"transit {transit.request_id} already exists"]
    problems: list[str] = []
    if message.sender != transit.transit_authority:
        return [f"only {transit.transit_authority} decides on this transit"]
    if transit.status is not TransitStatus.REQUESTED:
        problems.append(f"transit {transit.request_id} was already decided ({transit.status})")
    if message.recipient != transit.requesting:
        problems.append(f"recipient must be {transit.requesting}, not {message.recipient}")
    return problems


def apply_transit(
    transit: TransitState, message: TransitInbound, now: datetime
) -> TransitTransition:
    """The transit state's decision (art. 16.1: under its own legislation)."""
    problems = check_transit(transit, message)
    if problems:
        raise Rejected(problems)
    assert isinstance(message, TransitDecisionMessage)
    t = transit.model_copy(deep=True)
    t.applied.append(message.message_id)
    t.status = TransitStatus.GRANTED if message.body.granted else TransitStatus.REFUSED
    t.reason = message.body.reason
    t.timeline.append(TimelineEntry(at=now, event=t.status.value, actor=message.sender,
                                    status=t.status.value, message_id=message.message_id,
                                    hop=_leg(message.sender, message.recipient), note=t.reason))
    notices = _notify(t.request_id, t.status.value, [t.requesting], about=message.message_id,
                      transfer_request_id=t.transfer_request_id, reason=t.reason)
    return TransitTransition(state=t, notices=notices)


def link_transit(transfer: TransferState, transit: TransitState, now: datetime) -> Transition:
    """Record a transit's progress on its transfer (the transfer waits on every permit)."""
    if transit.transfer_request_id != transfer.request_id:
        raise Rejected([f"transit {transit.request_id} belongs to {transit.transfer_request_id}"])
    s = transfer.model_copy(deep=True)
    status = transit.status.value.removeprefix("transit_")
    if s.transits.get(transit.transit_state) == status:
        return Transition(state=s)
    s.transits[transit.transit_state] = status
    _record(s, now, transit.status.value, transit.transit_authority,
            note=f"transit {transit.request_id} through {transit.transit_state}")
    notices = _notify(s.request_id, transit.status.value, [s.requesting, s.requested],
                      about=None, key=f"{transit.request_id}-{status}",
                      transit_request_id=transit.request_id, reason=transit.reason)
    return Transition(state=s, notices=notices)

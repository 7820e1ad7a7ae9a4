"""A transfer's lifecycle: opening it, applying a message, the passing of time, and
overdue marks withdrawn for messages that arrived in time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from treatyflow.constants import HUB_SENDER
from treatyflow.schemas import limits
from treatyflow.schemas.transfer import TransferProfile
from treatyflow.schemas.transfer import messages as tm
from treatyflow.workflows.common import Notice, Rejected, taken
from treatyflow.workflows.transfer.channel import _deliver, _hand_on, _relay, _route
from treatyflow.workflows.transfer.checks import check, check_new_transfer
from treatyflow.workflows.transfer.conditions import _missing_text, _settle, missing_documents
from treatyflow.workflows.transfer.state import (
    Deadline,
    Decision,
    Dispatch,
    Hop,
    TransferState,
    TransferStatus,
    Transition,
    _close,
    _leg,
    _notify,
    _open,
    _record,
)
from treatyflow.workflows.transfer.transit import transit_needed


def open_transfer(
    profile: TransferProfile, message: tm.TransferRequestMessage, now: datetime,
    time_scale: float = 1.0,
) -> Transition:
    """A new transfer request accepted by the hub and put on the channel (art. 4–7)."""
    problems = check_new_transfer(profile, message, now)
    if problems:
        raise Rejected(problems)
    b = message.body
    sentencing = profile.central_authority(b.sentencing_state)
    executing = profile.central_authority(b.executing_state)
    assert sentencing is not None and executing is not None
    state = TransferState(
        treaty_id=profile.id, request_id=message.request_id,
        sentencing_state=b.sentencing_state, executing_state=b.executing_state,
        sentencing_authority=sentencing.id, executing_authority=executing.id,
        requesting=message.sender, requested=message.recipient, initiative=b.initiative,
        status=TransferStatus.REQUESTED, time_scale=time_scale, opened_at=now,
        person=b.person, sentence=b.sentence, consent=b.consent,
        executing_state_provision=b.executing_state_provision,
        documents={d.code: message.message_id for d in b.documents},
        applied=[message.message_id],
        content_bytes=limits.content_size(message),
    )
    return _after_message(state, profile, message, now, [])


def apply(
    state: TransferState, profile: TransferProfile, message: tm.TransferInbound, now: datetime
) -> Transition:
    """Apply one message; raises ``Rejected`` with every reason if it is not allowed now."""
    s = taken(state, check(state, profile, message), message)
    if isinstance(message, tm.TransferRelayMessage):
        return Transition(state=s, notices=_relay(s, profile, message, now))
    missing_before = {d.code for d in missing_documents(s, profile)}
    notices: list[Notice] = []
    mid = message.message_id
    match message:
        case tm.TransferDocumentsMessage():
            b = message.body
            for item in b.documents:
                s.documents[item.code] = mid
            s.sentence = b.sentence or s.sentence
            s.consent = b.consent or s.consent
            s.executing_state_provision = (b.executing_state_provision
                                           or s.executing_state_provision)
        case tm.TransferDocumentsRequestMessage():
            s.documents_asked += [c for c in message.body.documents if c not in s.documents_asked]
        case tm.TransferConsentMessage():
            s.consent = message.body.consent
            s.documents[message.body.document.code] = mid
        case tm.TransferDecisionMessage():
            role = s.role_of(message.sender)
            assert role is not None
            s.decisions[s.state_of(role)] = Decision(
                authority=message.sender, message_id=mid, at=now,
                waive_six_months=message.body.waive_six_months)
            s.executing_state_provision = (message.body.executing_state_provision
                                           or s.executing_state_provision)
        case tm.TransferRefusalMessage():
            s.status = TransferStatus.REFUSED
            s.grounds = list(message.body.grounds)
            s.conditions_not_met = list(message.body.conditions_not_met)
            s.refused_by = message.sender
        case _ if message.kind == "transfer_withdrawal":
            s.status = TransferStatus.WITHDRAWN
        case tm.TransferHandoverMessage():
            s.status = TransferStatus.HANDOVER_ARRANGED
            s.handover = message.body
            needed = transit_needed(message.body.route, profile)
            s.transits = {t: s.transits.get(t, "not_requested") for t in needed}
            _close(s, now, lambda d: d.code == "handover")
            limit = profile.time_limits.handover
            if limit is not None:
                due_day = message.body.handover_on + timedelta(days=limit.days + 1)
                _open(s, "handover", limit.article, limit.basis, s.executing_authority,
                      datetime.combine(due_day, time(0), tzinfo=UTC), mid)
        case tm.TransferCompletedMessage():
            s.status = TransferStatus.TRANSFERRED
            s.transferred_on = message.body.handed_over_on
            _close(s, now, lambda d: d.code == "handover")
        case tm.TransferExecutionReportMessage():
            ev = message.body.event
            if ev == "enforcement_continued":
                s.status = TransferStatus.ENFORCING
            elif ev == "escape":
                s.at_large = True
            elif ev == "recapture":
                s.at_large = False
            elif ev in ("death", "sentence_served"):
                s.status = TransferStatus.ENFORCEMENT_ENDED
            elif ev == "information" and message.in_reply_to:
                _close(s, now, lambda d: d.code == "information_on_request"
                       and d.about_message_id == message.in_reply_to)
        case tm.TransferEnforcementChangeMessage():
            _close(s, now, lambda d: d.code == "enforcement_change"
                   and d.about_message_id == message.in_reply_to)
            s.status = (TransferStatus.ENFORCEMENT_ENDED if message.body.action == "ended"
                        else TransferStatus.ENFORCING)
        case _:
            pass  # sentence decision, information request: their effect comes on delivery
    return _after_message(s, profile, message, now, notices, missing_before)


def _after_message(
    s: TransferState, profile: TransferProfile, message: tm.TransferInbound, now: datetime,
    notices: list[Notice], missing_before: set[str] | None = None,
) -> Transition:
    """Put the message on the channel, settle the status, tell who owes documents."""
    route = _route(s, profile, message.sender, message.recipient)
    d = Dispatch(message_id=message.message_id, kind=message.kind, sender=message.sender,
                 recipient=message.recipient, route=route,
                 hops=[Hop(by=message.sender, to=route[1], at=now, message_id=message.message_id)],
                 payload=message.model_dump(mode="json"))
    s.dispatches.append(d)
    if s.final:
        _close(s, now, lambda dl: dl.code != "relay_hop")
    _settle(s, profile)
    _record(s, now, message.kind, message.sender, message_id=message.message_id,
            hop=_leg(message.sender, route[1]), note=_note(message))
    notices += _notify(s.request_id, "dispatched", [message.sender], about=message.message_id,
                       route=route, status=s.status.value)
    if len(route) == 2:
        notices += _deliver(s, profile, d, now)
    else:
        notices += _hand_on(s, profile, d, now)
    if s.status is TransferStatus.AGREED and not any(
            e.event == "agreed" for e in s.timeline):
        _record(s, now, "agreed", HUB_SENDER, note="art. 8.6: both states agree")
        notices += _notify(s.request_id, "agreed", [s.requesting, s.requested],
                           about=message.message_id)
    notices += _documents_notice(s, profile, missing_before or set(), now, message.message_id)
    return Transition(state=s, notices=notices)


def _note(message: tm.TransferInbound) -> str | None:
    match message:
        case tm.TransferRefusalMessage():
            cited = [*message.body.grounds, *message.body.conditions_not_met]
            return f"{', '.join(cited)}: {message.body.reason}"
        case tm.TransferHandoverMessage():
            return f"{message.body.handover_on} at {message.body.place}"
        case tm.TransferExecutionReportMessage():
            return f"{message.body.event} on {message.body.occurred_on}"
        case tm.TransferSentenceDecisionMessage():
            return f"{message.body.decision} of {message.body.decided_on}: {message.body.effect}"
        case tm.TransferDocumentsMessage():
            return ", ".join(d.code for d in message.body.documents)
        case _:
            return None


def _documents_notice(
    s: TransferState, profile: TransferProfile, before: set[str], now: datetime, about: str
) -> list[Notice]:
    """Art. 7: a document newly owed stops the request; the owner is asked for it by name."""
    if s.final:
        return []
    new = [d for d in missing_documents(s, profile) if d.code not in before]
    notices: list[Notice] = []
    for owner in dict.fromkeys(d.owner for d in new):
        mine = [d for d in new if d.owner == owner]
        _record(s, now, "documents_requested", HUB_SENDER, note=f"from {owner}: "
                + _missing_text(mine))
        notices += _notify(s.request_id, "documents_requested", [owner], about=about,
                           documents=[{"code": d.code, "article": d.article} for d in mine])
    return notices


# --- the passing of time ------------------------------------------------------------------


def next_due(state: TransferState, profile: TransferProfile) -> datetime | None:
    """When the workflow must next wake for this transfer, if ever."""
    due = [d.due for d in state.deadlines if d.open and not d.overdue]
    return min(due) if due else None


def _told(s: TransferState, d: Deadline) -> list[str]:
    """Who hears of a deadline passing (or judged met after all): its owner and both
    central authorities, or for a hop of the channel its owner and the hop's sender."""
    disp = s.dispatch(d.about_message_id) if d.about_message_id else None
    if disp is not None and d.code == "relay_hop":
        return [d.owner, disp.sender]
    return [d.owner, s.requesting, s.requested]


def advance(state: TransferState, profile: TransferProfile, now: datetime) -> Transition:
    """Flag every open deadline that has passed by ``now``, and tell both sides."""
    s = state.model_copy(deep=True)
    notices: list[Notice] = []
    for d in sorted(s.deadlines, key=lambda d: d.due):
        if not d.open or d.overdue or d.due > now:
            continue
        d.overdue = True
        basis = "hub policy" if d.basis == "hub_policy" else "treaty"
        _record(s, d.due, "overdue", HUB_SENDER, message_id=d.about_message_id,
                note=f"art. {d.article} ({basis}): {d.code} by {d.owner} was due {d.due}")
        notices += _notify(s.request_id, "overdue", _told(s, d), about=None, key=d.key,
                           deadline=d.code, article=d.article, basis=d.basis,
                           due=d.due.isoformat(), owner=d.owner)
    return Transition(state=s, notices=notices)


def correct_overdue(state: TransferState, profile: TransferProfile, message: tm.TransferInbound,
                    arrived: datetime, now: datetime) -> Transition | None:
    """Every deadline judged by when the message that meets it reached the hub: one whose
    overdue timer fired while that message waited (an outage), though it had arrived
    before the due date, was met on time. Its overdue mark is withdrawn, on the record and
    to those the overdue notice told; None if there is nothing to correct. The deadlines
    a message meets are those ``apply`` closes, whatever the article."""
    try:
        after = apply(state, profile, message, now).state
    except Rejected:
        return None
    met = {d.key for d in after.deadlines if not d.open}
    late = {d.key for d in state.deadlines
            if d.open and d.overdue and d.key in met and arrived < d.due}
    if not late:
        return None
    s = state.model_copy(deep=True)
    notices: list[Notice] = []
    mid = message.message_id
    for d in s.deadlines:
        if d.key not in late:
            continue
        d.overdue = False
        _record(s, now, "overdue_withdrawn", HUB_SENDER, message_id=mid,
                note=f"art. {d.article}: {message.kind} {mid} reached the hub at "
                     f"{arrived.isoformat()}, before {d.code} was due {d.due.isoformat()}; "
                     "it was applied later")
        notices += _notify(s.request_id, "overdue_withdrawn", _told(s, d), about=mid,
                           key=f"overdue-withdrawn-{d.key}", deadline=d.code,
                           article=d.article, due=d.due.isoformat(),
                           arrived_at=arrived.isoformat())
    return Transition(state=s, notices=notices)

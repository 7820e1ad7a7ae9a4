"""The request-for-assistance lifecycle as a pure state machine (SCO 2010, art. 5–7).

No Temporal, no I/O, no clock: every function takes the state, the treaty profile, a
message or the current time, and returns the new state and the notices to send. The
Temporal workflow in ``request.py`` is a thin shell that feeds it messages and timers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from treatyflow.constants import HUB_SENDER
from treatyflow.schemas import limits
from treatyflow.schemas import messages as ms
from treatyflow.schemas.messages import CONSENT_KINDS
from treatyflow.schemas.treaty import ClockRule, TreatyProfile
from treatyflow.workflows.assistance.rules import check, check_new_request
from treatyflow.workflows.assistance.state import (
    Consent,
    RequestState,
    ResultsHandling,
    Status,
    Transfer,
    Transition,
    _day,
    _notify,
    _record,
)
from treatyflow.workflows.common import Notice, Rejected, _iso, taken

# --- the clock ----------------------------------------------------------------------


def _pause(state: RequestState, rule: ClockRule, now: datetime) -> None:
    if rule is ClockRule.PAUSED and state.deadline is not None and state.paused_at is None:
        state.paused_at = now


def _resume(state: RequestState, now: datetime) -> None:
    if state.paused_at is not None and state.deadline is not None:
        state.deadline += now - state.paused_at
    state.paused_at = None


def _start_clock(state: RequestState, profile: TreatyProfile, now: datetime) -> None:
    """Art. 6.1: executed, as a rule, within 30 days from the date of receipt."""
    if state.received_at is not None:
        return  # receipt was already deemed at delivery: the date of receipt stands
    state.received_at = now
    state.deadline = now + _day(state) * profile.deadlines.execution_days
    state.paused_at = None
    state.overdue = False
    state.reminders_done = []


# --- sending ------------------------------------------------------------------------


def open_request(
    profile: TreatyProfile, message: ms.RequestMessage, now: datetime, time_scale: float = 1.0
) -> Transition:
    """A new request accepted by the hub: delivered to the requested authority (art. 5)."""
    problems = check_new_request(profile, message)
    if problems:
        raise Rejected(problems)
    body = message.body
    state = RequestState(
        treaty_id=profile.id,
        request_id=message.request_id,
        requesting=message.sender,
        requested=message.recipient,
        status=Status.SENT,
        request=body,
        time_scale=time_scale,
        opened_at=now,
        delivered_at=now,
        oral_unconfirmed=body.oral,
        last_message_id=message.message_id,
        applied=[message.message_id],
        content_bytes=limits.content_size(message),
    )
    if body.oral:
        # Art. 5.2: an oral request must be confirmed in writing within 72 hours.
        state.confirm_by = now + timedelta(hours=profile.deadlines.oral_confirmation_hours) * (
            time_scale
        )
    _record(state, now, "request_sent", message.sender, message_id=message.message_id,
            note="oral, urgent" if body.oral else ("urgent" if body.urgent else None))
    notices = _notify(
        state, "request_delivered", [state.requested], about=message.message_id,
        request=body.model_dump(mode="json"), confirm_by=_iso(state.confirm_by),
    ) + _notify(state, "request_accepted", [state.requesting], about=message.message_id,
                confirm_by=_iso(state.confirm_by))
    return Transition(state=state, notices=notices)


# --- messages on an open request ----------------------------------------------------


def apply(
    state: RequestState, profile: TreatyProfile, message: ms.InboundMessage, now: datetime
) -> Transition:
    """Apply one message; raises ``Rejected`` with every reason if it is not allowed now."""
    s = taken(state, check(state, profile, message), message)
    s.last_message_id = message.message_id
    mid = message.message_id
    rules = profile.deadlines
    notices: list[Notice] = []
    note: str | None = None
    match message.kind:
        case "confirmation":
            assert isinstance(message, ms.ConfirmationMessage)
            s.request = message.body.request
            s.oral_unconfirmed = False
            s.confirm_by = None
            notices += _notify(s, "request_confirmed", [s.requested], about=mid,
                               request=s.request.model_dump(mode="json"))
        case "receipt":
            s.status = Status.RECEIVED
            _start_clock(s, profile, now)
            notices += _notify(s, "received", [s.requesting], about=mid)
        case "clarification_request":
            s.status = Status.CLARIFICATION_REQUESTED
            s.open_clarification = mid
            _pause(s, rules.clock_during_clarification, now)
            body = message.body.model_dump(mode="json")
            notices += _notify(s, "clarification_requested", [s.requesting], about=mid, **body)
        case "clarification":
            s.status = Status.IN_EXECUTION
            s.open_clarification = None
            _resume(s, now)
            notices += _notify(s, "clarification_provided", [s.requested], about=mid,
                               answer=message.body.answer)  # type: ignore[union-attr]
        case "delay":
            s.status = Status.IN_EXECUTION
            note = message.body.reason  # type: ignore[union-attr]
            notices += _notify(s, "delayed", [s.requesting], about=mid, reason=note)
        case "forward":
            assert isinstance(message, ms.ForwardMessage)
            s.forwarded_from.append(s.requested)
            s.requested = message.body.to_authority
            s.status = Status.FORWARDED
            # Art. 6.1: the clock runs from receipt by the authority that executes it.
            s.received_at = s.deadline = s.paused_at = None
            s.delivered_at = now
            s.overdue = False
            s.reminders_done = []
            note = f"to {s.requested}: {message.body.reason}"
            notices += _notify(s, "forwarded", [s.requesting], about=mid,
                               to_authority=s.requested, reason=message.body.reason)
            # The new authority gets the request as the requester signed it (and its
            # written confirmation), then the forward itself (art. 5.5, 6.3).
            documents = [s.applied[0], *(e.message_id for e in s.timeline
                                         if e.event == "confirmation" and e.message_id)]
            notices += _notify(s, "request_delivered", [s.requested], about=mid,
                               request=s.request.model_dump(mode="json"),
                               forwarded_by=s.forwarded_from[-1], originals=[*documents, mid])
        case "deferral":
            assert isinstance(message, ms.DeferralMessage)
            s.status = Status.DEFERRED
            s.grounds = list(message.body.grounds)
            _pause(s, rules.clock_during_deferral, now)
            note = message.body.reason
            notices += _notify(s, "deferred", [s.requesting], about=mid,
                               grounds=s.grounds, reason=note)
        case "resumption":
            s.status = Status.IN_EXECUTION
            _resume(s, now)
            notices += _notify(s, "resumed", [s.requesting], about=mid)
        case "refusal":
            assert isinstance(message, ms.RefusalMessage)
            b = message.body
            s.grounds = list(b.grounds)
            note = b.reason
            if b.extent == "whole":
                s.status = Status.REFUSED
                s.outcome = "whole"
                notices += _notify(s, "refused", [s.requesting], about=mid,
                                   grounds=s.grounds, reason=b.reason)
            else:
                s.refused_part = b.refused_part
                # Still deferred, or still waiting on the requester's answer: the rest
                # stays paused until the resumption or the clarification arrives.
                if s.status not in (Status.DEFERRED, Status.CLARIFICATION_REQUESTED):
                    _resume(s, now)
                    s.status = Status.IN_EXECUTION
                notices += _notify(s, "refused_in_part", [s.requesting], about=mid,
                                   grounds=s.grounds, reason=b.reason, refused_part=b.refused_part)
        case "execution_report":
            assert isinstance(message, ms.ExecutionReportMessage)
            s.status = Status.EXECUTED
            s.outcome = message.body.extent
            # Art. 7: the results carry their marking and the purpose they serve; other
            # use or transfer waits for the provider's written consent.
            window = profile.deadlines.consent_window_days
            s.results = ResultsHandling(
                report_message_id=mid, provided_by=s.requested, provided_at=now,
                confidentiality=message.body.confidentiality, purpose=s.request.purpose,
                open_until=now + _day(s) * window if window else None)
            notices += _notify(s, "executed", [s.requesting], about=mid,
                               **message.body.model_dump(mode="json"),
                               handling=s.results.restrictions())
        case "consent_request":
            assert isinstance(message, ms.ConsentRequestMessage) and s.results is not None
            ask = message.body
            s.results.consents.append(Consent(
                request_message_id=mid, scope=ask.scope, purpose=ask.purpose,
                third_party=ask.third_party, asked_at=now))
            note = ask.scope + (f" to {ask.third_party}" if ask.third_party else "")
            notices += _notify(s, "consent_requested", [s.results.provided_by], about=mid,
                               **ask.model_dump(mode="json"))
        case "consent_decision":
            assert isinstance(message, ms.ConsentDecisionMessage) and s.results is not None
            answer = message.body
            asked = s.results.consent(message.in_reply_to)
            assert asked is not None
            asked.decision_message_id, asked.granted = mid, answer.granted
            asked.conditions, asked.decided_at = answer.conditions, now
            event = "consent_granted" if answer.granted else "consent_refused"
            note = f"{event}: {asked.scope}" + (
                f" to {asked.third_party}" if asked.third_party else "")
            notices += _notify(s, event, [s.requesting], about=mid,
                               consent_request=asked.request_message_id, scope=asked.scope,
                               purpose=asked.purpose, third_party=asked.third_party,
                               conditions=answer.conditions, reason=answer.reason)
        case "results_transfer":
            assert isinstance(message, ms.ResultsTransferMessage) and s.results is not None
            consent = s.results.consent(message.body.consent)
            assert consent is not None
            s.results.transfers.append(Transfer(message_id=mid, to_authority=message.recipient,
                                                consent=message.body.consent, at=now))
            note = f"to {message.recipient} under consent {message.body.consent}"
            handling = s.results.restrictions() | {
                "purpose": consent.purpose,
                "third_party_transfer": f"no onward transfer without the prior written "
                                        f"approval of {s.results.provided_by} (art. 7.3)",
            }
            notices += _notify(s, "results_transferred", [message.recipient], about=mid,
                               transferred_by=s.requesting, content=message.body.content,
                               consent=message.body.consent, conditions=consent.conditions,
                               handling=handling)
            notices += _notify(s, "results_transferred", [s.results.provided_by], about=mid,
                               transferred_by=s.requesting, to_authority=message.recipient,
                               consent=message.body.consent)
        case "withdrawal":
            s.status = Status.WITHDRAWN
            note = message.body.reason  # type: ignore[union-attr]
            notices += _notify(s, "withdrawn", [s.requested], about=mid, reason=note)
        case _:  # pragma: no cover - check() refuses every other kind
            raise Rejected([f"unknown kind {message.kind}"])
    if message.kind in CONSENT_KINDS and s.results is not None and s.results.open_until:
        # Hub policy: the consent phase ends after a quiet spell, counted from the last.
        window = profile.deadlines.consent_window_days or 0
        s.results.open_until = max(s.results.open_until, now + _day(s) * window)
    _record(s, now, message.kind, message.sender, message_id=mid, note=note)
    return Transition(state=s, notices=notices)


# Messages that answer the art. 6.1 deadline: the execution, or the refusal of it.
ANSWERS_DEADLINE = frozenset({"execution_report", "refusal"})


def correct_overdue(state: RequestState, message: ms.InboundMessage, arrived: datetime,
                    now: datetime) -> Transition | None:
    """Art. 6.1 judged by when the answer reached the hub, not by when it could be applied:
    a report or refusal that arrived before the deadline, applied after the overdue timer
    fired while it waited (an outage), was on time. The overdue mark is withdrawn, on the
    record and to both parties; None if there is nothing to correct."""
    if (not state.overdue or state.deadline is None or arrived >= state.deadline
            or message.kind not in ANSWERS_DEADLINE):
        return None
    s = state.model_copy(deep=True)
    s.overdue = False
    return _on_time(s, "overdue_withdrawn", message, arrived, now,
                    f"art. 6.1: {message.kind} {message.message_id} reached the hub at "
                    f"{_iso(arrived)}, before the deadline {_iso(s.deadline)}; it was applied "
                    "later", deadline=_iso(s.deadline))


def correct_lapse(state: RequestState, message: ms.InboundMessage, arrived: datetime,
                  now: datetime) -> Transition | None:
    """Art. 5.2 judged by arrival: a written confirmation that reached the hub within the
    hours allowed, applied after the lapse timer fired while it waited (an outage), was in
    time. The lapse is withdrawn, on the record and to both parties, and the request is
    as it was; None if there is nothing to correct."""
    if (state.status != Status.LAPSED or state.lapsed_from is None or state.confirm_by is None
            or arrived >= state.confirm_by or message.kind != "confirmation"):
        return None
    s = state.model_copy(deep=True)
    s.status, s.lapsed_from, s.oral_unconfirmed = state.lapsed_from, None, True
    return _on_time(s, "lapse_withdrawn", message, arrived, now,
                    f"art. 5.2: confirmation {message.message_id} reached the hub at "
                    f"{_iso(arrived)}, before the oral request lapsed at "
                    f"{_iso(state.confirm_by)}; it was applied later",
                    confirm_by=_iso(state.confirm_by))


def _on_time(s: RequestState, event: str, message: ms.InboundMessage, arrived: datetime,
             now: datetime, note: str, **detail: Any) -> Transition:
    """A deadline's mark withdrawn from ``s`` for ``message``, which reached the hub in
    time: recorded, and both parties told (with when it arrived)."""
    mid = message.message_id
    _record(s, now, event, HUB_SENDER, message_id=mid, note=note)
    notices = _notify(s, event, [s.requesting, s.requested], about=mid,
                      key=f"{event.replace('_', '-')}-{mid}", arrived_at=_iso(arrived),
                      **detail)
    return Transition(state=s, notices=notices)


def correct_by_arrival(state: RequestState, message: ms.InboundMessage, arrived: datetime,
                       now: datetime) -> Transition | None:
    """The deadline a message answers, judged by when it reached the hub (art. 5.2, 6.1)."""
    return (correct_lapse(state, message, arrived, now)
            or correct_overdue(state, message, arrived, now))


# --- the passing of time ------------------------------------------------------------


def _due_events(state: RequestState, profile: TreatyProfile) -> list[tuple[datetime, str, int]]:
    """Timer events still to come: (when, event, days-before for reminders)."""
    if state.consent_open:
        assert state.results is not None and state.results.open_until is not None
        return [(state.results.open_until, "consent_window_closed", 0)]
    if state.final:
        return []
    events: list[tuple[datetime, str, int]] = []
    if state.oral_unconfirmed and state.confirm_by is not None:
        events.append((state.confirm_by, "lapsed", 0))
    deemed = profile.deadlines.receipt_deemed_after_days
    if (state.status in (Status.SENT, Status.FORWARDED) and state.received_at is None
            and state.delivered_at is not None and deemed is not None):
        events.append((state.delivered_at + _day(state) * deemed, "receipt_deemed", 0))
    if state.clock_running:
        assert state.deadline is not None
        for days in profile.deadlines.reminder_days_before:
            at = state.deadline - _day(state) * days
            if days not in state.reminders_done and state.received_at and at > state.received_at:
                events.append((at, "deadline_reminder", days))
        if not state.overdue:
            events.append((state.deadline, "overdue", 0))
    return sorted(events)


def next_due(state: RequestState, profile: TreatyProfile) -> datetime | None:
    """When the workflow must next wake for this request, if ever."""
    events = _due_events(state, profile)
    return events[0][0] if events else None


def advance(state: RequestState, profile: TreatyProfile, now: datetime) -> Transition:
    """Apply every deadline that has fallen due by ``now``."""
    s = state.model_copy(deep=True)
    notices: list[Notice] = []
    both = [s.requesting, s.requested]
    for at, event, days in _due_events(state, profile):
        if at > now or (s.final and event != "consent_window_closed"):
            break
        if event == "consent_window_closed":
            assert s.results is not None
            s.results.closed = True
            _record(s, at, "consent_window_closed", HUB_SENDER,
                    note="hub policy: no consent message for the set period; art. 7 still "
                         "binds the results")
            notices += _notify(s, "consent_window_closed", both, about=None,
                               key=f"consent-closed-{_iso(at)}")
            break
        if event == "receipt_deemed":
            # Art. 6.1 counts from receipt; unacknowledged, the hub's delivery fixes it.
            assert s.delivered_at is not None
            s.status = Status.RECEIVED
            _start_clock(s, profile, s.delivered_at)
            _record(s, at, "receipt_deemed", HUB_SENDER,
                    note="no acknowledgement: received as of delivery (art. 6.1)")
            notices += _notify(s, "receipt_deemed", both, about=None,
                               key=f"deemed-{_iso(s.delivered_at)}")
            # Reminders or the deadline may already be due: look again from here.
            later = advance(s, profile, now)
            s = later.state
            notices += later.notices
            break
        if event == "lapsed":
            # Art. 5.2: not confirmed in writing within 72 hours.
            s.lapsed_from = s.status
            s.status = Status.LAPSED
            s.oral_unconfirmed = False
            _record(s, at, "lapsed", HUB_SENDER,
                    note="art. 5.2: oral request not confirmed in writing in time")
            notices += _notify(s, "lapsed", both, about=None, key="lapsed")
        elif event == "deadline_reminder":
            s.reminders_done.append(days)
            if now >= (s.deadline or now):
                continue  # already due: the overdue notice says it all
            _record(s, at, "deadline_reminder", HUB_SENDER, note=f"{days} day(s) left")
            notices += _notify(s, "deadline_reminder", both, about=None,
                               key=f"reminder-{days}-{_iso(s.deadline)}", days_left=days)
        elif event == "overdue":
            s.overdue = True
            _record(s, at, "overdue", HUB_SENDER, note="art. 6.1: 30 days from receipt passed")
            notices += _notify(s, "overdue", both, about=None, key=f"overdue-{_iso(s.deadline)}")
    return Transition(state=s, notices=notices)

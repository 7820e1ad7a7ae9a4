"""The request-for-assistance lifecycle as a pure state machine (SCO 2010, art. 5–7).

No Temporal, no I/O, no clock: every function takes the state, the treaty profile, a
message or the current time, and returns the new state and the notices to send. The
Temporal workflow in ``request.py`` is a thin shell that feeds it messages and timers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from treatyflow.constants import HUB_SENDER
from treatyflow.schemas import limits
from treatyflow.schemas.envelope import MultiLine, Name, Written, text_problem
from treatyflow.schemas.messages import (
    CONSENT_KINDS,
    REQUESTED_KINDS,
    REQUESTER_KINDS,
    Confidentiality,
    ConfirmationMessage,
    ConsentDecisionMessage,
    ConsentRequestMessage,
    DeferralMessage,
    ExecutionReportMessage,
    ForwardMessage,
    InboundMessage,
    NoticeBody,
    NoticeMessage,
    RefusalMessage,
    RequestBody,
    RequestMessage,
    ResultsTransferMessage,
)
from treatyflow.schemas.treaty import ClockRule, TreatyProfile

_IDS = uuid.UUID("6f1d2c1e-9a51-4d38-9f0c-3a1f0b7f5e21")


class Status(StrEnum):
    """The states a user sees (docs/design.md); ``overdue`` is a flag beside them."""

    SENT = "sent"
    RECEIVED = "received"
    CLARIFICATION_REQUESTED = "clarification_requested"
    FORWARDED = "forwarded"
    DEFERRED = "deferred"
    IN_EXECUTION = "in_execution"
    EXECUTED = "executed"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    LAPSED = "lapsed"
    CLOSED = "closed"  # by an operator: a party abandoned the request


FINAL = frozenset(
    {Status.EXECUTED, Status.REFUSED, Status.WITHDRAWN, Status.LAPSED, Status.CLOSED}
)


class Notice(BaseModel):
    """A message the hub must send to one party; its id is fixed here, so a retried
    publish is a duplicate the receiver can drop."""

    message_id: str
    recipient: str
    event: str
    about_message_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    originals: list[str] = Field(
        default_factory=list,
        description="The message ids whose signed originals go with the notice (art. 5.5). "
        "Empty: the message it is about, when the recipient is not that message's sender.")


class TimelineEntry(BaseModel):
    """One line of a request's history: a message applied or a deadline reached."""

    at: datetime
    event: str
    actor: str
    status: Status
    message_id: str | None = None
    note: str | None = None


class Consent(BaseModel):
    """One consent asked of the providing authority and, once decided, its answer
    (art. 7.2: use for another purpose; art. 7.3: transfer to a third party)."""

    request_message_id: str
    scope: Literal["other_purpose", "third_party_transfer"]
    purpose: str
    third_party: str | None = None
    asked_at: datetime
    decision_message_id: str | None = None
    granted: bool | None = None
    conditions: str | None = None
    decided_at: datetime | None = None


class Transfer(BaseModel):
    """Results transmitted through the hub to a third party's authority (art. 7.3)."""

    message_id: str
    to_authority: str
    consent: str = Field(description="The granted consent decision it relied on.")
    at: datetime


class ResultsHandling(BaseModel):
    """Art. 7: the handling restrictions that travel with the results, and the consents
    and transfers on record under them."""

    report_message_id: str
    provided_by: str = Field(description="The authority that transmitted the results.")
    provided_at: datetime
    confidentiality: Confidentiality = Field(description="Set by the provider (art. 7.1).")
    purpose: str = Field(description="The purpose they were requested for (art. 5.4, 7.2).")
    open_until: datetime | None = Field(
        None, description="Hub policy: consent messages are accepted until then.")
    closed: bool = False
    consents: list[Consent] = Field(default_factory=list)
    transfers: list[Transfer] = Field(default_factory=list)

    def restrictions(self) -> dict[str, str]:
        """What the recipient of the results may and may not do with them, as sent."""
        return {
            "confidentiality": self.confidentiality.value,
            "purpose": self.purpose,
            "other_purpose": f"not without the written consent of {self.provided_by} "
                             "(art. 7.2)",
            "third_party_transfer": f"not without the prior written approval of "
                                    f"{self.provided_by} (art. 7.3)",
        }

    def consent(self, message_id: str | None) -> Consent | None:
        """The consent asked by, or decided by, this message id."""
        return next((c for c in self.consents
                     if message_id in (c.request_message_id, c.decision_message_id)), None)


class RequestState(BaseModel):
    """Everything the lifecycle knows about one request."""

    treaty_id: str
    request_id: str
    requesting: str
    requested: str
    status: Status
    request: RequestBody
    time_scale: float = Field(1.0, gt=0, description="Real seconds per treaty second.")
    opened_at: datetime
    oral_unconfirmed: bool = False
    confirm_by: datetime | None = None
    lapsed_from: Status | None = Field(
        None, description="The status an art. 5.2 lapse ended: a written confirmation that "
        "reached the hub in time, applied after the lapse, restores it.")
    delivered_at: datetime | None = Field(
        None, description="When the current requested authority was handed the request."
    )
    received_at: datetime | None = None
    deadline: datetime | None = None
    paused_at: datetime | None = None
    overdue: bool = False
    reminders_done: list[int] = Field(default_factory=list)
    open_clarification: str | None = None
    refused_part: str | None = None
    grounds: list[str] = Field(default_factory=list)
    outcome: str | None = Field(None, description="full/partial or whole for final states.")
    forwarded_from: list[str] = Field(default_factory=list)
    last_message_id: str | None = None
    applied: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    results: ResultsHandling | None = Field(
        None, description="Art. 7: set by the execution report.")
    content_bytes: int = Field(0, description="UTF-8 JSON bytes of every message applied "
                               "(limits.MAX_CONTENT_BYTES_PER_REQUEST).")

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def consent_open(self) -> bool:
        """Executed, and the hub still carries consent messages about the results (art. 7)."""
        return (self.status is Status.EXECUTED and self.results is not None
                and self.results.open_until is not None and not self.results.closed)

    @property
    def clock_running(self) -> bool:
        return (
            not self.final
            and self.deadline is not None
            and self.paused_at is None
        )


class Transition(BaseModel):
    """The result of applying a message or the passing of time."""

    state: RequestState
    notices: list[Notice] = Field(default_factory=list)


class Rejected(ValueError):
    """A message the lifecycle does not allow now; ``problems`` names every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- helpers ------------------------------------------------------------------------


def _day(state: RequestState) -> timedelta:
    return timedelta(days=1) * state.time_scale


def _notice_id(*parts: object) -> str:
    return str(uuid.uuid5(_IDS, "|".join(str(p) for p in parts)))


def _notify(
    state: RequestState,
    event: str,
    recipients: Iterable[str],
    *,
    about: str | None,
    key: object = "",
    originals: list[str] | None = None,
    **detail: Any,
) -> list[Notice]:
    return [
        Notice(
            message_id=_notice_id(state.request_id, about or key, event, recipient),
            recipient=recipient,
            event=event,
            about_message_id=about,
            detail={k: v for k, v in detail.items() if v is not None},
            originals=originals or [],
        )
        for recipient in recipients
    ]


def _record(
    state: RequestState, at: datetime, event: str, actor: str, *, message_id: str | None = None,
    note: str | None = None,
) -> None:
    state.timeline.append(
        TimelineEntry(
            at=at, event=event, actor=actor, status=state.status, message_id=message_id, note=note
        )
    )


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


def check_request_content(profile: TreatyProfile, body: RequestBody, *, written: bool) -> list[str]:
    """What the treaty requires of a request's content; every problem, each with its article."""
    problems: list[str] = []
    if body.language not in profile.working_languages:
        problems.append(
            f"art. 11: language {body.language!r} is not a working language of {profile.id} "
            f"({', '.join(profile.working_languages)})"
        )
    if body.oral and not body.urgent:
        problems.append("art. 5.2: a request may be transmitted orally only in urgent cases")
    if written and body.oral:
        problems.append("art. 5.2: a written confirmation must not itself be marked oral")
    if written or not body.oral:
        if body.signed_by is None and not body.sealed:
            problems.append(
                "art. 5.5: a written request must be signed by the head of the requesting "
                "authority or a deputy, and/or sealed (neither signed_by nor sealed)"
            )
        elif body.signed_by is not None and body.signed_by.position not in (
            profile.signatory_positions
        ):
            problems.append(
                f"art. 5.5: signed by a {body.signed_by.position!r}; only "
                f"{' or '.join(profile.signatory_positions)} may sign"
            )
    if body.form_of_cooperation not in profile.forms_of_cooperation:
        problems.append(
            f"art. 3: form of cooperation {body.form_of_cooperation!r} is not one of "
            f"{', '.join(profile.forms_of_cooperation)}"
        )
    if body.crime_category is not None and body.crime_category not in profile.crime_categories:
        problems.append(f"art. 1: crime category {body.crime_category!r} is not in the profile")
    return problems


def check_new_request(profile: TreatyProfile, message: RequestMessage) -> list[str]:
    """Every reason a new request cannot be sent under this treaty (art. 2, 5, 11, 13)."""
    problems: list[str] = []
    if message.treaty_id != profile.id:
        problems.append(f"treaty {message.treaty_id!r} does not match profile {profile.id!r}")
    sender = profile.authority(message.sender)
    recipient = profile.authority(message.recipient)
    if sender is None:
        problems.append(
            f"art. 2: {message.sender} is not a competent authority under {profile.id}"
        )
    if recipient is None:
        problems.append(
            f"art. 2: {message.recipient} is not a competent authority under {profile.id}"
        )
    if sender and recipient and sender.state == recipient.state:
        problems.append(
            f"art. 2, 5.1: both authorities belong to {sender.state}; a request goes between "
            "the competent authorities of two different parties"
        )
    sent_on = message.sent_at.date()
    if sent_on < profile.entry_into_force:
        problems.append(f"art. 12: {profile.id} was not in force on {sent_on.isoformat()}")
    if profile.termination_notice_date is not None and sent_on >= profile.termination_notice_date:
        problems.append(
            f"art. 13: {profile.id} was terminated on {profile.termination_notice_date}; "
            "only requests begun before it run on (art. 13.3)"
        )
    problems += check_request_content(profile, message.body, written=False)
    return problems


def open_request(
    profile: TreatyProfile, message: RequestMessage, now: datetime, time_scale: float = 1.0
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- messages on an open request ----------------------------------------------------

_ALLOWED_FROM: dict[str, frozenset[Status]] = {
    "confirmation": frozenset(Status) - FINAL,
    "receipt": frozenset({Status.SENT, Status.FORWARDED}),
    "clarification_request": frozenset({Status.RECEIVED, Status.IN_EXECUTION}),
    "clarification": frozenset({Status.CLARIFICATION_REQUESTED}),
    "delay": frozenset({Status.RECEIVED, Status.IN_EXECUTION}),
    "forward": frozenset({Status.SENT, Status.FORWARDED, Status.RECEIVED, Status.IN_EXECUTION}),
    "deferral": frozenset({Status.RECEIVED, Status.IN_EXECUTION}),
    "resumption": frozenset({Status.DEFERRED}),
    "refusal": frozenset(
        {Status.RECEIVED, Status.IN_EXECUTION, Status.DEFERRED, Status.CLARIFICATION_REQUESTED}
    ),
    "execution_report": frozenset({Status.RECEIVED, Status.IN_EXECUTION}),
    "withdrawal": frozenset(Status) - FINAL,
    "consent_request": frozenset({Status.EXECUTED}),
    "consent_decision": frozenset({Status.EXECUTED}),
    "results_transfer": frozenset({Status.EXECUTED}),
}
CONSENT_REQUIRED = "consent_required"


def not_a_party(state: RequestState, message: InboundMessage) -> list[str]:
    """The refusal for a sender who never was a party to the request (requester, requested
    authority, or one it was forwarded from, art. 6.3); empty for a party."""
    if message.sender in (state.requesting, state.requested, *state.forwarded_from):
        return []
    return [f"{message.sender} is not a party to request {state.request_id}"]


def check(state: RequestState, profile: TreatyProfile, message: InboundMessage) -> list[str]:
    """Every reason this message cannot be applied to this request now (empty: it can)."""
    kind = message.kind
    if message.request_id != state.request_id or message.treaty_id != state.treaty_id:
        return [f"message is about {message.treaty_id}/{message.request_id}, "
                f"not {state.treaty_id}/{state.request_id}"]
    # Who asks comes first: a stranger learns nothing about the request.
    if message.sender not in (state.requesting, state.requested):
        return [f"{message.sender} is not a party to request {state.request_id}"]
    if message.message_id in state.applied:
        return [f"duplicate: message {message.message_id} was already applied"]
    if kind == "request":
        return [f"request {state.request_id} already exists (state {state.status})"]
    if kind in REQUESTER_KINDS and message.sender != state.requesting:
        return [f"only the requesting authority {state.requesting} may send a {kind}"]
    if kind in REQUESTED_KINDS and message.sender != state.requested:
        return [f"only the requested authority {state.requested} may send a {kind}"]
    if kind in CONSENT_KINDS:
        return _check_after_results(state, profile, message) + limit_problems(state, message)
    counterpart = state.requested if message.sender == state.requesting else state.requesting
    problems: list[str] = []
    if message.recipient != counterpart:
        problems.append(f"recipient must be {counterpart}, not {message.recipient}")
    if state.final:
        return [f"request {state.request_id} is already {state.status}; nothing more is accepted"]
    if state.status not in _ALLOWED_FROM[kind]:
        problems.append(
            f"a {kind} is not allowed while the request is {state.status} "
            f"(allowed when {', '.join(sorted(_ALLOWED_FROM[kind]))})"
        )
    match message:
        case ConfirmationMessage():
            if not state.oral_unconfirmed:
                problems.append("art. 5.2: there is no unconfirmed oral request to confirm")
            problems += check_request_content(profile, message.body.request, written=True)
        case ForwardMessage():
            target = profile.authority(message.body.to_authority)
            current = profile.authority(state.requested)
            if target is None:
                problems.append(
                    f"art. 6.3: {message.body.to_authority} is not a competent authority "
                    f"under {profile.id}"
                )
            elif current is not None and target.state != current.state:
                problems.append(
                    f"art. 6.3: a request is forwarded within the same state ({current.state}), "
                    f"not to {target.state}"
                )
            elif target.id == state.requested or target.id in state.forwarded_from:
                problems.append(f"art. 6.3: {target.id} already had this request")
        case DeferralMessage():
            problems += _check_grounds(profile, message.body.grounds, deferral=True)
        case RefusalMessage():
            problems += _check_grounds(profile, message.body.grounds, deferral=False)
            if message.body.extent == "part":
                if not message.body.refused_part:
                    problems.append("art. 6.9: a refusal in part must say which part")
                if state.refused_part:
                    problems.append("a part of this request was already refused")
        case ExecutionReportMessage():
            if state.refused_part and message.body.extent == "full":
                problems.append(
                    f"part of the request was refused ({state.refused_part}); "
                    "the execution report must be partial"
                )
        case _:
            pass
    if kind == "clarification" and message.in_reply_to != state.open_clarification:
        problems.append(
            f"a clarification must reply to the open clarification request "
            f"{state.open_clarification} (in_reply_to is {message.in_reply_to})"
        )
    return problems + limit_problems(state, message)


# Where the treaty speaks of each kind a request may carry more than once: named in the
# refusal of one past its limit (the limits themselves are hub policy, ``limits``).
_ARTICLE = {"delay": "art. 6.2", "clarification_request": "art. 5.3, 6.4",
            "forward": "art. 6.3", "deferral": "art. 6.7, 6.9",
            "consent_request": "art. 7.2, 7.3", "results_transfer": "art. 7.3"}
# Hub policy, not treaty text: every consent request extends the consent phase and its
# record, so a request's record stays bounded (continue-as-new carries it whole).
MAX_CONSENT_REQUESTS = limits.MAX_PER_KIND


def limit_problems(state: RequestState, message: InboundMessage) -> list[str]:
    """Every per-request limit this message would pass (``limits``): how many of its kind,
    the bytes of all messages, the timeline; each refusal names the limit and its number."""
    problems: list[str] = []
    cap = limits.per_kind(message.kind)
    if cap is not None and sum(e.event == message.kind for e in state.timeline) >= cap:
        where = f" ({_ARTICLE[message.kind]})" if message.kind in _ARTICLE else ""
        problems.append(limits.limit_problem(
            f"at most {cap} {message.kind} messages{where} per request, the hub's limit; "
            f"request {state.request_id} has {cap}"))
    problems += limits.budget_problems(state.content_bytes, limits.content_size(message),
                                       len(state.timeline))
    return problems


def _closed_to_consent(state: RequestState) -> str:
    return (f"request {state.request_id} is executed and the hub's consent phase for its "
            "results has closed; nothing more is accepted")


def _check_after_results(
    state: RequestState, profile: TreatyProfile, message: InboundMessage
) -> list[str]:
    """Consent messages and transfers: only about results provided, while the hub carries
    them (art. 7)."""
    kind, results = message.kind, state.results
    if state.status is not Status.EXECUTED or results is None:
        return [f"art. 7: a {kind} concerns results provided, and request {state.request_id} "
                f"has none (it is {state.status})"]
    if not state.consent_open:
        return [_closed_to_consent(state)]
    problems: list[str] = []
    counterpart = state.requested if message.sender == state.requesting else state.requesting
    if kind != "results_transfer" and message.recipient != counterpart:
        problems.append(f"recipient must be {counterpart}, not {message.recipient}")
    match message:
        case ConsentRequestMessage():
            body = message.body
            if body.third_party is not None:
                problems += _check_third_party(state, profile, body.third_party)
            pending = [c for c in results.consents if c.granted is None and c.scope == body.scope
                       and c.third_party == body.third_party]
            if pending:
                problems.append(f"consent request {pending[0].request_message_id} for the same "
                                "scope is still awaiting its decision")
        case ConsentDecisionMessage():
            asked = results.consent(message.in_reply_to)
            if asked is None or asked.request_message_id != message.in_reply_to:
                undecided = [c.request_message_id for c in results.consents if c.granted is None]
                problems.append(
                    "a consent decision must reply to a consent request on record "
                    f"(undecided: {', '.join(undecided) or 'none'}; in_reply_to is "
                    f"{message.in_reply_to})")
            elif asked.granted is not None:
                problems.append(f"consent request {asked.request_message_id} was already "
                                f"decided ({asked.decision_message_id})")
        case ResultsTransferMessage():
            problems += consent_problems(state, message)
        case _:  # pragma: no cover - CONSENT_KINDS are the three above
            pass
    return problems


def _check_third_party(state: RequestState, profile: TreatyProfile, third: str) -> list[str]:
    """Art. 7.3: a third party is an authority of a state other than the two parties'."""
    target = profile.authority(third)
    if target is None:
        return [f"art. 7.3: {third} is not a competent authority under {profile.id}; the hub "
                "carries results only between them"]
    own = {a.state for a in (profile.authority(state.requesting),
                             profile.authority(state.requested)) if a is not None}
    if target.state in own:
        return [f"art. 7.3: {third} belongs to {target.state}, a party to this request, not a "
                "third party; its use of the results is use for another purpose (art. 7.2)"]
    return []


def consent_problems(state: RequestState, message: ResultsTransferMessage) -> list[str]:
    """Art. 7.3: why these results may not go to this recipient (empty: a granted consent
    for exactly this third party is on record)."""
    assert state.results is not None
    provider, to = state.results.provided_by, message.recipient
    consent = state.results.consent(message.body.consent)
    if consent is None or consent.decision_message_id != message.body.consent:
        return [f"art. 7.3: no consent decision {message.body.consent} is on record for request "
                f"{state.request_id}; results go to a third party only with the prior written "
                f"approval of {provider}"]
    if not consent.granted:
        return [f"art. 7.3: {provider} refused consent ({consent.decision_message_id}) to "
                f"transmit the results to {consent.third_party or 'another party'}"]
    if consent.scope != "third_party_transfer":
        return [f"art. 7.2, 7.3: consent {consent.decision_message_id} is for use for another "
                "purpose, not for a transfer to a third party"]
    if consent.third_party != to:
        return [f"art. 7.3: consent {consent.decision_message_id} covers a transfer to "
                f"{consent.third_party}, not to {to}"]
    return []


def refusal_code(state: RequestState, message: InboundMessage, problems: list[str]) -> str:
    """The problem code for a refused message: ``limit_reached`` when it passes only limits
    of the hub (``limits``), ``consent_required`` when the only thing missing is the
    providing authority's consent (art. 7), else ``not_allowed_now``."""
    if problems and all(limits.is_limit_problem(p) for p in problems):
        return limits.LIMIT_REACHED
    if (isinstance(message, ResultsTransferMessage) and problems and state.consent_open
            and set(problems) <= set(consent_problems(state, message))):
        return CONSENT_REQUIRED
    return "not_allowed_now"


def _check_grounds(profile: TreatyProfile, codes: list[str], *, deferral: bool) -> list[str]:
    problems = []
    for code in codes:
        ground = profile.ground(code)
        if ground is None:
            known = ", ".join(g.code for g in profile.refusal_grounds)
            problems.append(f"art. 6.7/6.8: unknown ground {code!r} (known: {known})")
        elif deferral and not ground.allows_deferral:
            problems.append(f"art. {ground.article}: {code!r} allows refusal, not deferral")
    return problems


def apply(
    state: RequestState, profile: TreatyProfile, message: InboundMessage, now: datetime
) -> Transition:
    """Apply one message; raises ``Rejected`` with every reason if it is not allowed now."""
    problems = check(state, profile, message)
    if problems:
        raise Rejected(problems)
    s = state.model_copy(deep=True)
    s.applied.append(message.message_id)
    s.last_message_id = message.message_id
    s.content_bytes += limits.content_size(message)
    mid = message.message_id
    rules = profile.deadlines
    notices: list[Notice] = []
    note: str | None = None
    match message.kind:
        case "confirmation":
            assert isinstance(message, ConfirmationMessage)
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
            assert isinstance(message, ForwardMessage)
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
            assert isinstance(message, DeferralMessage)
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
            assert isinstance(message, RefusalMessage)
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
            assert isinstance(message, ExecutionReportMessage)
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
            assert isinstance(message, ConsentRequestMessage) and s.results is not None
            ask = message.body
            s.results.consents.append(Consent(
                request_message_id=mid, scope=ask.scope, purpose=ask.purpose,
                third_party=ask.third_party, asked_at=now))
            note = ask.scope + (f" to {ask.third_party}" if ask.third_party else "")
            notices += _notify(s, "consent_requested", [s.results.provided_by], about=mid,
                               **ask.model_dump(mode="json"))
        case "consent_decision":
            assert isinstance(message, ConsentDecisionMessage) and s.results is not None
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
            assert isinstance(message, ResultsTransferMessage) and s.results is not None
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


def correct_overdue(state: RequestState, message: InboundMessage, arrived: datetime,
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
    mid = message.message_id
    _record(s, now, "overdue_withdrawn", HUB_SENDER, message_id=mid,
            note=f"art. 6.1: {message.kind} {mid} reached the hub at {_iso(arrived)}, before "
                 f"the deadline {_iso(s.deadline)}; it was applied later")
    notices = _notify(s, "overdue_withdrawn", [s.requesting, s.requested], about=mid,
                      key=f"overdue-withdrawn-{mid}", arrived_at=_iso(arrived),
                      deadline=_iso(s.deadline))
    return Transition(state=s, notices=notices)


def correct_lapse(state: RequestState, message: InboundMessage, arrived: datetime,
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
    mid = message.message_id
    _record(s, now, "lapse_withdrawn", HUB_SENDER, message_id=mid,
            note=f"art. 5.2: confirmation {mid} reached the hub at {_iso(arrived)}, before "
                 f"the oral request lapsed at {_iso(state.confirm_by)}; it was applied later")
    notices = _notify(s, "lapse_withdrawn", [s.requesting, s.requested], about=mid,
                      key=f"lapse-withdrawn-{mid}", arrived_at=_iso(arrived),
                      confirm_by=_iso(state.confirm_by))
    return Transition(state=s, notices=notices)


def correct_by_arrival(state: RequestState, message: InboundMessage, arrived: datetime,
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


def envelope_for(state: RequestState, notice: Notice, now: datetime) -> NoticeMessage:
    """The hub's message to one party for one notice, stamped with the request's state."""
    return NoticeMessage(
        kind="notice",
        message_id=notice.message_id,
        request_id=state.request_id,
        treaty_id=state.treaty_id,
        sender=HUB_SENDER,
        recipient=notice.recipient,
        sent_at=now,
        in_reply_to=notice.about_message_id,
        body=NoticeBody(
            event=notice.event,
            status=state.status.value,
            overdue=state.overdue,
            deadline=state.deadline,
            requesting=state.requesting,
            requested=state.requested,
            about_message_id=notice.about_message_id,
            detail=notice.detail,
        ),
    )


_NEXT_MOVE: dict[Status, tuple[str, str]] = {
    Status.SENT: ("requested", "acknowledge receipt (art. 6.1), forward (art. 6.3) or refuse"),
    Status.FORWARDED: ("requested", "acknowledge receipt (art. 6.1)"),
    Status.RECEIVED: ("requested", "execute, or notify delay, deferral or refusal (art. 6)"),
    Status.IN_EXECUTION: ("requested", "report execution (art. 6.1)"),
    Status.CLARIFICATION_REQUESTED: ("requesting", "answer the clarification (art. 5.3, 6.4)"),
    Status.DEFERRED: ("requested", "resume execution or refuse (art. 6.7)"),
}


def next_move(state: RequestState) -> tuple[str, str] | None:
    """Whose move it is (authority id) and what is expected of it; None once final."""
    if state.final:
        return None
    if state.oral_unconfirmed:
        return state.requesting, "confirm the oral request in writing (art. 5.2)"
    side, what = _NEXT_MOVE[state.status]
    return (state.requesting if side == "requesting" else state.requested), what


def treaty_days_left(due: datetime, now: datetime, time_scale: float) -> str:
    """How far ``due`` is from ``now`` in treaty days: real seconds scaled by the request's
    ``time_scale`` (one treaty day is ``86,400 × time_scale`` real seconds)."""
    days = (due - now).total_seconds() / (86_400 * time_scale)
    return f"{days:.1f} treaty days left" if days >= 0 else f"passed {-days:.1f} treaty days ago"


def describe(state: RequestState, now: datetime) -> str:
    """The current details an operator sees in the Temporal UI (markdown; codes only)."""
    lines = [f"**{state.status.value}**" + (f" ({state.outcome})" if state.outcome else "")
             + (" · **OVERDUE**" if state.overdue else ""),
             f"- {state.requesting} → {state.requested}"]
    move = next_move(state)
    if move:
        lines.append(f"- next: {move[0]} to {move[1]}")
    due = state.confirm_by if state.oral_unconfirmed else state.deadline
    if due is not None and not state.final:
        paused = " (clock paused)" if state.paused_at else ""
        left = treaty_days_left(due, now, state.time_scale)
        lines.append(f"- deadline {due.isoformat(timespec='seconds')}: {left}{paused}")
    if state.results is not None:
        r = state.results
        phase = ("consent phase closed" if r.closed or r.open_until is None
                 else f"consent phase open until {r.open_until.isoformat(timespec='seconds')}")
        lines.append(f"- results from {r.provided_by}, {r.confidentiality.value}; other use or "
                     f"transfer only with its written consent (art. 7); {phase}")
        for c in r.consents:
            answer = ("awaiting decision" if c.granted is None
                      else "granted" if c.granted else "refused")
            lines.append(f"- consent {c.scope}" + (f" to {c.third_party}" if c.third_party
                                                   else "") + f": {answer}")
        lines += [f"- transferred to {t.to_authority} under {t.consent}" for t in r.transfers]
    if state.timeline:
        last = state.timeline[-1]
        lines.append(f"- last: {last.event} by {last.actor} at "
                     f"{last.at.isoformat(timespec='seconds')}")
    return "\n".join(lines)


# --- operator actions ---------------------------------------------------------------


class OperatorAction(BaseModel):
    """An operator's step on a request, recorded in its timeline with name and reason."""

    action: Literal["extend_deadline", "resend_last_notice", "withdraw", "close"]
    # Held to the rules of every text the hub carries: visible characters only, nothing
    # blank (a name that shows as empty, hidden text in the reason are refused).
    operator: Name
    reason: Annotated[str, StringConstraints(min_length=10, max_length=2000), MultiLine,
                      Written] = Field(description="Why, in writing.")
    days: int | None = Field(None, ge=1, le=365, description="extend_deadline: treaty days.")
    party: str | None = Field(None, description="resend_last_notice: the authority.")
    deadline: str | None = Field(
        None, max_length=200, description="extend_deadline on a transfer: the code (or key) "
        "of the open deadline to extend, e.g. enforcement_change (art. 12); needed when "
        "several are open. A request has one deadline (art. 6.1).")
    signed: str | None = Field(
        None, max_length=16_384, description="The action as the operator's key signed it: "
        "a JWS (compact) whose payload is this action's JSON without ``signed``. The "
        "workflow acts on nothing else.")
    directory: str | None = Field(
        None, description="The hub's signed key directory, sent along so that a request "
        "holding an older one learns a rotated operators' key (not part of what is signed).")

    def text_problems(self) -> list[str]:
        """Its name and reason held to the wire's text rules in full: visible characters
        only (Temporal's own records are read back without them, so this is asked where
        an action arrives: the hub, the workflow's validator)."""
        found = [(f, text_problem(t, multiline=f == "reason"))
                 for f, t in (("operator", self.operator), ("reason", self.reason))]
        return [f"{f}: {problem}" for f, problem in found if problem]


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
    if action.action == "resend_last_notice":
        parties = {state.requesting, state.requested}
        if action.party not in parties:
            problems.append(f"party must be one of {', '.join(sorted(parties))}")
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


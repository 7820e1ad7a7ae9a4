"""Transfer of a convicted person as a pure state machine (KZ–UAE 2018, art. 4–16, 19).

No Temporal, no I/O, no clock: every function takes the state, the profile, a message or
the current time, and returns the new state and the notices to send. Rules cite their
article; the numbers they use come from the profile.

The diplomatic channel (art. 5.1, 6.1) is modelled as hops: a central authority's message
is accepted by the hub at once (its substance applies then: a state's act is done when it
sends it), then travels sender → sender's foreign ministry → other foreign ministry →
recipient, each hop a ``transfer_relay`` message of the ministry that passes it on. What
the treaty dates from receipt (art. 8.3: the request's receipt; art. 12: being informed;
art. 13.2: the request for information) is dated from the last hop, and the receiving
state may not act on the request before it has reached it.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from treatyflow.constants import HUB_SENDER
from treatyflow.schemas import limits
from treatyflow.schemas.messages import NoticeBody, NoticeMessage
from treatyflow.schemas.transfer import (
    SENT_BY,
    ConsentRecord,
    DocumentItem,
    PersonData,
    Role,
    Route,
    SentenceData,
    Term,
    TransferCompletedMessage,
    TransferConsentMessage,
    TransferDecisionMessage,
    TransferDocumentsMessage,
    TransferDocumentsRequestMessage,
    TransferEnforcementChangeMessage,
    TransferExecutionReportMessage,
    TransferHandoverBody,
    TransferHandoverMessage,
    TransferInbound,
    TransferProfile,
    TransferRefusalMessage,
    TransferRelayMessage,
    TransferRequestMessage,
    TransferSentenceDecisionMessage,
    TransitDecisionMessage,
    TransitInbound,
    TransitRequestMessage,
)
from treatyflow.workflows.lifecycle import Notice, OperatorAction, Rejected, treaty_days_left

_IDS = uuid.UUID("0c6b0f7e-3a8e-4f0e-9d55-2b7f4b1f8a10")


# --- art. 8.3: the six-month rule, as calendar dates ----------------------------------


def add_months(day: date, months: int) -> date:
    """``day`` plus calendar months; a day the target month lacks becomes its last day.

    31 Jan + 1 month = 28 Feb (29 Feb in a leap year); 31 Aug + 6 months = 28/29 Feb;
    29 Feb + 12 months = 28 Feb. Monotonic: a later day never gives an earlier result.
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def term_end(counted_from: date, term: Term) -> date:
    """The day a term counted from ``counted_from`` has run: years and months as calendar
    months (see ``add_months``), then days."""
    return add_months(counted_from, 12 * term.years + term.months) + timedelta(days=term.days)


def release_date(sentence: SentenceData) -> date:
    """The end of the term: the date given (credits, remission) or counted_from + term."""
    return sentence.release_date or term_end(sentence.counted_from, sentence.term)


def months_left_threshold(received_on: date, months: int) -> date:
    """The earliest end of term that leaves ``months`` to serve on ``received_on``."""
    return add_months(received_on, months)


def has_months_left(received_on: date, release_on: date, months: int) -> bool:
    """Art. 8.3: on the day the request is received, at least ``months`` remain to be served.

    The term left runs from ``received_on`` to ``release_on``, counted like a sentence
    (``add_months``): exactly six months left (release on received_on + 6 months) counts;
    a day less does not. Received 31 Aug 2025, the term must end on 28 Feb 2026 or later.
    """
    return release_on >= months_left_threshold(received_on, months)


# --- state ------------------------------------------------------------------------------


class TransferStatus(StrEnum):
    """The states a user sees; ``overdue`` is a flag beside them (any open deadline passed)."""

    REQUESTED = "requested"  # on its way through the channel, not yet received
    DOCUMENTS_REQUESTED = "documents_requested"  # art. 7: a document is missing
    UNDER_CONSIDERATION = "under_consideration"  # art. 8: conditions shown, decisions awaited
    AGREED = "agreed"  # art. 8.6: both states agree
    HANDOVER_ARRANGED = "handover_arranged"  # art. 3: date and place set
    TRANSFERRED = "transferred"  # handed over
    ENFORCING = "enforcing"  # art. 10: the executing state continues enforcement
    ENFORCEMENT_ENDED = "enforcement_ended"  # served, ended (art. 12) or death (art. 13.1)
    REFUSED = "refused"  # art. 8, 9
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"  # by an operator: a party abandoned the transfer


FINAL = frozenset({TransferStatus.REFUSED, TransferStatus.WITHDRAWN,
                   TransferStatus.ENFORCEMENT_ENDED, TransferStatus.CLOSED})
BEFORE_AGREEMENT = frozenset({TransferStatus.REQUESTED, TransferStatus.DOCUMENTS_REQUESTED,
                              TransferStatus.UNDER_CONSIDERATION})
AFTER_TRANSFER = frozenset({TransferStatus.TRANSFERRED, TransferStatus.ENFORCING})

ALLOWED_FROM: dict[str, frozenset[TransferStatus]] = {
    "transfer_documents": BEFORE_AGREEMENT,
    "transfer_documents_request": BEFORE_AGREEMENT,
    "transfer_consent": BEFORE_AGREEMENT,
    "transfer_decision": frozenset({TransferStatus.UNDER_CONSIDERATION}),
    "transfer_refusal": BEFORE_AGREEMENT,
    "transfer_withdrawal": BEFORE_AGREEMENT | {TransferStatus.AGREED,
                                               TransferStatus.HANDOVER_ARRANGED},
    "transfer_handover": frozenset({TransferStatus.AGREED, TransferStatus.HANDOVER_ARRANGED}),
    "transfer_completed": frozenset({TransferStatus.HANDOVER_ARRANGED}),
    "transfer_execution_report": AFTER_TRANSFER,
    "transfer_sentence_decision": AFTER_TRANSFER,
    "transfer_enforcement_change": AFTER_TRANSFER,
    "transfer_information_request": AFTER_TRANSFER,
}


class Hop(BaseModel):
    """One leg of a message's way through the channel."""

    by: str
    to: str
    at: datetime
    message_id: str = Field(description="The message that made the hop (a relay's own id).")
    note_reference: str | None = None


class Dispatch(BaseModel):
    """A central authority's message and its way to the other central authority."""

    message_id: str
    kind: str
    sender: str
    recipient: str
    route: list[str]
    hops: list[Hop]
    payload: dict[str, Any] = Field(description="The message, handed on at each hop.")
    delivered_at: datetime | None = None

    @property
    def next_hop(self) -> tuple[str, str] | None:
        if self.delivered_at is not None:
            return None
        i = len(self.hops)
        return self.route[i], self.route[i + 1]


class Decision(BaseModel):
    """One state's agreement to the transfer (art. 8.6)."""

    authority: str
    message_id: str
    at: datetime
    waive_six_months: bool = False


class Deadline(BaseModel):
    """A period the hub watches; ``basis`` says whether the treaty or hub policy sets it."""

    key: str
    code: str
    article: str
    basis: str
    owner: str = Field(description="The authority expected to act.")
    due: datetime
    about_message_id: str | None = None
    met_at: datetime | None = None
    overdue: bool = False

    @property
    def open(self) -> bool:
        return self.met_at is None


class ConditionResult(BaseModel):
    """One art. 8 condition as the hub sees it now."""

    code: str
    article: str
    status: Literal["met", "unmet", "pending", "waived"]
    detail: str


class DueDocument(BaseModel):
    """A document of the checklist that is owed now, by whom and under which article."""

    code: str
    article: str
    owner: str


class TimelineEntry(BaseModel):
    """One line of a transfer's history: a message, a hop, a decision, a deadline."""

    at: datetime
    event: str
    actor: str
    status: str = Field(description="The transfer's (or transit's) status after it.")
    message_id: str | None = None
    hop: str | None = Field(None, description="'FROM → TO' for a leg of the channel.")
    note: str | None = None


class TransferState(BaseModel):
    """Everything the lifecycle knows about one transfer."""

    treaty_id: str
    request_id: str
    sentencing_state: str
    executing_state: str
    sentencing_authority: str
    executing_authority: str
    requesting: str
    requested: str
    initiative: str
    status: TransferStatus
    time_scale: float = Field(1.0, gt=0, description="Real seconds per treaty second.")
    opened_at: datetime
    received_at: datetime | None = Field(None, description="Last hop of the request (art. 8.3).")
    person: PersonData
    sentence: SentenceData | None = None
    consent: ConsentRecord | None = None
    executing_state_provision: str | None = None
    documents: dict[str, str] = Field(default_factory=dict, description="code → message id.")
    documents_asked: list[str] = Field(default_factory=list)
    decisions: dict[str, Decision] = Field(default_factory=dict, description="By state.")
    grounds: list[str] = Field(default_factory=list)
    conditions_not_met: list[str] = Field(default_factory=list)
    refused_by: str | None = None
    handover: TransferHandoverBody | None = None
    transits: dict[str, str] = Field(
        default_factory=dict,
        description="Transit state → not_requested/requested/granted/refused/withdrawn/closed."
    )
    transferred_on: date | None = None
    at_large: bool = False
    conditions: list[ConditionResult] = Field(default_factory=list)
    deadlines: list[Deadline] = Field(default_factory=list)
    dispatches: list[Dispatch] = Field(default_factory=list)
    applied: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    content_bytes: int = Field(0, description="UTF-8 JSON bytes of every message applied "
                               "(limits.MAX_CONTENT_BYTES_PER_REQUEST).")

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def overdue(self) -> bool:
        return any(d.open and d.overdue for d in self.deadlines)

    @property
    def received_on(self) -> date | None:
        return self.received_at.date() if self.received_at else None

    def role_of(self, authority: str) -> Role | None:
        if authority == self.sentencing_authority:
            return Role.SENTENCING
        if authority == self.executing_authority:
            return Role.EXECUTING
        return None

    def authority_of(self, role: Role) -> str:
        return self.sentencing_authority if role is Role.SENTENCING else self.executing_authority

    def state_of(self, role: Role) -> str:
        return self.sentencing_state if role is Role.SENTENCING else self.executing_state

    def counterpart(self, authority: str) -> str:
        return self.requested if authority == self.requesting else self.requesting

    def dispatch(self, message_id: str) -> Dispatch | None:
        return next((d for d in self.dispatches if d.message_id == message_id), None)

    def route_of(self, message_id: str) -> list[Hop]:
        """Every hop a message has made so far."""
        d = self.dispatch(message_id)
        return list(d.hops) if d else []


class Transition(BaseModel):
    """The result of applying a message or the passing of time."""

    state: TransferState
    notices: list[Notice] = Field(default_factory=list)


# --- helpers ----------------------------------------------------------------------------


def _day(state: TransferState) -> timedelta:
    return timedelta(days=1) * state.time_scale


def _notify(
    request_id: str, event: str, recipients: Iterable[str], *, about: str | None,
    key: object = "", originals: list[str] | None = None, **detail: Any,
) -> list[Notice]:
    return [
        Notice(
            message_id=str(uuid.uuid5(_IDS, f"{request_id}|{about or key}|{event}|{r}")),
            recipient=r,
            event=event,
            about_message_id=about,
            detail={k: v for k, v in detail.items() if v is not None},
            originals=originals or [],
        )
        for r in dict.fromkeys(recipients)
    ]


def _record(
    state: TransferState, at: datetime, event: str, actor: str, *,
    message_id: str | None = None, hop: str | None = None, note: str | None = None,
) -> None:
    state.timeline.append(TimelineEntry(at=at, event=event, actor=actor, status=state.status,
                                        message_id=message_id, hop=hop, note=note))


def _leg(a: str, b: str) -> str:
    return f"{a} → {b}"


def check_language(
    profile: TransferProfile, from_state: str, to_state: str, *, what: str,
    language: str, translation: str | None, signed: bool, stamped: bool,
) -> list[str]:
    """Art. 6.2: drawn up in an official language of the sending state, with a translation
    into an official language of the receiving state or an accepted alternative (English);
    signed and stamped. Already in the receiving state's language: nothing to translate."""
    rules = profile.languages
    art = rules.article
    own = rules.official.get(from_state, ())
    theirs = rules.official.get(to_state, ())
    accepted = (*theirs, *rules.translation_alternatives)
    problems: list[str] = []
    if language not in own:
        problems.append(f"art. {art}: {what} is in {language!r}; it is drawn up in an official "
                        f"language of {from_state} ({', '.join(own)})")
    if language not in theirs:
        if translation is None:
            problems.append(f"art. {art}: {what} needs a translation into "
                            f"{' or '.join(accepted)}")
        elif translation not in accepted:
            problems.append(f"art. {art}: {what} is translated into {translation!r}; accepted: "
                            f"{', '.join(accepted)}")
    if rules.requires_signature_and_stamp and not (signed and stamped):
        problems.append(f"art. {art}: {what} must be signed and stamped by the sending authority")
    return problems


def check_consent(profile: TransferProfile, consent: ConsentRecord) -> list[str]:
    """Art. 8.5: consent in writing, by the person, or by a substitute when he cannot."""
    cond = profile.condition("written_consent")
    if cond is None:
        return []
    problems: list[str] = []
    if not consent.in_writing:
        problems.append(f"art. {cond.article}: consent to the transfer is given in writing")
    if consent.given_by != "convicted_person":
        if consent.given_by not in cond.substitutes:
            problems.append(f"art. {cond.article}: a {consent.given_by} may not consent for the "
                            "convicted person")
        elif consent.unable_reason is None:
            problems.append(f"art. {cond.article}: a {consent.given_by} acts only where the "
                            "convicted person cannot consent in writing: give unable_reason")
    return problems


# Which data each condition rests on, so a document that evidences it brings the data.
_DATA_OF: dict[str, tuple[str, Role]] = {
    "judgment_final": ("sentence", Role.SENTENCING),
    "six_months_left": ("sentence", Role.SENTENCING),
    "written_consent": ("consent", Role.SENTENCING),
    "dual_criminality": ("executing_state_provision", Role.EXECUTING),
}


def _check_items(
    profile: TransferProfile, state_role: Role, from_state: str, to_state: str,
    items: list[DocumentItem], data: dict[str, object], known: dict[str, object],
) -> list[str]:
    """Art. 6.2, 7: every document known, from the state whose checklist holds it, in the
    right language, with the data it carries."""
    problems: list[str] = []
    for item in items:
        found = profile.document(item.code)
        if found is None:
            codes = ", ".join(d.code for c in profile.checklists for d in c.documents)
            problems.append(f"art. 7: unknown document {item.code!r} (known: {codes})")
            continue
        role, rule = found
        if role is not state_role:
            problems.append(f"art. {rule.article}: {item.code} is provided by the {role.value}")
        problems += check_language(profile, from_state, to_state, what=f"{item.code} "
                                   f"(art. {rule.article})", language=item.language,
                                   translation=item.translation, signed=item.signed,
                                   stamped=item.stamped)
        carried = rule.carries
        if carried and data.get(carried) is None and known.get(carried) is None:
            problems.append(f"art. {rule.article}: {item.code} comes with its data ({carried})")
    for field, value in data.items():
        owner = next((r for f, r in _DATA_OF.values() if f == field), None)
        if value is not None and owner is not None and owner is not state_role:
            problems.append(f"art. 7: {field} is given by the {owner.value}")
    return problems


def due_documents(state: TransferState, profile: TransferProfile) -> list[DueDocument]:
    """What is owed now: the requester's checklist (art. 7.1 or 7.2), the sentencing
    state's once it agrees to the executing state's request (art. 7.3), and whatever the
    other state asked for (art. 7.1(d) 'if necessary')."""
    requester = state.role_of(state.requesting)
    assert requester is not None
    due: dict[str, DueDocument] = {}

    def add(role: Role, code: str, article: str) -> None:
        due.setdefault(code, DueDocument(code=code, article=article,
                                         owner=state.authority_of(role)))

    own = profile.checklist(requester)
    for rule in own.documents if own else ():
        if rule.required == "always":
            add(requester, rule.code, rule.article)
    after = profile.documents_after_agreement
    if after and after.role is not requester and state.state_of(after.role) in state.decisions:
        theirs = profile.checklist(after.role)
        for rule in theirs.documents if theirs else ():
            if rule.required == "always":
                add(after.role, rule.code, f"{after.article}, {rule.article}")
    for code in state.documents_asked:
        found = profile.document(code)
        if found:
            add(found[0], code, found[1].article)
    return list(due.values())


def missing_documents(state: TransferState, profile: TransferProfile) -> list[DueDocument]:
    return [d for d in due_documents(state, profile) if d.code not in state.documents]


def _missing_text(missing: list[DueDocument]) -> str:
    return ", ".join(f"{d.code} (art. {d.article})" for d in missing)


# --- art. 8: conditions ---------------------------------------------------------------


def evaluate_conditions(state: TransferState, profile: TransferProfile) -> list[ConditionResult]:
    """Every condition of transfer in the profile (art. 8), met, unmet, pending or waived."""
    results: list[ConditionResult] = []
    agreed = [state.decisions[s] for s in (state.sentencing_state, state.executing_state)
              if s in state.decisions]
    for c in profile.conditions:
        status: Literal["met", "unmet", "pending", "waived"]
        if c.code == "citizen_of_executing_state":
            held = ", ".join(state.person.citizenship)
            status = "met" if state.executing_state in state.person.citizenship else "unmet"
            detail = f"citizenship {held}; executing state {state.executing_state}"
        elif c.code == "judgment_final":
            s = state.sentence
            if s is None:
                status, detail = "pending", "no sentence information yet (art. 7.1(b), (c))"
            elif s.judgment_final_on is None:
                status, detail = "unmet", f"the judgment of {s.judgment_date} is not yet final"
            elif not s.enforceable:
                status, detail = "unmet", "the judgment is not subject to execution"
            else:
                status, detail = "met", f"in legal force since {s.judgment_final_on}"
        elif c.code == "six_months_left":
            assert c.months is not None
            s, received = state.sentence, state.received_on
            if s is None or received is None:
                status = "pending"
                detail = ("no sentence information yet" if s is None
                          else "the request has not yet been received")
            else:
                end = release_date(s)
                need = months_left_threshold(received, c.months)
                detail = (f"term ends {end}; received {received}: at least {c.months} months "
                          f"left needs an end on or after {need}")
                if has_months_left(received, end, c.months):
                    status = "met"
                elif (c.waivable_by_agreement and len(agreed) == 2
                      and all(d.waive_six_months for d in agreed)):
                    status, detail = "waived", detail + "; otherwise agreed by both states"
                else:
                    status = "unmet"
        elif c.code == "dual_criminality":
            if state.executing_state_provision:
                status = "met"
                detail = f"a crime in {state.executing_state}: {state.executing_state_provision}"
            else:
                status = "pending"
                detail = f"{state.executing_state} has not yet named its provision (art. 7.2(b))"
        elif c.code == "written_consent":
            if state.consent is None:
                status, detail = "pending", "no written consent yet (art. 7.1(e))"
            else:
                status = "met"
                detail = f"given by the {state.consent.given_by} on {state.consent.signed_on}"
        else:  # both_states_agree
            if state.refused_by:
                status, detail = "unmet", f"refused by {state.refused_by}"
            elif len(agreed) == 2:
                status, detail = "met", "both states agree"
            else:
                status = "pending"
                detail = "agreed so far: " + (", ".join(s for s in state.decisions) or "none")
        if c.code in state.conditions_not_met:
            status, detail = "unmet", f"{detail}; found not met by {state.refused_by}"
        results.append(ConditionResult(code=c.code, article=c.article, status=status,
                                       detail=detail))
    return results


# --- opening ------------------------------------------------------------------------


def check_new_transfer(
    profile: TransferProfile, message: TransferRequestMessage, now: datetime
) -> list[str]:
    """Every reason a new transfer request cannot be opened (art. 4–8, 19); ``now`` is the
    hub's clock (art. 19 dates the start of the procedure by it, not by the sender's)."""
    problems: list[str] = []
    if message.treaty_id != profile.id:
        problems.append(f"treaty {message.treaty_id!r} does not match profile {profile.id!r}")
    sender = profile.authority(message.sender)
    recipient = profile.authority(message.recipient)
    for who, a in ((message.sender, sender), (message.recipient, recipient)):
        if a is None or a.role != "central_authority":
            problems.append(f"art. 5.2: {who} is not a central authority under {profile.id}")
    b = message.body
    parties = set(profile.parties)
    if {b.sentencing_state, b.executing_state} != parties:
        problems.append(f"art. 1.3, 1.4: the sentencing and executing states are the parties "
                        f"{' and '.join(profile.parties)}, one each")
    if problems:
        return problems
    assert sender is not None and recipient is not None
    if sender.state == recipient.state:
        problems.append("art. 5.1: a request goes to the central authority of the other state")
    role = Role.SENTENCING if sender.state == b.sentencing_state else Role.EXECUTING
    if b.initiative in (Role.SENTENCING.value, Role.EXECUTING.value):
        if b.initiative != role.value:
            problems.append(f"art. 4: a request on the {b.initiative}'s initiative is sent by "
                            f"that state, not by the {role.value}")
    elif b.wish_expressed_on is None:
        problems.append(f"art. 4: a request on the {b.initiative}'s wish gives the date of that "
                        "written wish (wish_expressed_on)")
    today = now.date()
    if today < profile.entry_into_force:
        problems.append(f"art. 19.1: {profile.id} is in force from {profile.entry_into_force}, "
                        f"not on {today}")
    ends = profile.terminated_from()
    if ends is not None and today >= ends:
        problems.append(f"art. {profile.termination.article}: {profile.id} terminated on {ends} "
                        f"({profile.termination.notice_period_days} days after notice received "
                        f"{profile.termination.notice_received_on}); only procedures initiated "
                        "before then run to their end")
    problems += check_language(profile, sender.state, recipient.state, what="the request",
                               language=b.language, translation=b.translation,
                               signed=b.signed, stamped=b.stamped)
    problems += _check_items(profile, role, sender.state, recipient.state, b.documents,
                             {"sentence": b.sentence, "consent": b.consent,
                              "executing_state_provision": b.executing_state_provision}, {})
    if b.consent is not None:
        problems += check_consent(profile, b.consent)
    return problems


def open_transfer(
    profile: TransferProfile, message: TransferRequestMessage, now: datetime,
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


# --- messages on an open transfer ---------------------------------------------------


def check(state: TransferState, profile: TransferProfile, message: TransferInbound) -> list[str]:
    """Every reason this message cannot be applied to this transfer now (empty: it can)."""
    if message.request_id != state.request_id or message.treaty_id != state.treaty_id:
        return [f"message is about {message.treaty_id}/{message.request_id}, "
                f"not {state.treaty_id}/{state.request_id}"]
    relays = set(profile.channel.relays.values())
    if message.sender not in (state.requesting, state.requested) and message.sender not in relays:
        return [f"{message.sender} is not a party to transfer {state.request_id}"]
    if message.message_id in state.applied:
        return [f"duplicate: message {message.message_id} was already applied"]
    kind = message.kind
    if kind == "transfer_request":
        return [f"transfer {state.request_id} already exists (state {state.status})"]
    if isinstance(message, TransferRelayMessage):
        # A final transfer still carries its last messages to their recipients.
        return _check_relay(state, message)
    if message.sender in relays:
        return [f"art. {profile.channel.article}: a foreign ministry relays messages "
                f"(transfer_relay); it does not send a {kind}"]
    if state.final:
        return [f"transfer {state.request_id} is already {state.status}; nothing more is "
                "accepted"]
    role = state.role_of(message.sender)
    assert role is not None
    who = SENT_BY[kind]
    if who not in ("either", role.value):
        return [f"only the {who} ({state.authority_of(Role(who))}) may send a {kind}"]
    problems: list[str] = []
    counterpart = state.counterpart(message.sender)
    if message.recipient != counterpart:
        problems.append(f"recipient must be {counterpart}, not {message.recipient}")
    if state.status not in ALLOWED_FROM[kind]:
        why = ""
        if state.status is TransferStatus.DOCUMENTS_REQUESTED:
            why = f"; missing {_missing_text(missing_documents(state, profile))}"
        problems.append(f"a {kind} is not allowed while the transfer is {state.status}{why} "
                        f"(allowed when {', '.join(sorted(ALLOWED_FROM[kind]))})")
    if message.sender == state.requested and state.received_at is None:
        problems.append(f"art. {profile.channel.article}: the request has not yet reached "
                        f"{state.requested} through the {profile.channel.kind} channel")
    if problems:
        return problems
    sender_state = state.state_of(role)
    other_state = state.state_of(Role.EXECUTING if role is Role.SENTENCING else Role.SENTENCING)
    known: dict[str, object] = {"sentence": state.sentence, "consent": state.consent,
                                "executing_state_provision": state.executing_state_provision}
    match message:
        case TransferDocumentsMessage():
            b = message.body
            problems += _check_items(profile, role, sender_state, other_state, b.documents,
                                     {"sentence": b.sentence, "consent": b.consent,
                                      "executing_state_provision": b.executing_state_provision},
                                     known)
            if b.consent is not None:
                problems += check_consent(profile, b.consent)
        case TransferDocumentsRequestMessage():
            for code in message.body.documents:
                found = profile.document(code)
                if found is None:
                    problems.append(f"art. 7: unknown document {code!r}")
                elif found[0] is role:
                    problems.append(f"art. {found[1].article}: {code} is for the {role.value} "
                                    "itself to provide, not to ask for")
        case TransferConsentMessage():
            problems += check_consent(profile, message.body.consent)
            cond = profile.condition("written_consent")
            doc = message.body.document
            found = profile.document(doc.code)
            if found is None or found[1].carries != "consent":
                problems.append(f"art. {cond.article if cond else '8.5'}: the consent comes "
                                f"with the consent document, not {doc.code!r}")
            problems += check_language(profile, sender_state, other_state,
                                       what="the consent document", language=doc.language,
                                       translation=doc.translation, signed=doc.signed,
                                       stamped=doc.stamped)
        case TransferDecisionMessage():
            problems += _check_decision(state, profile, message, role)
        case TransferRefusalMessage():
            for code in message.body.grounds:
                if profile.ground(code) is None:
                    known_grounds = ", ".join(g.code for g in profile.refusal_grounds)
                    problems.append(f"art. 9: unknown ground {code!r} (known: {known_grounds})")
            for code in message.body.conditions_not_met:
                if profile.condition(code) is None:
                    problems.append(f"art. 8: {code!r} is not a condition of {profile.id}")
        case _ if kind == "transfer_withdrawal" and message.sender != state.requesting:
            problems.append(f"only the requesting authority {state.requesting} withdraws; "
                            "the requested state refuses (art. 9)")
        case TransferHandoverMessage():
            b2 = message.body
            if b2.handover_on < message.sent_at.date():
                problems.append(f"art. 3: the handover date {b2.handover_on} has passed")
            for t in b2.route.transit_states:
                if t in (state.sentencing_state, state.executing_state):
                    problems.append(f"art. {profile.transit.article}: {t} is a party, not a "
                                    "transit state")
        case TransferCompletedMessage():
            for t, status in sorted(state.transits.items()):
                if status != "granted":
                    problems.append(f"art. {profile.transit.article}: transit through {t} is "
                                    f"{status.replace('_', ' ')}, not granted")
        case TransferExecutionReportMessage():
            problems += _check_report(state, profile, message)
        case TransferEnforcementChangeMessage():
            problems += _check_enforcement_change(state, profile, message)
        case _:
            pass
    return problems + limit_problems(state, message)


# A relay is never refused for a limit (it carries a message accepted before): the budget
# keeps room for every relay still to come on the channel (art. 5.1), this one's (at most
# two) included, each at most this many bytes (an envelope with the longest ids and a note
# reference of SHORT_TEXT_MAX four-byte characters).
RELAY_MAX_BYTES = 3 * 1024


def limit_problems(state: TransferState, message: TransferInbound) -> list[str]:
    """Every per-request limit this message would pass (``limits``): how many of its kind,
    the bytes of all messages with its relays, the timeline; each names its number."""
    problems: list[str] = []
    cap = limits.per_kind(message.kind)
    if cap is not None and sum(e.event == message.kind for e in state.timeline) >= cap:
        problems.append(limits.limit_problem(
            f"at most {cap} {message.kind} messages per transfer, the hub's limit; transfer "
            f"{state.request_id} has {cap}"))
    relays = 2 + sum(len(d.route) - 1 - len(d.hops) for d in state.dispatches
                     if d.delivered_at is None)
    problems += limits.budget_problems(state.content_bytes, limits.content_size(message),
                                       len(state.timeline), reserve=relays * RELAY_MAX_BYTES)
    return problems


def refusal_code(problems: list[str]) -> str:
    """The problem code for a refused message: ``limit_reached`` when it passes only limits
    of the hub (``limits``), else ``not_allowed_now``."""
    if problems and all(limits.is_limit_problem(p) for p in problems):
        return limits.LIMIT_REACHED
    return "not_allowed_now"


def _check_relay(state: TransferState, message: TransferRelayMessage) -> list[str]:
    mid = message.body.relayed_message_id
    d = state.dispatch(mid)
    if d is None:
        return [f"art. 5.1: there is no message {mid} on transfer {state.request_id} to relay"]
    hop = d.next_hop
    if hop is None:
        return [f"message {mid} was already delivered to {d.recipient}"]
    problems = []
    if message.sender != hop[0]:
        problems.append(f"art. 5.1: message {mid} is with {hop[0]}, not {message.sender}")
    if message.recipient != hop[1]:
        problems.append(f"the next hop of message {mid} is {hop[1]}, not {message.recipient}")
    return problems


def _check_decision(
    state: TransferState, profile: TransferProfile, message: TransferDecisionMessage, role: Role
) -> list[str]:
    """Art. 8, 9.1: a state may agree only where no condition fails and no mandatory ground
    is established; the agreement that completes art. 8.6 needs every condition met."""
    problems: list[str] = []
    me = state.state_of(role)
    b = message.body
    if me in state.decisions:
        return [f"art. 8.6: {me} has already agreed"]
    if b.executing_state_provision is not None and role is not Role.EXECUTING:
        problems.append("art. 8.4: the executing state names its own provision")
    for g in profile.refusal_grounds:
        if (g.mandatory and g.established_by == "military_offence" and state.sentence
                and state.sentence.offence.military):
            problems.append(f"art. {g.article}: {g.text.lower()}: the transfer must be refused")
    hypothetical = state.model_copy(deep=True)
    hypothetical.decisions[me] = Decision(authority=message.sender, message_id=message.message_id,
                                          at=message.sent_at, waive_six_months=b.waive_six_months)
    if b.executing_state_provision:
        hypothetical.executing_state_provision = b.executing_state_provision
    completes = len(hypothetical.decisions) == 2
    six = profile.condition("six_months_left")
    for r in evaluate_conditions(hypothetical, profile):
        if r.code == "both_states_agree":
            continue
        if r.status == "unmet":
            if (six and r.code == six.code and six.waivable_by_agreement and b.waive_six_months
                    and not completes):
                continue  # 'unless otherwise agreed': the other state must waive it too
            hint = ""
            if six and r.code == six.code and six.waivable_by_agreement:
                hint = " (unless otherwise agreed: both states set waive_six_months)"
            problems.append(f"art. {r.article}: condition not met: {r.detail}{hint}")
        elif r.status == "pending" and completes:
            problems.append(f"art. {r.article}: condition not yet established: {r.detail}")
    return problems


def _check_report(
    state: TransferState, profile: TransferProfile, message: TransferExecutionReportMessage
) -> list[str]:
    b = message.body
    problems: list[str] = []
    if b.event == "enforcement_continued":
        if state.status is not TransferStatus.TRANSFERRED:
            problems.append("art. 10: enforcement is already continuing")
        if b.term_imposed is None:
            problems.append("art. 10.2: give the term imposed by the court of the executing state")
    if b.event == "recapture" and not state.at_large:
        problems.append("art. 13.1: no escape was reported")
    if b.event == "escape" and state.at_large:
        problems.append("art. 13.1: the escape was already reported")
    if message.in_reply_to is not None and b.event == "information":
        if not _open_deadline(state, "information_on_request", message.in_reply_to):
            problems.append(f"art. 13.2: {message.in_reply_to} is no open request for information "
                            "that has reached the executing state")
    return problems


def _check_enforcement_change(
    state: TransferState, profile: TransferProfile, message: TransferEnforcementChangeMessage
) -> list[str]:
    """Art. 12: answers a decision of the sentencing state that has reached the executing state."""
    ref = message.in_reply_to
    d = state.dispatch(ref) if ref else None
    if d is None or d.kind != "transfer_sentence_decision" or d.delivered_at is None:
        return ["art. 12: an enforcement change replies (in_reply_to) to the sentencing state's "
                "decision once it has reached the executing state"]
    effect = d.payload["body"]["effect"]
    wanted = {"ends_enforcement": "ended", "changes_enforcement": "changed"}.get(effect)
    if wanted is None:
        return [f"art. 12: the decision {ref} does not end or change enforcement"]
    if message.body.action != wanted:
        return [f"art. 12: the decision {ref} {effect.replace('_', ' ')}; report '{wanted}', "
                f"not '{message.body.action}'"]
    return []


def _open_deadline(state: TransferState, code: str, about: str) -> Deadline | None:
    return next((d for d in state.deadlines
                 if d.open and d.code == code and d.about_message_id == about), None)


def apply(
    state: TransferState, profile: TransferProfile, message: TransferInbound, now: datetime
) -> Transition:
    """Apply one message; raises ``Rejected`` with every reason if it is not allowed now."""
    problems = check(state, profile, message)
    if problems:
        raise Rejected(problems)
    s = state.model_copy(deep=True)
    s.applied.append(message.message_id)
    s.content_bytes += limits.content_size(message)
    if isinstance(message, TransferRelayMessage):
        return Transition(state=s, notices=_relay(s, profile, message, now))
    missing_before = {d.code for d in missing_documents(s, profile)}
    notices: list[Notice] = []
    mid = message.message_id
    match message:
        case TransferDocumentsMessage():
            b = message.body
            for item in b.documents:
                s.documents[item.code] = mid
            s.sentence = b.sentence or s.sentence
            s.consent = b.consent or s.consent
            s.executing_state_provision = (b.executing_state_provision
                                           or s.executing_state_provision)
        case TransferDocumentsRequestMessage():
            s.documents_asked += [c for c in message.body.documents if c not in s.documents_asked]
        case TransferConsentMessage():
            s.consent = message.body.consent
            s.documents[message.body.document.code] = mid
        case TransferDecisionMessage():
            role = s.role_of(message.sender)
            assert role is not None
            s.decisions[s.state_of(role)] = Decision(
                authority=message.sender, message_id=mid, at=now,
                waive_six_months=message.body.waive_six_months)
            s.executing_state_provision = (message.body.executing_state_provision
                                           or s.executing_state_provision)
        case TransferRefusalMessage():
            s.status = TransferStatus.REFUSED
            s.grounds = list(message.body.grounds)
            s.conditions_not_met = list(message.body.conditions_not_met)
            s.refused_by = message.sender
        case _ if message.kind == "transfer_withdrawal":
            s.status = TransferStatus.WITHDRAWN
        case TransferHandoverMessage():
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
        case TransferCompletedMessage():
            s.status = TransferStatus.TRANSFERRED
            s.transferred_on = message.body.handed_over_on
            _close(s, now, lambda d: d.code == "handover")
        case TransferExecutionReportMessage():
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
        case TransferEnforcementChangeMessage():
            _close(s, now, lambda d: d.code == "enforcement_change"
                   and d.about_message_id == message.in_reply_to)
            s.status = (TransferStatus.ENFORCEMENT_ENDED if message.body.action == "ended"
                        else TransferStatus.ENFORCING)
        case _:
            pass  # sentence decision, information request: their effect comes on delivery
    return _after_message(s, profile, message, now, notices, missing_before)


def _after_message(
    s: TransferState, profile: TransferProfile, message: TransferInbound, now: datetime,
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


def _note(message: TransferInbound) -> str | None:
    match message:
        case TransferRefusalMessage():
            cited = [*message.body.grounds, *message.body.conditions_not_met]
            return f"{', '.join(cited)}: {message.body.reason}"
        case TransferHandoverMessage():
            return f"{message.body.handover_on} at {message.body.place}"
        case TransferExecutionReportMessage():
            return f"{message.body.event} on {message.body.occurred_on}"
        case TransferSentenceDecisionMessage():
            return f"{message.body.decision} of {message.body.decided_on}: {message.body.effect}"
        case TransferDocumentsMessage():
            return ", ".join(d.code for d in message.body.documents)
        case _:
            return None


def _route(s: TransferState, profile: TransferProfile, sender: str, recipient: str) -> list[str]:
    """Art. 5.1, 6.1: sender → its state's relay → the other state's relay → recipient."""
    sender_state = s.sentencing_state if sender == s.sentencing_authority else s.executing_state
    other_state = s.executing_state if sender_state == s.sentencing_state else s.sentencing_state
    relays = [profile.relay(sender_state), profile.relay(other_state)]
    return [sender, *(r for r in relays if r), recipient]


def _hand_on(
    s: TransferState, profile: TransferProfile, d: Dispatch, now: datetime
) -> list[Notice]:
    """Ask the next relay to pass the message on; watch the hop if the profile says so."""
    assert d.next_hop is not None
    holder, nxt = d.next_hop
    limit = profile.time_limits.relay_hop
    if limit is not None:
        _open(s, "relay_hop", limit.article, limit.basis, holder, now + _day(s) * limit.days,
              d.message_id)
    # The relay passes on the message as its sender signed it, and the hops before it.
    return _notify(s.request_id, "relay_requested", [holder], about=d.message_id,
                   key=f"hop-{len(d.hops)}", kind=d.kind, next_hop=nxt, message=d.payload,
                   originals=_signed_trail(d))


def _relay(
    s: TransferState, profile: TransferProfile, message: TransferRelayMessage, now: datetime
) -> list[Notice]:
    d = s.dispatch(message.body.relayed_message_id)
    assert d is not None
    d.hops.append(Hop(by=message.sender, to=message.recipient, at=now,
                      message_id=message.message_id, note_reference=message.body.note_reference))
    _close(s, now, lambda dl: dl.code == "relay_hop" and dl.about_message_id == d.message_id)
    delivered = message.recipient == d.recipient
    note = f"{d.kind} {d.message_id}" + (
        f" (note {message.body.note_reference})" if message.body.note_reference else "")
    if delivered:
        return _deliver(s, profile, d, now, relay_message_id=message.message_id, note=note)
    _record(s, now, "relayed", message.sender, message_id=message.message_id,
            hop=_leg(message.sender, message.recipient), note=note)
    return _hand_on(s, profile, d, now)


def _deliver(
    s: TransferState, profile: TransferProfile, d: Dispatch, now: datetime, *,
    relay_message_id: str | None = None, note: str | None = None,
) -> list[Notice]:
    """The last hop: the recipient has the message; what the treaty dates from receipt starts."""
    d.delivered_at = now
    if d.kind == "transfer_request":
        s.received_at = now  # art. 8.3: the six months are counted on this day
    elif d.kind == "transfer_sentence_decision" and not s.final:
        if d.payload["body"]["effect"] != "none":
            limit = profile.time_limits.enforcement_change
            if limit is not None:  # art. 12: 'immediately after the sentencing state informs'
                _open(s, "enforcement_change", limit.article, limit.basis, s.executing_authority,
                      now + _day(s) * limit.days, d.message_id)
    elif d.kind == "transfer_information_request" and not s.final:
        limit = profile.time_limits.information_on_request
        if limit is not None:
            _open(s, "information_on_request", limit.article, limit.basis,
                  s.executing_authority, now + _day(s) * limit.days, d.message_id)
    _settle(s, profile)
    last = d.hops[-1]
    _record(s, now, "delivered", last.by, message_id=relay_message_id or d.message_id,
            hop=_leg(last.by, d.recipient), note=note or f"{d.kind} {d.message_id}")
    return (_notify(s.request_id, "delivered", [d.recipient], about=d.message_id, kind=d.kind,
                    message=d.payload, status=s.status.value, originals=_signed_trail(d))
            + _notify(s.request_id, "delivery_confirmed", [d.sender], about=d.message_id,
                      kind=d.kind, status=s.status.value))


def _signed_trail(d: Dispatch) -> list[str]:
    """Art. 5.1: the central authority's message and each ministry's relay of it, by id:
    the recipient verifies every signature on the diplomatic way (art. 5.5 of SCO)."""
    return [d.message_id, *(hop.message_id for hop in d.hops if hop.message_id != d.message_id)]


def _settle(s: TransferState, profile: TransferProfile) -> None:
    """Before agreement the status follows from the facts; conditions are re-evaluated."""
    if s.status in BEFORE_AGREEMENT:
        if s.received_at is None:
            s.status = TransferStatus.REQUESTED
        elif missing_documents(s, profile):
            s.status = TransferStatus.DOCUMENTS_REQUESTED
        elif len(s.decisions) == 2:
            s.status = TransferStatus.AGREED
        else:
            s.status = TransferStatus.UNDER_CONSIDERATION
    s.conditions = evaluate_conditions(s, profile)


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


def _open(
    s: TransferState, code: str, article: str, basis: str, owner: str, due: datetime,
    about: str | None,
) -> None:
    key = f"{code}-{about}-{len(s.deadlines)}"
    s.deadlines.append(Deadline(key=key, code=code, article=article, basis=basis, owner=owner,
                                due=due, about_message_id=about))


def _close(s: TransferState, now: datetime, which: Any) -> None:
    for d in s.deadlines:
        if d.open and which(d):
            d.met_at = now


# --- art. 16: transit -----------------------------------------------------------------


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


# --- the passing of time ------------------------------------------------------------


def next_due(state: TransferState, profile: TransferProfile) -> datetime | None:
    """When the workflow must next wake for this transfer, if ever."""
    due = [d.due for d in state.deadlines if d.open and not d.overdue]
    return min(due) if due else None


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
        disp = s.dispatch(d.about_message_id) if d.about_message_id else None
        told = [d.owner, *(s.requesting, s.requested)]
        if disp is not None and d.code == "relay_hop":
            told = [d.owner, disp.sender]
        notices += _notify(s.request_id, "overdue", told, about=None, key=d.key,
                           deadline=d.code, article=d.article, basis=d.basis,
                           due=d.due.isoformat(), owner=d.owner)
    return Transition(state=s, notices=notices)


def correct_overdue(state: TransferState, profile: TransferProfile, message: TransferInbound,
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
        disp = s.dispatch(d.about_message_id) if d.about_message_id else None
        told = [d.owner, *(s.requesting, s.requested)]
        if disp is not None and d.code == "relay_hop":
            told = [d.owner, disp.sender]
        notices += _notify(s.request_id, "overdue_withdrawn", told, about=mid,
                           key=f"overdue-withdrawn-{d.key}", deadline=d.code,
                           article=d.article, due=d.due.isoformat(),
                           arrived_at=arrived.isoformat())
    return Transition(state=s, notices=notices)


# --- what the hub tells the parties and shows the operator ---------------------------------


def current_deadline(state: TransferState) -> Deadline | None:
    """The open deadline that falls first (overdue or not), if any."""
    open_ = [d for d in state.deadlines if d.open]
    return min(open_, key=lambda d: d.due) if open_ else None


def envelope_for(state: TransferState, notice: Notice, now: datetime) -> NoticeMessage:
    """The hub's message to one party for one notice, stamped with the transfer's state."""
    due = current_deadline(state)
    return NoticeMessage(
        kind="notice", message_id=notice.message_id, request_id=state.request_id,
        treaty_id=state.treaty_id, sender=HUB_SENDER, recipient=notice.recipient, sent_at=now,
        in_reply_to=notice.about_message_id,
        body=NoticeBody(event=notice.event, status=state.status.value, overdue=state.overdue,
                        deadline=due.due if due else None, requesting=state.requesting,
                        requested=state.requested, about_message_id=notice.about_message_id,
                        detail=notice.detail),
    )


def transit_envelope_for(transit: TransitState, notice: Notice, now: datetime) -> NoticeMessage:
    """The hub's message to one party of a transit request (art. 16)."""
    return NoticeMessage(
        kind="notice", message_id=notice.message_id, request_id=transit.request_id,
        treaty_id=transit.treaty_id, sender=HUB_SENDER, recipient=notice.recipient, sent_at=now,
        in_reply_to=notice.about_message_id,
        body=NoticeBody(event=notice.event, status=transit.status.value, overdue=False,
                        requesting=transit.requesting, requested=transit.transit_authority,
                        about_message_id=notice.about_message_id, detail=notice.detail),
    )


def in_transit(state: TransferState) -> list[Dispatch]:
    """Messages still on their way through the channel."""
    return [d for d in state.dispatches if d.next_hop is not None]


def ended(state: TransferState) -> bool:
    """Nothing more to carry: final, and its last messages have reached their recipients
    (art. 5.1), unless an operator closed it (a message still held is abandoned with it)."""
    return state.final and (state.status is TransferStatus.CLOSED or not in_transit(state))


def describe(state: TransferState, now: datetime) -> str:
    """The current details an operator sees in the Temporal UI (markdown; codes only)."""
    lines = [f"**{state.status.value}**" + (" · **OVERDUE**" if state.overdue else ""),
             f"- {state.requesting} → {state.requested} (sentencing {state.sentencing_state}, "
             f"executing {state.executing_state})"]
    for d in in_transit(state):
        hop = d.next_hop
        assert hop is not None
        lines.append(f"- {d.kind} {d.message_id}: with {hop[0]}, next {hop[1]}")
    for dl in sorted((d for d in state.deadlines if d.open), key=lambda d: d.due):
        left = treaty_days_left(dl.due, now, state.time_scale)
        lines.append(f"- art. {dl.article} {dl.code} by {dl.owner}, due "
                     f"{dl.due.isoformat(timespec='seconds')}: {left}")
    for t, status in sorted(state.transits.items()):
        lines.append(f"- transit through {t}: {status.replace('_', ' ')}")
    return "\n".join(lines)


# --- operators' actions ---------------------------------------------------------------
# The hub's operators act on the written instruction of a central authority, or when a
# party has abandoned the procedure; art. 17 lets the central authorities agree on any
# practical measure that helps apply the treaty. Each action is recorded in the timeline
# with the operator's name and reason, and told to the parties.


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
    if action.action == "resend_last_notice":
        # The foreign ministries get notices too: relay_requested (art. 5.1).
        parties = {state.requesting, state.requested, *profile.channel.relays.values()}
        if action.party not in parties:
            problems.append(f"party must be one of {', '.join(sorted(parties))}")
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
    if action.action == "resend_last_notice":
        parties = {transit.requesting, transit.transit_authority}
        if action.party not in parties:
            problems.append(f"party must be one of {', '.join(sorted(parties))}")
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

"""The transfer's state models (statuses, deadlines, dispatches, timeline) and the helpers
that record on a state and build its notices."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from treatyflow.schemas.transfer import (
    ConsentRecord,
    PersonData,
    Role,
    SentenceData,
    TransferHandoverBody,
)
from treatyflow.workflows.lifecycle import Notice

_IDS = uuid.UUID("0c6b0f7e-3a8e-4f0e-9d55-2b7f4b1f8a10")


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


# --- recording on a state -----------------------------------------------------------------


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

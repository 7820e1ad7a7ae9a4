"""What the hub knows of one request for assistance: its status, record and results."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from treatyflow.schemas.messages import Confidentiality, RequestBody
from treatyflow.workflows.common import Notice

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

"""What goes in and out of the request workflow: its start input and its answers.

Kept apart from ``request.py`` so that the workflow sandbox passes these models through
instead of rebuilding their pydantic schemas for every new request (see
``treatyflow.temporal.workflow_runner``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from treatyflow.schemas.messages import NoticeMessage, recorded
from treatyflow.schemas.treaty import TreatyProfile
from treatyflow.workflows import lifecycle
from treatyflow.workflows.lifecycle import RequestState

# What the hub starts requests with. 1 (absent): the art. 7 consent phase is decided by a
# Temporal patch marker; 2: by the profile alone (``consent_window_days``), which spares
# every request the marker and its TemporalChangeVersion upsert (a visibility write).
INPUT_VERSION = 2


Recorded = Annotated[NoticeMessage, BeforeValidator(recorded)]


class Carried(BaseModel):
    """What the workflow shell (``shell.py``) carries across a continue-as-new, in every
    procedure's input."""

    outbox: list[Recorded] = Field(default_factory=list)
    last_sent: dict[str, Recorded] = Field(default_factory=dict)
    digests: dict[str, str] = Field(
        default_factory=dict, description="SHA-256 of each applied message, by id.")
    signed: dict[str, str] = Field(
        default_factory=dict, description="Each applied message as its sender signed it "
        "(JWS), by id: what notices pass on to the other party (art. 5.5).")
    last_originals: dict[str, list[str]] = Field(
        default_factory=dict, description="The ids of the originals each party's last "
        "notice passed on (``last_sent`` keeps the notice without them).")
    directory: str | None = Field(
        None, description="The hub's signed key directory the workflow verifies every "
        "message against (given at the start, replaced only by a newer one that a key of "
        "the held one signed).")


class RequestInput(Carried):
    """Start (or continue-as-new) input: the treaty as it stood when the request began."""

    profile: TreatyProfile
    version: int = Field(1, ge=1, le=INPUT_VERSION,
                         description="The hub's input version (INPUT_VERSION when started).")
    time_scale: float = Field(1.0, gt=0, description="Real seconds per treaty second.")
    state: RequestState | None = None


class Accepted(BaseModel):
    """The answer to an accepted message."""

    message_id: str
    status: lifecycle.Status
    overdue: bool
    deadline: str | None
    digest: str | None = Field(None, description="message_digest of the message applied under "
                               "this message id: a different message reusing the id is told "
                               "apart by the gateway")


class Timeline(BaseModel):
    """A request's messages and decisions, oldest first."""

    request_id: str
    entries: list[lifecycle.TimelineEntry]


class RequestOutcome(BaseModel):
    """How a request ended."""

    request_id: str | None
    status: str
    outcome: str | None = None
    overdue: bool = False

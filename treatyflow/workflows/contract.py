"""What goes in and out of the request workflow: its start input and its answers.

Kept apart from ``request.py`` so that the workflow sandbox passes these models through
instead of rebuilding their pydantic schemas for every new request (see
``treatyflow.temporal.workflow_runner``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from treatyflow.schemas.messages import NoticeMessage, recorded
from treatyflow.schemas.published import DIGEST_PATTERN, ProfileRef
from treatyflow.schemas.treaty import TreatyProfile
from treatyflow.workflows import lifecycle
from treatyflow.workflows.lifecycle import RequestState

# What the hub starts requests with. 1 (absent): the art. 7 consent phase is decided by a
# Temporal patch marker; 2: by the profile alone (``consent_window_days``), which spares
# every request the marker and its TemporalChangeVersion upsert (a visibility write);
# 3: the treaty profile and the key directory by reference (``profile_ref``,
# ``directory_digest``), not whole (``schemas.published``).
INPUT_VERSION = 3


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
        "the held one signed). Inputs from before version 3 carry it whole.")
    directory_digest: str | None = Field(
        None, pattern=DIGEST_PATTERN, description="The same directory by its SHA-256, as "
        "the hub published it (``schemas.published``): what inputs carry from version 3.")

    @model_validator(mode="after")
    def _one_directory(self) -> Carried:
        if self.directory is not None and self.directory_digest is not None:
            raise ValueError("a key directory is given whole or by digest, not both")
        return self


def one_profile(profile: object, ref: ProfileRef | None) -> None:
    """An input names its treaty profile whole (before version 3) or by reference."""
    if (profile is None) == (ref is None):
        raise ValueError("a treaty profile is given whole or by reference (exactly one)")


class RequestInput(Carried):
    """Start (or continue-as-new) input: the treaty as it stood when the request began,
    by its published version (inputs from before version 3: whole)."""

    profile: TreatyProfile | None = None
    profile_ref: ProfileRef | None = None
    version: int = Field(1, ge=1, le=INPUT_VERSION,
                         description="The hub's input version (INPUT_VERSION when started).")
    time_scale: float = Field(1.0, gt=0, description="Real seconds per treaty second.")
    state: RequestState | None = None

    @model_validator(mode="after")
    def _one_profile(self) -> RequestInput:
        one_profile(self.profile, self.profile_ref)
        return self


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

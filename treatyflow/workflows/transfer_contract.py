"""What goes in and out of the transfer and transit workflows (KZ–UAE 2018).

Kept apart from ``transfer_workflow.py`` so that the workflow sandbox passes these models
through (``treatyflow.temporal.SHARED_WITH_WORKFLOWS``), like ``contract.py``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from treatyflow.schemas.published import ProfileRef
from treatyflow.schemas.transfer import TransferProfile
from treatyflow.workflows.contract import Carried, one_profile
from treatyflow.workflows.transfer import (
    TimelineEntry,
    TransferState,
    TransferStatus,
    TransitState,
    TransitStatus,
)


class TransferInput(Carried):
    """Start (or continue-as-new) input: the treaty as it stood when the transfer began,
    by its published version (inputs from before references: whole)."""

    profile: TransferProfile | None = None
    profile_ref: ProfileRef | None = None
    time_scale: float = Field(1.0, gt=0, description="Real seconds per treaty second.")
    state: TransferState | None = None

    @model_validator(mode="after")
    def _one_profile(self) -> TransferInput:
        one_profile(self.profile, self.profile_ref)
        return self


class TransitInput(Carried):
    """Start input of a transit request (art. 16): the transfer as the hub saw it when the
    request arrived (the validator checks the request against it)."""

    profile: TransferProfile | None = None
    profile_ref: ProfileRef | None = None
    transfer: TransferState
    state: TransitState | None = None

    @model_validator(mode="after")
    def _one_profile(self) -> TransitInput:
        one_profile(self.profile, self.profile_ref)
        return self


class TransitLink(BaseModel):
    """A transit's progress, signalled to its transfer (``link_transit``)."""

    transit: TransitState


class TransferAccepted(BaseModel):
    """The answer to an accepted message of a transfer or a transit."""

    message_id: str
    status: TransferStatus | TransitStatus
    overdue: bool = False
    deadline: str | None = None
    digest: str | None = Field(None, description="message_digest of the message applied under "
                               "this message id (see contract.Accepted)")


class TransferTimeline(BaseModel):
    """A transfer's messages, hops and decisions, oldest first."""

    request_id: str
    entries: list[TimelineEntry]


class TransferOutcome(BaseModel):
    """How a transfer (or transit) ended."""

    request_id: str | None
    status: str
    overdue: bool = False

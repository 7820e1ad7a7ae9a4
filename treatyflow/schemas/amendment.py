"""Amendments to a treaty's list of competent authorities (SCO 2010 art. 2.2), as data:
one change (an authority added or removed), the book of changes the hub applied, and
the tracked procedure's input, actions and state (``workflows.amendment``).

Art. 2.2: "Amendments to the list of competent authorities of states shall be notified by
each Party in writing to the depositary within 30 days through diplomatic channels, which
shall be communicated by the depositary to the Parties within 7 days from the date of
receipt of the notification." The depositary is the SCO Secretariat (art. 14); on the hub
its part is played by the hub's operators (docs/operators/authorities.md).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from treatyflow.schemas.published import ProfileRef
from treatyflow.schemas.treaty import AUTHORITY_ID_PATTERN

# The procedure's short name (``procedures.AMENDMENT``) and its treaty days.
PROCEDURE = "amendment-of-authorities"
NOTIFY_WITHIN_DAYS = 30  # art. 2.2: the party notifies the depositary within 30 days
COMMUNICATE_WITHIN_DAYS = 7  # art. 2.2: the depositary communicates it within 7 days


# The longest operator's name an amendment's action or a list change records.
OPERATOR_NAME_MAX = 100

class NewAuthority(BaseModel):
    """An authority as a profile lists it; ``role`` only for a treaty whose profile has
    roles (KZ–UAE 2018: ``central_authority`` or ``diplomatic_relay``)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=AUTHORITY_ID_PATTERN)
    state: str = Field(pattern=r"^[A-Z]{2}$")
    name: str = Field(min_length=1, max_length=300)
    source: str = Field(min_length=1, max_length=300)
    role: str | None = Field(None, pattern=r"^[a-z_]{3,40}$")

    @model_validator(mode="after")
    def _own_state(self) -> NewAuthority:
        if not self.id.startswith(f"{self.state}-"):
            raise ValueError(f"an authority id begins with its state: {self.state}-…, "
                             f"not {self.id}")
        return self

    def entry(self) -> dict[str, str]:
        """Its entry in a profile's ``authorities``."""
        return self.model_dump(exclude_none=True)


class AuthorityChange(BaseModel):
    """One amendment of one treaty's list: an authority added, or one removed."""

    model_config = ConfigDict(frozen=True)

    treaty: str = Field(pattern=r"^[a-z0-9-]{3,40}$")
    change: Literal["add", "remove"]
    authority_id: str = Field(pattern=AUTHORITY_ID_PATTERN)
    authority: NewAuthority | None = Field(None, description="The one added (add only).")
    reason: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _whole(self) -> AuthorityChange:
        if (self.change == "add") != (self.authority is not None):
            raise ValueError("an addition names the authority added; a removal only its id")
        if self.authority is not None and self.authority.id != self.authority_id:
            raise ValueError("the authority added is not the one named")
        return self

    @property
    def party(self) -> str:
        return self.authority_id.split("-", 1)[0]


class AppliedChange(BaseModel):
    """A change as the hub applied it: when, by whom, and the profile version it made."""

    model_config = ConfigDict(frozen=True)

    change: AuthorityChange
    applied_at: datetime
    by: str = Field(description="The operator, or the amendment's workflow id.")
    version: int | None = Field(None, description="The profile version it was published in.")


class AuthorityBook(BaseModel):
    """Every change applied live, in order: the profile files with these applied are what
    the gateway publishes at its start (a restart never undoes an amendment), and
    ``retired`` the removed authorities whose broker user only reads its inbox now."""

    changes: list[AppliedChange] = Field(default_factory=list)
    retired: dict[str, datetime] = Field(default_factory=dict)


# --- the tracked procedure (workflows.amendment) --------------------------------------


class AmendmentStatus(StrEnum):
    """Where an amendment stands (codes distinct from every other procedure's)."""

    NOTIFIED = "amendment_notified"  # the depositary received the party's notification
    COMMUNICATED = "amendment_communicated"  # the depositary told the parties; not in effect
    IN_EFFECT = "amendment_in_effect"  # the new profile version is current
    WITHDRAWN = "amendment_withdrawn"  # the party withdrew its notification
    NOT_APPLIED = "amendment_not_applied"  # on its date the change no longer made sense


FINAL = frozenset({AmendmentStatus.IN_EFFECT, AmendmentStatus.WITHDRAWN,
                   AmendmentStatus.NOT_APPLIED})


class Notification(BaseModel):
    """The party's written notification to the depositary (art. 2.2)."""

    model_config = ConfigDict(frozen=True)

    amendment_id: str = Field(pattern=r"^[A-Z]{2}-AMD-[A-Z0-9-]{4,40}$",
                              description="The party's code, AMD, then the hub's number.")
    change: AuthorityChange
    changed_on: date = Field(description="When the party's list changed (its own act).")
    received_on: date = Field(description="When the depositary received the notification.")
    effective_on: date = Field(description="When the change takes effect on the hub.")

    @model_validator(mode="after")
    def _dates(self) -> Notification:
        if self.received_on < self.changed_on:
            raise ValueError("received_on: a notification is received after the change")
        if self.effective_on < self.received_on:
            raise ValueError("effective_on: not before the notification was received")
        if not self.amendment_id.startswith(f"{self.change.party}-"):
            raise ValueError(f"amendment_id begins with the party: {self.change.party}-AMD-…")
        return self


class OperatorsSigned(BaseModel):
    """What the depositary's part (art. 14: the hub's operators) does on an amendment is
    signed with the operators' key, like their actions on requests: the workflow acts on
    nothing else, whoever reaches Temporal (``workflows.signatures``)."""

    signed: str | None = Field(
        None, max_length=16_384, description="This model as the operators' key signed it: "
        "a JWS (compact) whose payload is its JSON without ``signed`` and ``directory``.")
    directory: str | None = Field(
        None, description="The hub's signed key directory, sent along: the opening's is "
        "the one the amendment verifies with; an action's a newer one it vouches for (a "
        "rotated operators' key). Not part of what is signed.")


class AmendmentInput(OperatorsSigned):
    """The amendment workflow's input: the opening, signed. ``time_scale``: seconds of
    workflow time per second of treaty time (1.0 in deployments; the demo stack runs a
    treaty day in a second)."""

    notification: Notification
    recorded_on: date = Field(description="The treaty date the workflow starts on (the "
                              "depositary's today); the others are counted from it.")
    time_scale: float = Field(1.0, gt=0)


class ApplyChange(BaseModel):
    """The activity's input: the change to publish, who makes it (the workflow), and the
    opening's JWS, which the publisher verifies against the hub's own key registry before
    it publishes (none: an amendment opened before openings were signed)."""

    change: AuthorityChange
    by: str
    signed: str | None = None


class Communication(OperatorsSigned):
    """The depositary's communication of the amendment to the parties (art. 2.2)."""

    model_config = ConfigDict(frozen=True)

    operator: str = Field(min_length=1, max_length=OPERATOR_NAME_MAX)
    note: str = Field("", max_length=500)


class Withdrawal(OperatorsSigned):
    """The party withdrew its notification before it took effect."""

    model_config = ConfigDict(frozen=True)

    operator: str = Field(min_length=1, max_length=OPERATOR_NAME_MAX)
    reason: str = Field(min_length=1, max_length=500)


class ListChanged(OperatorsSigned):
    """A list of competent authorities changed at once by the operators (no amendment
    procedure: ``treatyflow authority add|remove`` without ``--received-on``), as the
    hub's record keeps it: who, what, and the profile version that made it current."""

    model_config = ConfigDict(frozen=True)

    operator: str = Field(min_length=1, max_length=OPERATOR_NAME_MAX)
    change: AuthorityChange
    version: int = Field(ge=1, description="The profile version published with it.")
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="That version's SHA-256.")


class AmendmentState(BaseModel):
    """One amendment as it stands: what ``treatyflow authority amendment`` shows."""

    notification: Notification
    status: AmendmentStatus = AmendmentStatus.NOTIFIED
    deadline: datetime = Field(description="The depositary's 7 days from receipt, in "
                               "workflow time.")
    effective_at: datetime = Field(description="``effective_on`` in workflow time.")
    overdue: bool = Field(False, description="The 7 days passed before the communication.")
    late_notification: bool = Field(False, description="Notified more than 30 days after "
                                    "the change (the depositary's business: kept, flagged).")
    communicated_at: datetime | None = None
    communicated_by: str | None = None
    in_effect_at: datetime | None = None
    profile: ProfileRef | None = Field(None, description="The version it was published in.")
    withdrawn_reason: str | None = None

    @property
    def treaty(self) -> str:
        return self.notification.change.treaty

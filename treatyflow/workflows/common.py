"""What every procedure's lifecycle shares: notices, refusals, operator actions, time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Protocol, TypeVar, cast

from pydantic import BaseModel, Field, StringConstraints

from treatyflow.schemas import limits
from treatyflow.schemas.envelope import MultiLine, Name, Written, text_problem
from treatyflow.schemas.messages import InboundMessage


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


class Rejected(ValueError):
    """A message the lifecycle does not allow now; ``problems`` names every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


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

    def resend_problems(self, parties: set[str]) -> list[str]:
        """A resend names one of the ``parties`` a notice goes to (empty: it does, or it
        is no resend)."""
        if self.action != "resend_last_notice" or self.party in parties:
            return []
        return [f"party must be one of {', '.join(sorted(parties))}"]


class Applied(Protocol):
    """What ``taken`` counts in a lifecycle's state."""

    applied: list[str]
    content_bytes: int


T = TypeVar("T", bound=BaseModel)


def taken(state: T, problems: list[str], message: InboundMessage) -> T:
    """A copy of ``state`` to apply ``message`` to, the message counted as applied and its
    content against the request's budget; raises ``Rejected`` with every ``problems``."""
    if problems:
        raise Rejected(problems)
    s = state.model_copy(deep=True)
    counted = cast(Applied, s)
    counted.applied.append(message.message_id)
    counted.content_bytes += limits.content_size(message)
    return s


def treaty_days_left(due: datetime, now: datetime, time_scale: float) -> str:
    """How far ``due`` is from ``now`` in treaty days: real seconds scaled by the request's
    ``time_scale`` (one treaty day is ``86,400 × time_scale`` real seconds)."""
    days = (due - now).total_seconds() / (86_400 * time_scale)
    return f"{days:.1f} treaty days left" if days >= 0 else f"passed {-days:.1f} treaty days ago"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None

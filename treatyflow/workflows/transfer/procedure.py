"""The transfer of a convicted person and its transit requests as the ``Lifecycle``s their
workflows host (KZ–UAE 2018, art. 4–16): the package's pure functions, bound to a treaty
profile."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from treatyflow import constants as c
from treatyflow.schemas.messages import InboundMessage, NoticeMessage
from treatyflow.schemas.transfer import (
    SENT_BY,
    TransferProfile,
    TransferRequestMessage,
    TransitDecisionMessage,
    TransitRequestMessage,
)
from treatyflow.workflows.common import Notice, OperatorAction
from treatyflow.workflows.transfer import checks, lifecycle, operator, transit, views
from treatyflow.workflows.transfer.state import TransferState, Transition
from treatyflow.workflows.transfer.transit import TransitState, TransitStatus, TransitTransition
from treatyflow.workflows.transfer_contract import TransferAccepted


def _transfer_message(message: InboundMessage) -> Any:
    """A message the validator found to be of the transfer (its kind in ``SENT_BY``)."""
    return cast(Any, message)


@dataclass(frozen=True)
class Transfer:
    """One transfer's rules: its treaty profile and the clock's scale."""

    profile: TransferProfile
    time_scale: float = 1.0
    unopened: str = "transfer {request_id} has not been requested"

    def opens(self, message: InboundMessage) -> bool:
        return isinstance(message, TransferRequestMessage)

    def check_opening(self, message: InboundMessage, now: datetime) -> list[str]:
        assert isinstance(message, TransferRequestMessage)
        return checks.check_new_transfer(self.profile, message, now)

    def open(self, message: InboundMessage, now: datetime) -> Transition:
        assert isinstance(message, TransferRequestMessage)
        return lifecycle.open_transfer(self.profile, message, now, self.time_scale)

    def check(self, state: TransferState, message: InboundMessage) -> list[str]:
        if message.kind not in SENT_BY:
            return [f"a {message.kind} is not a message of transfer {message.request_id}"]
        return checks.check(state, self.profile, _transfer_message(message))

    def refusal_code(self, state: TransferState, message: InboundMessage,
                     problems: list[str]) -> str:
        return checks.refusal_code(problems)

    def apply(self, state: TransferState, message: InboundMessage, now: datetime) -> Transition:
        return lifecycle.apply(state, self.profile, _transfer_message(message), now)

    def correct(self, state: TransferState, message: InboundMessage, arrived: datetime,
                now: datetime) -> Transition | None:
        if message.kind not in SENT_BY:
            return None
        return lifecycle.correct_overdue(state, self.profile, _transfer_message(message),
                                         arrived, now)

    def advance(self, state: TransferState, now: datetime) -> Transition:
        return lifecycle.advance(state, self.profile, now)

    def next_due(self, state: TransferState) -> datetime | None:
        return lifecycle.next_due(state, self.profile)

    def done(self, state: TransferState) -> bool:
        # Art. 5.1: a final transfer still carries its last messages to their recipients.
        return views.ended(state)

    def parties(self, state: TransferState) -> set[str]:
        # The central authorities and the diplomatic channel's relays (art. 5.1).
        return {state.requesting, state.requested, *self.profile.channel.relays.values()}

    def envelope(self, state: TransferState, notice: Notice, now: datetime) -> NoticeMessage:
        return views.envelope_for(state, notice, now)

    def search_attributes(self, state: TransferState) -> dict[str, object]:
        requesting = self.profile.authority(state.requesting)
        requested = self.profile.authority(state.requested)
        due = views.current_deadline(state)
        return {
            c.SA_STATUS: state.status.value, c.SA_TREATY: state.treaty_id,
            c.SA_REQUESTING_AUTHORITY: state.requesting,
            c.SA_REQUESTED_AUTHORITY: state.requested,
            c.SA_REQUESTING_STATE: requesting.state if requesting else None,
            c.SA_REQUESTED_STATE: requested.state if requested else None,
            c.SA_DEADLINE: due.due if due else None, c.SA_OVERDUE: state.overdue,
            # What operators filter requests for assistance on, in the transfer's terms:
            # no urgent procedure here, and the sentencing state's own reference (a code).
            c.SA_URGENT: False, c.SA_DOMESTIC_CASE: state.person.prisoner_ref,
        }

    def describe(self, state: TransferState, now: datetime) -> str:
        return views.describe(state, now)

    def accepted(self, state: TransferState, message_id: str) -> TransferAccepted:
        due = views.current_deadline(state)
        return TransferAccepted(message_id=message_id, status=state.status,
                                overdue=state.overdue,
                                deadline=due.due.isoformat() if due else None)

    def check_operator(self, state: TransferState, action: OperatorAction,
                       now: datetime) -> list[str]:
        return operator.check_operator(state, self.profile, action, now)

    def apply_operator(self, state: TransferState, action: OperatorAction,
                       now: datetime) -> Transition:
        return operator.apply_operator(state, self.profile, action, now)


@dataclass(frozen=True)
class Transit:
    """One transit request's rules (art. 16): the profile and the transfer it serves, as
    it stood when the transit was asked for. No clock runs in it."""

    profile: TransferProfile
    transfer: TransferState
    unopened: str = "transit {request_id} has not been requested"

    def opens(self, message: InboundMessage) -> bool:
        return isinstance(message, TransitRequestMessage)

    def check_opening(self, message: InboundMessage, now: datetime) -> list[str]:
        assert isinstance(message, TransitRequestMessage)
        return transit.check_transit_request(self.profile, self.transfer, message)

    def open(self, message: InboundMessage, now: datetime) -> TransitTransition:
        assert isinstance(message, TransitRequestMessage)
        return transit.open_transit(self.profile, self.transfer, message, now)

    def check(self, state: TransitState, message: InboundMessage) -> list[str]:
        if not isinstance(message, TransitRequestMessage | TransitDecisionMessage):
            return [f"a {message.kind} is not a message of transit {message.request_id}"]
        return transit.check_transit(state, message)

    def refusal_code(self, state: TransitState, message: InboundMessage,
                     problems: list[str]) -> str:
        return "not_allowed_now"

    def apply(self, state: TransitState, message: InboundMessage,
              now: datetime) -> TransitTransition:
        return transit.apply_transit(state, _transfer_message(message), now)

    def correct(self, state: TransitState, message: InboundMessage, arrived: datetime,
                now: datetime) -> None:
        return None

    def advance(self, state: TransitState, now: datetime) -> None:
        return None

    def next_due(self, state: TransitState) -> None:
        return None

    def done(self, state: TransitState) -> bool:
        return state.status is not TransitStatus.REQUESTED

    def parties(self, state: TransitState) -> set[str]:
        return {state.requesting, state.transit_authority}

    def envelope(self, state: TransitState, notice: Notice, now: datetime) -> NoticeMessage:
        return views.transit_envelope_for(state, notice, now)

    def search_attributes(self, state: TransitState) -> dict[str, object]:
        requesting = self.profile.authority(state.requesting)
        # No clock runs in a transit request: never a deadline, never overdue (art. 16).
        return {c.SA_STATUS: state.status.value, c.SA_TREATY: state.treaty_id,
                c.SA_REQUESTING_AUTHORITY: state.requesting,
                c.SA_REQUESTED_AUTHORITY: state.transit_authority,
                c.SA_REQUESTING_STATE: requesting.state if requesting else None,
                c.SA_REQUESTED_STATE: state.transit_state,
                c.SA_OVERDUE: False, c.SA_URGENT: False}

    def describe(self, state: TransitState, now: datetime) -> str:
        return (f"**{state.status.value}**\n- {state.requesting} → {state.transit_authority} "
                f"for transfer {state.transfer_request_id} (art. 16)")

    def accepted(self, state: TransitState, message_id: str) -> TransferAccepted:
        return TransferAccepted(message_id=message_id, status=state.status)

    def check_operator(self, state: TransitState, action: OperatorAction,
                       now: datetime) -> list[str]:
        return operator.check_transit_operator(state, action)

    def apply_operator(self, state: TransitState, action: OperatorAction,
                       now: datetime) -> TransitTransition:
        return operator.apply_transit_operator(state, action, now)

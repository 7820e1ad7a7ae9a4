"""The request for assistance as the one ``Lifecycle`` its workflow hosts (SCO 2010,
art. 5–7): the package's pure functions, bound to a treaty profile."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from treatyflow import constants as c
from treatyflow.schemas.messages import InboundMessage, NoticeMessage, RequestMessage
from treatyflow.schemas.treaty import TreatyProfile
from treatyflow.workflows.assistance import lifecycle, operator, rules, views
from treatyflow.workflows.assistance.state import RequestState, Transition
from treatyflow.workflows.common import Notice, OperatorAction
from treatyflow.workflows.contract import Accepted


@dataclass(frozen=True)
class Assistance:
    """One request's rules: its treaty profile and the clock's scale."""

    profile: TreatyProfile
    time_scale: float = 1.0
    unopened: str = "request {request_id} has not been sent"

    def opens(self, message: InboundMessage) -> bool:
        return isinstance(message, RequestMessage)

    def check_opening(self, message: InboundMessage, now: datetime) -> list[str]:
        assert isinstance(message, RequestMessage)
        return rules.check_new_request(self.profile, message)

    def open(self, message: InboundMessage, now: datetime) -> Transition:
        assert isinstance(message, RequestMessage)
        return lifecycle.open_request(self.profile, message, now, self.time_scale)

    def check(self, state: RequestState, message: InboundMessage) -> list[str]:
        return rules.check(state, self.profile, message)

    def refusal_code(self, state: RequestState, message: InboundMessage,
                     problems: list[str]) -> str:
        return rules.refusal_code(state, message, problems)

    def apply(self, state: RequestState, message: InboundMessage, now: datetime) -> Transition:
        return lifecycle.apply(state, self.profile, message, now)

    def correct(self, state: RequestState, message: InboundMessage, arrived: datetime,
                now: datetime) -> Transition | None:
        return lifecycle.correct_by_arrival(state, message, arrived, now)

    def advance(self, state: RequestState, now: datetime) -> Transition:
        return lifecycle.advance(state, self.profile, now)

    def next_due(self, state: RequestState) -> datetime | None:
        return lifecycle.next_due(state, self.profile)

    def done(self, state: RequestState) -> bool:
        # Art. 7: executed, the request stays open for consent messages while its consent
        # phase lasts.
        return state.final and not state.consent_open

    def parties(self, state: RequestState) -> set[str]:
        # Art. 6.3: one it was forwarded from stays a party.
        return {state.requesting, state.requested, *state.forwarded_from}

    def envelope(self, state: RequestState, notice: Notice, now: datetime) -> NoticeMessage:
        return views.envelope_for(state, notice, now)

    def search_attributes(self, state: RequestState) -> dict[str, object]:
        return search_attributes(self.profile, state)

    def describe(self, state: RequestState, now: datetime) -> str:
        return views.describe(state, now)

    def accepted(self, state: RequestState, message_id: str) -> Accepted:
        return Accepted(message_id=message_id, status=state.status, overdue=state.overdue,
                        deadline=state.deadline.isoformat() if state.deadline else None)

    def check_operator(self, state: RequestState, action: OperatorAction,
                       now: datetime) -> list[str]:
        return operator.check_operator(state, action)

    def apply_operator(self, state: RequestState, action: OperatorAction,
                       now: datetime) -> Transition:
        return operator.apply_operator(state, self.profile, action, now)


def search_attributes(profile: TreatyProfile, state: RequestState) -> dict[str, object]:
    """What operators filter requests on (codes only), by search attribute name; the hub
    sets the opening ones when it starts the workflow."""
    requesting = profile.authority(state.requesting)
    requested = profile.authority(state.requested)
    return {
        c.SA_STATUS: state.status.value,
        c.SA_TREATY: state.treaty_id,
        c.SA_REQUESTING_AUTHORITY: state.requesting,
        c.SA_REQUESTED_AUTHORITY: state.requested,
        c.SA_REQUESTING_STATE: requesting.state if requesting else None,
        c.SA_REQUESTED_STATE: requested.state if requested else None,
        c.SA_DEADLINE: state.deadline,
        c.SA_OVERDUE: state.overdue,
        c.SA_URGENT: state.request.urgent,
        c.SA_DOMESTIC_CASE: state.request.domestic_case,
    }

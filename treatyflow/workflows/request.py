"""The Temporal workflow that carries one request for assistance (SCO 2010, art. 5–7).

A thin shell (``shell.Shell``): inbound messages arrive as updates (update id = message
id), deadlines as timers; the treaty logic is in ``lifecycle``. Notices leave through the
delivery activity with message ids fixed by the lifecycle.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from treatyflow import constants as c
    from treatyflow.metrics import RECEIPT_TO_FINAL
    from treatyflow.schemas.limits import LIMIT_REACHED
    from treatyflow.schemas.messages import (
        InboundMessage,
        NoticeMessage,
        RequestMessage,
        Submission,
    )
    from treatyflow.schemas.treaty import TreatyProfile
    from treatyflow.workflows import lifecycle
    from treatyflow.workflows.contract import Accepted, RequestInput, RequestOutcome, Timeline
    from treatyflow.workflows.lifecycle import Notice, OperatorAction, RequestState, Transition

from treatyflow.workflows.shell import (
    DELIVERY_RETRY,
    NOT_ALLOWED,
    OPENING_GRACE,
    REFUSED_AS,
    SA_DEADLINE,
    SA_DOMESTIC_CASE,
    SA_OVERDUE,
    SA_REQUESTED,
    SA_REQUESTED_STATE,
    SA_REQUESTING,
    SA_REQUESTING_STATE,
    SA_STATUS,
    SA_TREATY,
    SA_URGENT,
    Shell,
    arrival,
    refuse,
)

__all__ = [
    "DELIVERY_RETRY", "NOT_ALLOWED", "OPENING_GRACE", "SA_DEADLINE", "SA_DOMESTIC_CASE",
    "SA_OVERDUE", "SA_REQUESTED", "SA_REQUESTED_STATE", "SA_REQUESTING", "SA_REQUESTING_STATE",
    "SA_STATUS", "SA_TREATY", "SA_URGENT", "Accepted", "RequestForAssistance", "RequestInput",
    "RequestOutcome", "Timeline",
]

CONSENT_REQUIRED = "ConsentRequired"
# Whether a request has an art. 7 consent phase is the profile's (consent_window_days;
# profiles from before the phase have none, so those histories end at execution). Runs
# started with input version 1 recorded this patch's marker when the phase began; they
# replay through workflow.deprecate_patch. Version 2 runs record no marker.
CONSENT_PHASE_PATCH = "art7-consent-phase"


@workflow.defn(name="RequestForAssistance")
class RequestForAssistance(Shell[RequestState, Accepted]):
    """One request for assistance, from sending to its final state."""

    @workflow.init
    def __init__(self, start: RequestInput) -> None:
        self._profile = start.profile
        self._scale = start.time_scale
        self._input_version = start.version
        self._state = start.state
        self._init_shell(start)

    @workflow.run
    async def run(self, start: RequestInput) -> RequestOutcome:
        if not await self._opened():
            return RequestOutcome(request_id=None, status="never_opened")
        state = await self._run_to_the_end()
        return RequestOutcome(request_id=state.request_id, status=state.status.value,
                              outcome=state.outcome, overdue=state.overdue)

    @workflow.update
    async def submit(self, submission: Submission) -> Accepted:
        """Apply one message from an authority; the update id is its message id."""
        return self._submit(submission)

    @submit.validator
    def _validate(self, submission: Submission) -> None:
        self._check_signed(submission)
        self._check_party(submission.message)
        message = submission.message
        if self._state is None:
            if isinstance(message, RequestMessage):
                self._check_opener(message)
                problems = lifecycle.check_new_request(self._profile, message)
            else:
                problems = [f"request {message.request_id} has not been sent"]
        elif message.message_id in self._state.applied:
            # A redelivery is answered with the current state, not applied again; but a
            # stranger who learned a message id learns nothing from it.
            problems = lifecycle.not_a_party(self._state, message)
        else:
            now_state = self._now_state()
            # Judged as the handler will: a deadline that fell while the message waited
            # is corrected first (art. 5.2, 6.1).
            corrected = self._corrected(now_state, message,
                                        arrival(submission, message, workflow.now()),
                                        workflow.now())
            if corrected is not None:
                now_state = corrected.state
            problems = lifecycle.check(now_state, self._profile, message)
            code = lifecycle.refusal_code(now_state, message, problems) if problems else None
            if code == lifecycle.CONSENT_REQUIRED:
                refuse(problems, CONSENT_REQUIRED)
            if code == LIMIT_REACHED:
                refuse(problems, f"{REFUSED_AS}{LIMIT_REACHED}")
        refuse(problems)

    @workflow.update
    async def operate(self, action: OperatorAction) -> Accepted:
        """An operator's action, recorded in the timeline with name and reason."""
        return self._operate(action)

    @operate.validator
    def _validate_operate(self, action: OperatorAction) -> None:
        super()._validate_operate(action)

    def _parties(self, state: RequestState) -> set[str]:
        return {state.requesting, state.requested, *state.forwarded_from}

    def _corrected(self, state: RequestState, message: InboundMessage, arrived: datetime,
                   now: datetime) -> Transition | None:
        return lifecycle.correct_by_arrival(state, message, arrived, now)

    @workflow.query
    def timeline(self) -> Timeline:
        """Every message applied and every deadline reached, with who and when."""
        state = self._require_state()
        return Timeline(request_id=state.request_id, entries=state.timeline)

    @workflow.query
    def status(self) -> RequestState:
        """The request as it stands, with its timeline."""
        return self._require_state()

    # --- the lifecycle this shell hosts ----------------------------------------------

    def _open(self, message: InboundMessage, now: datetime) -> Transition:
        assert isinstance(message, RequestMessage)
        return lifecycle.open_request(self._profile, message, now, self._scale)

    def _apply(self, state: RequestState, message: InboundMessage, now: datetime) -> Transition:
        return lifecycle.apply(state, self._profile, message, now)

    def _advance(self, state: RequestState, now: datetime) -> Transition:
        return lifecycle.advance(state, self._profile, now)

    def _next_due(self, state: RequestState) -> datetime | None:
        return lifecycle.next_due(state, self._profile)

    def _done(self, state: RequestState) -> bool:
        """Art. 7: executed, the request stays open for consent messages while the hub's
        consent phase lasts; histories from before the phase existed end at execution."""
        if state.final and state.consent_open and self._input_version < 2:
            # Runs started before input version 2 recorded this patch's marker here.
            workflow.deprecate_patch(CONSENT_PHASE_PATCH)
        return state.final and not state.consent_open

    def _continued(self) -> BaseModel:
        return RequestInput(profile=self._profile, version=self._input_version,
                            time_scale=self._scale, state=self._state,
                            **self._carried())

    def _envelope(self, state: RequestState, notice: Notice, now: datetime) -> NoticeMessage:
        return lifecycle.envelope_for(state, notice, now)

    def _describe(self, state: RequestState, now: datetime) -> str:
        return lifecycle.describe(state, now)

    def _accepted(self, message_id: str) -> Accepted:
        state = self._require_state()
        return Accepted(message_id=message_id, status=state.status, overdue=state.overdue,
                        deadline=state.deadline.isoformat() if state.deadline else None)

    def _check_operator(self, state: RequestState, action: OperatorAction,
                        now: datetime) -> list[str]:
        return lifecycle.check_operator(state, action)

    def _apply_operator(self, state: RequestState, action: OperatorAction,
                        now: datetime) -> Transition:
        return lifecycle.apply_operator(state, self._profile, action, now)

    def _stepped(self, previous: RequestState | None, state: RequestState) -> None:
        if state.final and not (previous is not None and previous.final):
            self._record_outcome(state)

    def _record_outcome(self, state: RequestState) -> None:
        """Time from receipt to the final state, in treaty days, by treaty and requested
        state (the SDK's metric meter records nothing during replay)."""
        if state.received_at is None:
            return
        requested = self._profile.authority(state.requested)
        days = (workflow.now() - state.received_at).total_seconds() / (86_400 * self._scale)
        workflow.metric_meter().create_histogram_float(
            RECEIPT_TO_FINAL, "From receipt (art. 6.1) to the final state.", "d",
        ).record(days, {"treaty": state.treaty_id,
                        "requested_state": requested.state if requested else "unknown",
                        "status": state.status.value})

    def _search_attributes(self, state: RequestState) -> dict[str, object]:
        return search_attributes(self._profile, state)


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

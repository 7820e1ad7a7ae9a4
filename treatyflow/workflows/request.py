"""The Temporal workflow that carries one request for assistance (SCO 2010, art. 5–7).

A thin shell (``shell.Shell``) around the request's lifecycle (``assistance.procedure``):
inbound messages arrive as updates (update id = message id), deadlines as timers. Notices
leave through the delivery activity with message ids fixed by the lifecycle.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from treatyflow.metrics import RECEIPT_TO_FINAL
    from treatyflow.schemas import published
    from treatyflow.schemas.messages import Submission
    from treatyflow.schemas.treaty import TreatyProfile
    from treatyflow.workflows.assistance.procedure import Assistance, search_attributes
    from treatyflow.workflows.contract import Accepted, RequestInput, RequestOutcome, Timeline
    from treatyflow.workflows.lifecycle import OperatorAction, RequestState

from treatyflow.workflows.refusals import CONSENT_REQUIRED
from treatyflow.workflows.shell import Shell

__all__ = [
    "CONSENT_REQUIRED", "Accepted", "RequestForAssistance", "RequestInput", "RequestOutcome",
    "Timeline", "search_attributes",
]

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
        # The profile version the request started under, to its end: by reference from
        # input version 3 (read from the worker's cache, one copy for all), whole before.
        self._profile_ref = start.profile_ref
        self._profile = start.profile or published.profile(start.profile_ref, TreatyProfile)
        self._scale = start.time_scale
        self._input_version = start.version
        self._state = start.state
        self._init_shell(start, Assistance(self._profile, start.time_scale))

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

    submit.validator(Shell._validate_submit)

    @workflow.update
    async def operate(self, action: OperatorAction) -> Accepted:
        """An operator's action, recorded in the timeline with name and reason."""
        return self._operate(action)

    operate.validator(Shell._validate_operate)

    @workflow.query
    def timeline(self) -> Timeline:
        """Every message applied and every deadline reached, with who and when."""
        state = self._require_state()
        return Timeline(request_id=state.request_id, entries=state.timeline)

    @workflow.query
    def status(self) -> RequestState:
        """The request as it stands, with its timeline."""
        return self._require_state()

    # --- what this workflow adds to its lifecycle ------------------------------------

    def _done(self, state: RequestState) -> bool:
        """Art. 7: executed, the request stays open for consent messages while the hub's
        consent phase lasts; histories from before the phase existed end at execution."""
        if state.final and state.consent_open and self._input_version < 2:
            # Runs started before input version 2 recorded this patch's marker here.
            workflow.deprecate_patch(CONSENT_PHASE_PATCH)
        return super()._done(state)

    def _continued(self) -> BaseModel:
        return RequestInput(profile=None if self._profile_ref else self._profile,
                            profile_ref=self._profile_ref, version=self._input_version,
                            time_scale=self._scale, state=self._state,
                            **self._carried())

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

"""The Temporal workflow that carries one request for assistance (SCO 2010, art. 5–7).

A thin shell: inbound messages arrive as updates (update id = message id), deadlines
as timers; the treaty logic is in ``lifecycle``. Notices leave through the delivery
activity with message ids fixed by the lifecycle.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from treatyflow import constants as c
    from treatyflow.activities.delivery import UNROUTABLE, Deliver, Delivery
    from treatyflow.metrics import RECEIPT_TO_FINAL
    from treatyflow.schemas.messages import (
        NoticeMessage,
        RequestMessage,
        Submission,
        message_digest,
    )
    from treatyflow.workflows import lifecycle
    from treatyflow.workflows.contract import Accepted, RequestInput, RequestOutcome, Timeline
    from treatyflow.workflows.lifecycle import OperatorAction, RequestState, Transition

__all__ = ["Accepted", "RequestForAssistance", "RequestInput", "RequestOutcome", "Timeline"]

NOT_ALLOWED = "NotAllowedNow"
CONSENT_REQUIRED = "ConsentRequired"
# Workflows begun before the art. 7 consent phase ended at execution; their histories
# replay down the old path (Temporal's patching: workflow.patched).
CONSENT_PHASE_PATCH = "art7-consent-phase"
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[UNROUTABLE],
)
# A workflow started for a request whose first message was refused ends after this.
OPENING_GRACE = timedelta(minutes=10)

SA_STATUS = SearchAttributeKey.for_keyword(c.SA_STATUS)
SA_TREATY = SearchAttributeKey.for_keyword(c.SA_TREATY)
SA_REQUESTING = SearchAttributeKey.for_keyword(c.SA_REQUESTING_AUTHORITY)
SA_REQUESTED = SearchAttributeKey.for_keyword(c.SA_REQUESTED_AUTHORITY)
SA_REQUESTING_STATE = SearchAttributeKey.for_keyword(c.SA_REQUESTING_STATE)
SA_REQUESTED_STATE = SearchAttributeKey.for_keyword(c.SA_REQUESTED_STATE)
SA_DEADLINE = SearchAttributeKey.for_datetime(c.SA_DEADLINE)
SA_OVERDUE = SearchAttributeKey.for_bool(c.SA_OVERDUE)
SA_URGENT = SearchAttributeKey.for_bool(c.SA_URGENT)
SA_DOMESTIC_CASE = SearchAttributeKey.for_keyword(c.SA_DOMESTIC_CASE)


@workflow.defn(name="RequestForAssistance")
class RequestForAssistance:
    """One request for assistance, from sending to its final state."""

    @workflow.init
    def __init__(self, start: RequestInput) -> None:
        self._profile = start.profile
        self._scale = start.time_scale
        self._state: RequestState | None = start.state
        self._outbox: list[NoticeMessage] = list(start.outbox)
        self._last_sent: dict[str, NoticeMessage] = dict(start.last_sent)
        # The digest of each message applied, by message id: a different message reusing
        # an id is told apart after a continue-as-new too (update ids are per run).
        self._digests: dict[str, str] = dict(start.digests)
        self._version = 0
        self._search: dict[str, object] = {}

    @workflow.run
    async def run(self, start: RequestInput) -> RequestOutcome:
        if self._state is None:
            try:
                await workflow.wait_condition(lambda: self._state is not None,
                                              timeout=OPENING_GRACE)
            except TimeoutError:
                return RequestOutcome(request_id=None, status="never_opened")
        while True:
            await self._deliver_outbox()
            state = self._require_state()
            if state.final and not self._holds_results(state):
                break
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    RequestInput(profile=self._profile, time_scale=self._scale,
                                 state=self._state, outbox=self._outbox,
                                 last_sent=self._last_sent, digests=self._digests)
                )
            due = lifecycle.next_due(state, self._profile)
            wait = None if due is None else due - workflow.now()
            if wait is not None and wait <= timedelta(0):
                self._step(lifecycle.advance(state, self._profile, workflow.now()))
                continue
            try:
                await workflow.wait_condition(self._changed_since(self._version), timeout=wait)
            except TimeoutError:
                self._step(lifecycle.advance(self._require_state(), self._profile, workflow.now()))
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._deliver_outbox()
        state = self._require_state()
        return RequestOutcome(request_id=state.request_id, status=state.status.value,
                              outcome=state.outcome, overdue=state.overdue)

    @workflow.update
    async def submit(self, submission: Submission) -> Accepted:
        """Apply one message from an authority; the update id is its message id."""
        message = submission.message
        now = workflow.now()
        if self._state is None:
            assert isinstance(message, RequestMessage)
            transition = lifecycle.open_request(self._profile, message, now, self._scale)
        elif message.message_id in self._state.applied:
            # Applied before a continue-as-new (update ids are deduplicated per run only).
            return self._accepted(message.message_id).model_copy(
                update={"digest": self._digests.get(message.message_id)})
        else:
            # Deadlines that fell due before this message count first (a confirmation
            # after 72 hours finds the request lapsed; a late report finds it overdue).
            self._step(lifecycle.advance(self._state, self._profile, now))
            transition = lifecycle.apply(self._require_state(), self._profile, message, now)
        self._step(transition)
        workflow.logger.info(
            "message applied",
            extra={"message_id": message.message_id, "request_id": message.request_id,
                   "kind": message.kind, "status": transition.state.status.value},
        )
        # The hub's digest; histories recorded before it carried one compute it here.
        digest = self._digests[message.message_id] = (submission.digest
                                                      or message_digest(message))
        return self._accepted(message.message_id).model_copy(update={"digest": digest})

    @submit.validator
    def _validate(self, submission: Submission) -> None:
        message = submission.message
        if self._state is None:
            if isinstance(message, RequestMessage):
                problems = lifecycle.check_new_request(self._profile, message)
            else:
                problems = [f"request {message.request_id} has not been sent"]
        elif message.message_id in self._state.applied:
            # A redelivery is answered with the current state, not applied again; but a
            # stranger who learned a message id learns nothing from it.
            problems = lifecycle.not_a_party(self._state, message)
        else:
            now_state = lifecycle.advance(self._state, self._profile, workflow.now()).state
            problems = lifecycle.check(now_state, self._profile, message)
            if problems and lifecycle.refusal_code(now_state, message, problems) == (
                    lifecycle.CONSENT_REQUIRED):
                raise ApplicationError("; ".join(problems), problems, type=CONSENT_REQUIRED,
                                       non_retryable=True)
        if problems:
            raise ApplicationError("; ".join(problems), problems, type=NOT_ALLOWED,
                                   non_retryable=True)

    @workflow.update
    async def operate(self, action: OperatorAction) -> Accepted:
        """An operator's action, recorded in the timeline with name and reason."""
        now = workflow.now()
        self._step(lifecycle.advance(self._require_state(), self._profile, now))
        self._step(lifecycle.apply_operator(self._require_state(), self._profile, action, now))
        if action.action == "resend_last_notice" and action.party:
            self._outbox.append(self._last_sent[action.party])
        workflow.logger.info("operator action", extra={
            "action": action.action, "operator": action.operator,
            "request_id": self._require_state().request_id})
        return self._accepted(f"operator:{action.action}")

    @operate.validator
    def _validate_operate(self, action: OperatorAction) -> None:
        if self._state is None:
            problems = ["request not opened yet"]
        else:
            now_state = lifecycle.advance(self._state, self._profile, workflow.now()).state
            problems = lifecycle.check_operator(now_state, action)
            if (action.action == "resend_last_notice" and not problems
                    and action.party not in self._last_sent):
                problems.append(f"nothing has been sent to {action.party} yet")
        if problems:
            raise ApplicationError("; ".join(problems), problems, type=NOT_ALLOWED,
                                   non_retryable=True)

    @workflow.query
    def timeline(self) -> Timeline:
        """Every message applied and every deadline reached, with who and when."""
        state = self._require_state()
        return Timeline(request_id=state.request_id, entries=state.timeline)

    @workflow.query
    def status(self) -> RequestState:
        """The request as it stands, with its timeline."""
        return self._require_state()

    # --- internals ------------------------------------------------------------------

    def _accepted(self, message_id: str) -> Accepted:
        state = self._require_state()
        return Accepted(message_id=message_id, status=state.status, overdue=state.overdue,
                        deadline=state.deadline.isoformat() if state.deadline else None)

    def _holds_results(self, state: RequestState) -> bool:
        """Art. 7: executed, the request stays open for consent messages while the hub's
        consent phase lasts; histories from before the phase existed end at execution."""
        return state.consent_open and workflow.patched(CONSENT_PHASE_PATCH)

    def _changed_since(self, version: int) -> Callable[[], bool]:
        """True once a message moved the request on, or a notice waits to go out."""
        return lambda: self._version != version or bool(self._outbox)

    def _require_state(self) -> RequestState:
        if self._state is None:
            raise ApplicationError("request not opened yet", type="NotOpened")
        return self._state

    def _step(self, transition: Transition) -> None:
        if transition.state == self._state and not transition.notices:
            return
        was_final = self._state is not None and self._state.final
        self._state = transition.state
        if self._state.final and not was_final:
            self._record_outcome(self._state)
        self._version += 1
        now = workflow.now()
        self._outbox += [lifecycle.envelope_for(self._state, n, now) for n in transition.notices]
        self._publish_search_attributes()
        workflow.set_current_details(lifecycle.describe(self._state, now))

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

    def _publish_search_attributes(self) -> None:
        s = self._require_state()
        requesting = self._profile.authority(s.requesting)
        requested = self._profile.authority(s.requested)
        wanted: dict[str, object] = {
            c.SA_STATUS: s.status.value,
            c.SA_TREATY: s.treaty_id,
            c.SA_REQUESTING_AUTHORITY: s.requesting,
            c.SA_REQUESTED_AUTHORITY: s.requested,
            c.SA_REQUESTING_STATE: requesting.state if requesting else None,
            c.SA_REQUESTED_STATE: requested.state if requested else None,
            c.SA_DEADLINE: s.deadline,
            c.SA_OVERDUE: s.overdue,
            c.SA_URGENT: s.request.urgent,
            c.SA_DOMESTIC_CASE: s.request.domestic_case,
        }
        keys = {
            c.SA_STATUS: SA_STATUS, c.SA_TREATY: SA_TREATY,
            c.SA_REQUESTING_AUTHORITY: SA_REQUESTING, c.SA_REQUESTED_AUTHORITY: SA_REQUESTED,
            c.SA_REQUESTING_STATE: SA_REQUESTING_STATE, c.SA_REQUESTED_STATE: SA_REQUESTED_STATE,
            c.SA_DEADLINE: SA_DEADLINE, c.SA_OVERDUE: SA_OVERDUE, c.SA_URGENT: SA_URGENT,
            c.SA_DOMESTIC_CASE: SA_DOMESTIC_CASE,
        }
        updates = []
        for name, value in wanted.items():
            if self._search.get(name, ...) == value:
                continue
            self._search[name] = value
            key = keys[name]
            updates.append(key.value_unset() if value is None else key.value_set(value))  # type: ignore[attr-defined]
        if updates:
            workflow.upsert_search_attributes(updates)

    async def _deliver_outbox(self) -> None:
        while self._outbox:
            message = self._outbox[0]
            try:
                await workflow.execute_activity_method(
                    Delivery.deliver,
                    Deliver(message=message),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=DELIVERY_RETRY,
                )
            except ActivityError as err:
                # Only an unroutable notice ends here: no inbox exists for the recipient.
                workflow.logger.error(
                    "notice undeliverable",
                    extra={"message_id": message.message_id, "recipient": message.recipient,
                           "request_id": message.request_id, "error": str(err.cause)},
                )
            else:
                self._last_sent[message.recipient] = message
            self._outbox.pop(0)



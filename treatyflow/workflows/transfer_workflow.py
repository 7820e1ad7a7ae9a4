"""The Temporal workflows that carry a transfer of a convicted person (KZ–UAE 2018) and
each transit request linked to it (art. 16).

Thin shells on ``shell.Shell``, like ``request.py``: inbound messages and operators'
actions arrive as updates (update id = message id), deadlines as timers from
``transfer.next_due``; the treaty logic is in ``workflows/transfer/``. A transit is its
own workflow (its own request id) that signals its transfer through ``link_transit``; the
transfer waits on every permit before the handover may be reported completed (art. 16).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from treatyflow import constants as c
    from treatyflow.schemas.limits import LIMIT_REACHED
    from treatyflow.schemas.messages import InboundMessage, NoticeMessage, Submission
    from treatyflow.schemas.transfer import (
        TransferRequestMessage,
        TransitDecisionMessage,
        TransitRequestMessage,
    )
    from treatyflow.workflows import transfer as tf
    from treatyflow.workflows.lifecycle import Notice, OperatorAction, Rejected
    from treatyflow.workflows.transfer_contract import (
        TransferAccepted,
        TransferInput,
        TransferOutcome,
        TransferTimeline,
        TransitInput,
        TransitLink,
    )

from treatyflow.workflows.shell import REFUSED_AS, Shell, refuse

__all__ = ["TransferOfConvictedPerson", "TransitOfConvictedPerson"]


@workflow.defn(name="TransferOfConvictedPerson")
class TransferOfConvictedPerson(Shell[tf.TransferState, TransferAccepted]):
    """One transfer, from the request through the channel to the end of enforcement."""

    NOT_OPENED = "transfer not opened yet"

    @workflow.init
    def __init__(self, start: TransferInput) -> None:
        self._profile = start.profile
        self._scale = start.time_scale
        self._state = start.state
        self._init_shell(start)

    @workflow.run
    async def run(self, start: TransferInput) -> TransferOutcome:
        if not await self._opened():
            return TransferOutcome(request_id=None, status="never_opened")
        state = await self._run_to_the_end()
        return TransferOutcome(request_id=state.request_id, status=state.status.value,
                               overdue=state.overdue)

    @workflow.update
    async def submit(self, submission: Submission) -> TransferAccepted:
        """Apply one message of a central authority or a relay; update id = message id."""
        return self._submit(submission)

    @submit.validator
    def _validate(self, submission: Submission) -> None:
        self._check_signed(submission)
        self._check_party(submission.message)
        message = submission.message
        if self._state is None:
            if isinstance(message, TransferRequestMessage):
                self._check_opener(message)
                problems = tf.check_new_transfer(self._profile, message, workflow.now())
            else:
                problems = [f"transfer {message.request_id} has not been requested"]
        elif message.message_id in self._state.applied:
            problems = []
        elif message.kind not in tf.SENT_BY:
            problems = [f"a {message.kind} is not a message of transfer {message.request_id}"]
        else:
            problems = tf.check(self._now_state(), self._profile, message)  # type: ignore[arg-type]
            if tf.refusal_code(problems) == LIMIT_REACHED:
                refuse(problems, f"{REFUSED_AS}{LIMIT_REACHED}")
        refuse(problems)

    @workflow.update
    async def operate(self, action: OperatorAction) -> TransferAccepted:
        """An operator's action (extend a deadline, resend a notice, withdraw, close),
        recorded in the transfer's timeline with name and reason."""
        return self._operate(action)

    @operate.validator
    def _validate_operate(self, action: OperatorAction) -> None:
        super()._validate_operate(action)

    @workflow.signal
    async def link_transit(self, link: TransitLink) -> None:
        """A transit request's progress (art. 16), sent by its own workflow."""
        if self._state is None:
            return
        try:
            self._step(tf.link_transit(self._state, link.transit, workflow.now()))
        except Rejected as err:
            workflow.logger.warning("transit not linked", extra={"problems": err.problems})

    @workflow.query
    def status(self) -> tf.TransferState:
        """The transfer as it stands, with its timeline."""
        return self._require_state()

    @workflow.query
    def timeline(self) -> TransferTimeline:
        """Every message, hop, decision and deadline, with who and when."""
        state = self._require_state()
        return TransferTimeline(request_id=state.request_id, entries=state.timeline)

    # --- the lifecycle this shell hosts ----------------------------------------------

    def _open(self, message: InboundMessage, now: datetime) -> tf.Transition:
        assert isinstance(message, TransferRequestMessage)
        return tf.open_transfer(self._profile, message, now, self._scale)

    def _apply(self, state: tf.TransferState, message: InboundMessage,
               now: datetime) -> tf.Transition:
        return tf.apply(state, self._profile, message, now)  # type: ignore[arg-type]

    def _corrected(self, state: tf.TransferState, message: InboundMessage, arrived: datetime,
                   now: datetime) -> tf.Transition | None:
        return tf.correct_overdue(state, self._profile, message, arrived,  # type: ignore[arg-type]
                                  now)

    def _advance(self, state: tf.TransferState, now: datetime) -> tf.Transition:
        return tf.advance(state, self._profile, now)

    def _next_due(self, state: tf.TransferState) -> datetime | None:
        return tf.next_due(state, self._profile)

    def _done(self, state: tf.TransferState) -> bool:
        # Art. 5.1: a final transfer still carries its last messages to their recipients.
        return tf.ended(state)

    def _continued(self) -> BaseModel:
        return TransferInput(profile=self._profile, time_scale=self._scale, state=self._state,
                             **self._carried())

    def _envelope(self, state: tf.TransferState, notice: Notice, now: datetime) -> NoticeMessage:
        return tf.envelope_for(state, notice, now)

    def _parties(self, state: tf.TransferState) -> set[str]:
        # The central authorities and the diplomatic channel's relays (art. 5.1).
        return {state.requesting, state.requested, *self._profile.channel.relays.values()}

    def _describe(self, state: tf.TransferState, now: datetime) -> str:
        return tf.describe(state, now)

    def _accepted(self, message_id: str) -> TransferAccepted:
        s = self._require_state()
        due = tf.current_deadline(s)
        return TransferAccepted(message_id=message_id, status=s.status, overdue=s.overdue,
                                deadline=due.due.isoformat() if due else None)

    def _check_operator(self, state: tf.TransferState, action: OperatorAction,
                        now: datetime) -> list[str]:
        return tf.check_operator(state, self._profile, action, now)

    def _apply_operator(self, state: tf.TransferState, action: OperatorAction,
                        now: datetime) -> tf.Transition:
        return tf.apply_operator(state, self._profile, action, now)

    def _search_attributes(self, state: tf.TransferState) -> dict[str, object]:
        requesting = self._profile.authority(state.requesting)
        requested = self._profile.authority(state.requested)
        due = tf.current_deadline(state)
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


@workflow.defn(name="TransitOfConvictedPerson")
class TransitOfConvictedPerson(Shell[tf.TransitState, TransferAccepted]):
    """One transit request (art. 16): asked of the transit state, granted or refused."""

    NOT_OPENED = "transit not requested yet"

    @workflow.init
    def __init__(self, start: TransitInput) -> None:
        self._profile = start.profile
        self._transfer = start.transfer
        self._state = start.state
        self._init_shell(start)
        self._linked: str | None = None

    @workflow.run
    async def run(self, start: TransitInput) -> TransferOutcome:
        if not await self._opened():
            return TransferOutcome(request_id=None, status="never_opened")
        state = await self._run_to_the_end()
        return TransferOutcome(request_id=state.request_id, status=state.status.value)

    @workflow.update
    async def submit(self, submission: Submission) -> TransferAccepted:
        """The transit request, then the transit state's decision; update id = message id."""
        return self._submit(submission)

    @submit.validator
    def _validate(self, submission: Submission) -> None:
        self._check_signed(submission)
        self._check_party(submission.message)
        message = submission.message
        if self._state is None:
            if isinstance(message, TransitRequestMessage):
                self._check_opener(message)
                problems = tf.check_transit_request(self._profile, self._transfer, message)
            else:
                problems = [f"transit {message.request_id} has not been requested"]
        elif message.message_id in self._state.applied:
            problems = []
        elif not isinstance(message, TransitRequestMessage | TransitDecisionMessage):
            problems = [f"a {message.kind} is not a message of transit {message.request_id}"]
        else:
            problems = tf.check_transit(self._state, message)
        refuse(problems)

    @workflow.update
    async def operate(self, action: OperatorAction) -> TransferAccepted:
        """An operator's action on the transit request (resend a notice, withdraw, close),
        recorded in its timeline with name and reason."""
        return self._operate(action)

    @operate.validator
    def _validate_operate(self, action: OperatorAction) -> None:
        super()._validate_operate(action)

    @workflow.query
    def status(self) -> tf.TransitState:
        """The transit request as it stands."""
        return self._require_state()

    # --- the lifecycle this shell hosts ----------------------------------------------

    def _open(self, message: InboundMessage, now: datetime) -> tf.TransitTransition:
        assert isinstance(message, TransitRequestMessage)
        return tf.open_transit(self._profile, self._transfer, message, now)

    def _apply(self, state: tf.TransitState, message: InboundMessage,
               now: datetime) -> tf.TransitTransition:
        return tf.apply_transit(state, message, now)  # type: ignore[arg-type]

    def _done(self, state: tf.TransitState) -> bool:
        return state.status is not tf.TransitStatus.REQUESTED

    def _continued(self) -> BaseModel:
        return TransitInput(profile=self._profile, transfer=self._transfer, state=self._state,
                            **self._carried())

    def _envelope(self, state: tf.TransitState, notice: Notice, now: datetime) -> NoticeMessage:
        return tf.transit_envelope_for(state, notice, now)

    def _parties(self, state: tf.TransitState) -> set[str]:
        return {state.requesting, state.transit_authority}

    def _describe(self, state: tf.TransitState, now: datetime) -> str:
        return (f"**{state.status.value}**\n- {state.requesting} → {state.transit_authority} "
                f"for transfer {state.transfer_request_id} (art. 16)")

    def _accepted(self, message_id: str) -> TransferAccepted:
        return TransferAccepted(message_id=message_id, status=self._require_state().status)

    def _check_operator(self, state: tf.TransitState, action: OperatorAction,
                        now: datetime) -> list[str]:
        return tf.check_transit_operator(state, action)

    def _apply_operator(self, state: tf.TransitState, action: OperatorAction,
                        now: datetime) -> tf.TransitTransition:
        return tf.apply_transit_operator(state, action, now)

    def _search_attributes(self, state: tf.TransitState) -> dict[str, object]:
        requesting = self._profile.authority(state.requesting)
        # No clock runs in a transit request: never a deadline, never overdue (art. 16).
        return {c.SA_STATUS: state.status.value, c.SA_TREATY: state.treaty_id,
                c.SA_REQUESTING_AUTHORITY: state.requesting,
                c.SA_REQUESTED_AUTHORITY: state.transit_authority,
                c.SA_REQUESTING_STATE: requesting.state if requesting else None,
                c.SA_REQUESTED_STATE: state.transit_state,
                c.SA_OVERDUE: False, c.SA_URGENT: False}

    async def _after_delivery(self) -> None:
        """Tell the transfer where this transit stands, once per status."""
        t = self._require_state()
        if self._linked == t.status.value:
            return
        handle = workflow.get_external_workflow_handle(
            c.workflow_id(t.treaty_id, t.transfer_request_id))
        try:
            await handle.signal("link_transit", TransitLink(transit=t))
        except Exception as err:  # noqa: BLE001 - the transfer has closed: nothing to link
            workflow.logger.warning("transit not linked", extra={"error": str(err)})
        self._linked = t.status.value

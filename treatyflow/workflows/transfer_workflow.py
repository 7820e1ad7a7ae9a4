"""The Temporal workflows that carry a transfer of a convicted person (KZ–UAE 2018) and
each transit request linked to it (art. 16).

Thin shells like ``request.py``: inbound messages arrive as updates (update id = message
id), deadlines as timers from ``transfer.next_due``; the treaty logic is in
``workflows/transfer.py``. A transit is its own workflow (its own request id) that
signals its transfer through ``link_transit``; the transfer waits on every permit before
the handover may be reported completed (art. 16).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from treatyflow import constants as c
    from treatyflow.activities.delivery import Deliver, Delivery
    from treatyflow.schemas.messages import NoticeMessage, Submission, message_digest
    from treatyflow.schemas.transfer import (
        TransferRequestMessage,
        TransitDecisionMessage,
        TransitRequestMessage,
    )
    from treatyflow.workflows import transfer as tf
    from treatyflow.workflows.lifecycle import Rejected
    from treatyflow.workflows.transfer_contract import (
        TransferAccepted,
        TransferInput,
        TransferOutcome,
        TransferTimeline,
        TransitInput,
        TransitLink,
    )

from treatyflow.workflows.request import DELIVERY_RETRY, NOT_ALLOWED, OPENING_GRACE

__all__ = ["TransferOfConvictedPerson", "TransitOfConvictedPerson"]

SA_STATUS = SearchAttributeKey.for_keyword(c.SA_STATUS)
SA_TREATY = SearchAttributeKey.for_keyword(c.SA_TREATY)
SA_REQUESTING = SearchAttributeKey.for_keyword(c.SA_REQUESTING_AUTHORITY)
SA_REQUESTED = SearchAttributeKey.for_keyword(c.SA_REQUESTED_AUTHORITY)
SA_REQUESTING_STATE = SearchAttributeKey.for_keyword(c.SA_REQUESTING_STATE)
SA_REQUESTED_STATE = SearchAttributeKey.for_keyword(c.SA_REQUESTED_STATE)
SA_DEADLINE = SearchAttributeKey.for_datetime(c.SA_DEADLINE)
SA_OVERDUE = SearchAttributeKey.for_bool(c.SA_OVERDUE)
KEYS = {c.SA_STATUS: SA_STATUS, c.SA_TREATY: SA_TREATY, c.SA_REQUESTING_AUTHORITY: SA_REQUESTING,
        c.SA_REQUESTED_AUTHORITY: SA_REQUESTED, c.SA_REQUESTING_STATE: SA_REQUESTING_STATE,
        c.SA_REQUESTED_STATE: SA_REQUESTED_STATE, c.SA_DEADLINE: SA_DEADLINE,
        c.SA_OVERDUE: SA_OVERDUE}


def _refuse(problems: list[str]) -> None:
    if problems:
        raise ApplicationError("; ".join(problems), problems, type=NOT_ALLOWED,
                               non_retryable=True)


class _Shell:
    """What both workflows share: the outbox, search attributes (codes only)."""

    def __init__(self) -> None:
        self._outbox: list[NoticeMessage] = []
        self._last_sent: dict[str, NoticeMessage] = {}
        self._search: dict[str, object] = {}
        self._version = 0

    def _changed_since(self, version: int) -> Callable[[], bool]:
        return lambda: self._version != version or bool(self._outbox)

    def _upsert(self, wanted: dict[str, object]) -> None:
        updates = []
        for name, value in wanted.items():
            if self._search.get(name, ...) == value:
                continue
            self._search[name] = value
            key = KEYS[name]
            updates.append(key.value_unset() if value is None else key.value_set(value))  # type: ignore[attr-defined]
        if updates:
            workflow.upsert_search_attributes(updates)

    async def _deliver_outbox(self) -> None:
        while self._outbox:
            message = self._outbox[0]
            try:
                await workflow.execute_activity_method(
                    Delivery.deliver, Deliver(message=message),
                    start_to_close_timeout=timedelta(seconds=30), retry_policy=DELIVERY_RETRY)
            except ActivityError as err:
                workflow.logger.error("notice undeliverable", extra={
                    "message_id": message.message_id, "recipient": message.recipient,
                    "request_id": message.request_id, "error": str(err.cause)})
            else:
                self._last_sent[message.recipient] = message
            self._outbox.pop(0)


@workflow.defn(name="TransferOfConvictedPerson")
class TransferOfConvictedPerson(_Shell):
    """One transfer, from the request through the channel to the end of enforcement."""

    @workflow.init
    def __init__(self, start: TransferInput) -> None:
        super().__init__()
        self._profile = start.profile
        self._scale = start.time_scale
        self._state: tf.TransferState | None = start.state
        self._outbox = list(start.outbox)
        self._last_sent = dict(start.last_sent)

    @workflow.run
    async def run(self, start: TransferInput) -> TransferOutcome:
        if self._state is None:
            try:
                await workflow.wait_condition(lambda: self._state is not None,
                                              timeout=OPENING_GRACE)
            except TimeoutError:
                return TransferOutcome(request_id=None, status="never_opened")
        while True:
            await self._deliver_outbox()
            state = self._require_state()
            # Art. 5.1: a final transfer still carries its last messages to their recipients.
            if state.final and not tf.in_transit(state):
                break
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(TransferInput(
                    profile=self._profile, time_scale=self._scale, state=self._state,
                    outbox=self._outbox, last_sent=self._last_sent))
            due = tf.next_due(state, self._profile)
            wait = None if due is None else due - workflow.now()
            if wait is not None and wait <= timedelta(0):
                self._step(tf.advance(state, self._profile, workflow.now()))
                continue
            try:
                await workflow.wait_condition(self._changed_since(self._version), timeout=wait)
            except TimeoutError:
                self._step(tf.advance(self._require_state(), self._profile, workflow.now()))
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._deliver_outbox()
        state = self._require_state()
        return TransferOutcome(request_id=state.request_id, status=state.status.value,
                               overdue=state.overdue)

    @workflow.update
    async def submit(self, submission: Submission) -> TransferAccepted:
        """Apply one message of a central authority or a relay; update id = message id."""
        message = submission.message
        now = workflow.now()
        if self._state is None:
            assert isinstance(message, TransferRequestMessage)
            transition = tf.open_transfer(self._profile, message, now, self._scale)
        elif message.message_id in self._state.applied:
            return self._accepted(message.message_id)  # applied before a continue-as-new
        else:
            self._step(tf.advance(self._state, self._profile, now))
            transition = tf.apply(self._require_state(), self._profile, message, now)  # type: ignore[arg-type]
        self._step(transition)
        workflow.logger.info("message applied", extra={
            "message_id": message.message_id, "request_id": message.request_id,
            "kind": message.kind, "status": transition.state.status.value})
        return self._accepted(message.message_id).model_copy(
            update={"digest": message_digest(message)})

    @submit.validator
    def _validate(self, submission: Submission) -> None:
        message = submission.message
        if self._state is None:
            if isinstance(message, TransferRequestMessage):
                problems = tf.check_new_transfer(self._profile, message, workflow.now())
            else:
                problems = [f"transfer {message.request_id} has not been requested"]
        elif message.message_id in self._state.applied:
            problems = []
        elif message.kind not in tf.SENT_BY:
            problems = [f"a {message.kind} is not a message of transfer {message.request_id}"]
        else:
            now_state = tf.advance(self._state, self._profile, workflow.now()).state
            problems = tf.check(now_state, self._profile, message)  # type: ignore[arg-type]
        _refuse(problems)

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

    # --- internals ------------------------------------------------------------------

    def _require_state(self) -> tf.TransferState:
        if self._state is None:
            raise ApplicationError("transfer not opened yet", type="NotOpened")
        return self._state

    def _accepted(self, message_id: str) -> TransferAccepted:
        s = self._require_state()
        due = tf.current_deadline(s)
        return TransferAccepted(message_id=message_id, status=s.status, overdue=s.overdue,
                                deadline=due.due.isoformat() if due else None)

    def _step(self, transition: tf.Transition) -> None:
        if transition.state == self._state and not transition.notices:
            return
        self._state = transition.state
        self._version += 1
        now = workflow.now()
        self._outbox += [tf.envelope_for(self._state, n, now) for n in transition.notices]
        s = self._state
        requesting = self._profile.authority(s.requesting)
        requested = self._profile.authority(s.requested)
        due = tf.current_deadline(s)
        self._upsert({
            c.SA_STATUS: s.status.value, c.SA_TREATY: s.treaty_id,
            c.SA_REQUESTING_AUTHORITY: s.requesting, c.SA_REQUESTED_AUTHORITY: s.requested,
            c.SA_REQUESTING_STATE: requesting.state if requesting else None,
            c.SA_REQUESTED_STATE: requested.state if requested else None,
            c.SA_DEADLINE: due.due if due else None, c.SA_OVERDUE: s.overdue,
        })
        workflow.set_current_details(tf.describe(s, now))


@workflow.defn(name="TransitOfConvictedPerson")
class TransitOfConvictedPerson(_Shell):
    """One transit request (art. 16): asked of the transit state, granted or refused."""

    @workflow.init
    def __init__(self, start: TransitInput) -> None:
        super().__init__()
        self._profile = start.profile
        self._transfer = start.transfer
        self._state: tf.TransitState | None = start.state
        self._outbox = list(start.outbox)
        self._linked: str | None = None

    @workflow.run
    async def run(self, start: TransitInput) -> TransferOutcome:
        try:
            await workflow.wait_condition(lambda: self._state is not None, timeout=OPENING_GRACE)
        except TimeoutError:
            return TransferOutcome(request_id=None, status="never_opened")
        while True:
            await self._deliver_outbox()
            await self._link()
            state = self._require_state()
            if state.status is not tf.TransitStatus.REQUESTED:
                break
            await workflow.wait_condition(self._changed_since(self._version))
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._deliver_outbox()
        await self._link()
        return TransferOutcome(request_id=self._require_state().request_id,
                               status=self._require_state().status.value)

    @workflow.update
    async def submit(self, submission: Submission) -> TransferAccepted:
        """The transit request, then the transit state's decision; update id = message id."""
        message = submission.message
        now = workflow.now()
        if self._state is None:
            assert isinstance(message, TransitRequestMessage)
            transition = tf.open_transit(self._profile, self._transfer, message, now)
        elif message.message_id in self._state.applied:
            return self._accepted(message.message_id)
        else:
            transition = tf.apply_transit(self._state, message, now)  # type: ignore[arg-type]
        self._step(transition)
        return self._accepted(message.message_id).model_copy(
            update={"digest": message_digest(message)})

    @submit.validator
    def _validate(self, submission: Submission) -> None:
        message = submission.message
        if self._state is None:
            if isinstance(message, TransitRequestMessage):
                problems = tf.check_transit_request(self._profile, self._transfer, message)
            else:
                problems = [f"transit {message.request_id} has not been requested"]
        elif message.message_id in self._state.applied:
            problems = []
        elif not isinstance(message, TransitRequestMessage | TransitDecisionMessage):
            problems = [f"a {message.kind} is not a message of transit {message.request_id}"]
        else:
            problems = tf.check_transit(self._state, message)
        _refuse(problems)

    @workflow.query
    def status(self) -> tf.TransitState:
        """The transit request as it stands."""
        return self._require_state()

    def _require_state(self) -> tf.TransitState:
        if self._state is None:
            raise ApplicationError("transit not requested yet", type="NotOpened")
        return self._state

    def _accepted(self, message_id: str) -> TransferAccepted:
        return TransferAccepted(message_id=message_id, status=self._require_state().status)

    def _step(self, transition: tf.TransitTransition) -> None:
        self._state = transition.state
        self._version += 1
        now = workflow.now()
        self._outbox += [tf.transit_envelope_for(self._state, n, now)
                         for n in transition.notices]
        t = self._state
        self._upsert({c.SA_STATUS: t.status.value, c.SA_TREATY: t.treaty_id,
                      c.SA_REQUESTING_AUTHORITY: t.requesting,
                      c.SA_REQUESTED_AUTHORITY: t.transit_authority,
                      c.SA_REQUESTED_STATE: t.transit_state})
        workflow.set_current_details(
            f"**{t.status.value}**\n- {t.requesting} → {t.transit_authority} for transfer "
            f"{t.transfer_request_id} (art. 16)")

    async def _link(self) -> None:
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

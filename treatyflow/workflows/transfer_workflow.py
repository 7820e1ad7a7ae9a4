"""The Temporal workflows that carry a transfer of a convicted person (KZ–UAE 2018) and
each transit request linked to it (art. 16).

Thin shells on ``shell.Shell``, like ``request.py``, around the lifecycles of
``transfer.procedure``: inbound messages and operators' actions arrive as updates (update
id = message id), deadlines as timers. A transit is its own workflow (its own request id)
that signals its transfer through ``link_transit``; the transfer waits on every permit
before the handover may be reported completed (art. 16).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from treatyflow import constants as c
    from treatyflow.schemas import published
    from treatyflow.schemas.messages import Submission
    from treatyflow.schemas.transfer import TransferProfile
    from treatyflow.workflows import transfer as tf
    from treatyflow.workflows.common import OperatorAction, Rejected
    from treatyflow.workflows.transfer.procedure import Transfer, Transit
    from treatyflow.workflows.transfer_contract import (
        TransferAccepted,
        TransferInput,
        TransferOutcome,
        TransferTimeline,
        TransitInput,
        TransitLink,
    )

from treatyflow.workflows.shell import LifecycleState, Shell

__all__ = ["TransferOfConvictedPerson", "TransitOfConvictedPerson"]


S = TypeVar("S", bound=LifecycleState)


class _Carried(Shell[S, TransferAccepted]):
    """What a transfer and a transit declare alike: their updates, answered the same way."""

    @workflow.update
    async def submit(self, submission: Submission) -> TransferAccepted:
        """Apply one message of a central authority, a relay or the transit state; the
        update id is its message id."""
        return self._submit(submission)

    submit.validator(Shell._validate_submit)

    @workflow.update
    async def operate(self, action: OperatorAction) -> TransferAccepted:
        """An operator's action (extend a deadline, resend a notice, withdraw, close),
        recorded in the timeline with name and reason."""
        return self._operate(action)

    operate.validator(Shell._validate_operate)


@workflow.defn(name="TransferOfConvictedPerson")
class TransferOfConvictedPerson(_Carried[tf.TransferState]):
    """One transfer, from the request through the channel to the end of enforcement."""

    NOT_OPENED = "transfer not opened yet"

    @workflow.init
    def __init__(self, start: TransferInput) -> None:
        self._profile_ref = start.profile_ref  # as in RequestForAssistance
        self._profile = start.profile or published.profile(start.profile_ref, TransferProfile)
        self._scale = start.time_scale
        self._state = start.state
        self._init_shell(start, Transfer(self._profile, start.time_scale))

    @workflow.run
    async def run(self, start: TransferInput) -> TransferOutcome:
        if not await self._opened():
            return TransferOutcome(request_id=None, status="never_opened")
        state = await self._run_to_the_end()
        return TransferOutcome(request_id=state.request_id, status=state.status.value,
                               overdue=state.overdue)

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

    def _continued(self) -> BaseModel:
        return TransferInput(profile=None if self._profile_ref else self._profile,
                             profile_ref=self._profile_ref, time_scale=self._scale,
                             state=self._state, **self._carried())


@workflow.defn(name="TransitOfConvictedPerson")
class TransitOfConvictedPerson(_Carried[tf.TransitState]):
    """One transit request (art. 16): asked of the transit state, granted or refused."""

    NOT_OPENED = "transit not requested yet"

    @workflow.init
    def __init__(self, start: TransitInput) -> None:
        self._profile_ref = start.profile_ref
        self._profile = start.profile or published.profile(start.profile_ref, TransferProfile)
        self._transfer = start.transfer
        self._state = start.state
        self._init_shell(start, Transit(self._profile, start.transfer))
        self._linked: str | None = None

    @workflow.run
    async def run(self, start: TransitInput) -> TransferOutcome:
        if not await self._opened():
            return TransferOutcome(request_id=None, status="never_opened")
        state = await self._run_to_the_end()
        return TransferOutcome(request_id=state.request_id, status=state.status.value)

    @workflow.query
    def status(self) -> tf.TransitState:
        """The transit request as it stands."""
        return self._require_state()

    def _continued(self) -> BaseModel:
        return TransitInput(profile=None if self._profile_ref else self._profile,
                            profile_ref=self._profile_ref, transfer=self._transfer,
                            state=self._state, **self._carried())

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

"""The Temporal workflow of an amendment to a list of competent authorities (SCO 2010
art. 2.2): opened by the hub's operators, who act for the depositary (the SCO
Secretariat, art. 14), when the party's notification is received.

It waits for the depositary's communication to the parties, 7 days from receipt (a
timer: past it the amendment is ``Overdue``, still waiting), then for the date the
change takes effect, and then publishes the treaty's next profile version
(``activities.amendment``): new requests start under it, running ones keep theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from treatyflow.activities.amendment import NOT_APPLICABLE, Amendments
    from treatyflow.schemas.amendment import (
        AmendmentInput,
        AmendmentState,
        AmendmentStatus,
        ApplyChange,
        Communication,
        Withdrawal,
    )
    from treatyflow.workflows import amendment as rules
    from treatyflow.workflows.shell import SEARCH_KEYS

__all__ = ["AmendmentOfAuthorities"]

# A business refusal of an update (the validator's): the CLI says its reasons.
REFUSED = "AmendmentRefused"
APPLY_TIMEOUT = timedelta(minutes=2)
APPLY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1),
                          maximum_interval=timedelta(minutes=1),
                          non_retryable_error_types=[NOT_APPLICABLE])


@workflow.defn
class AmendmentOfAuthorities:
    """One amendment, notified to the depositary, communicated, in effect."""

    @workflow.init
    def __init__(self, given: AmendmentInput) -> None:
        # Built before any update is handled (one may come in the first task).
        self._state = rules.notified(given, workflow.now())
        self._search: dict[str, object] = {}

    @workflow.run
    async def run(self, given: AmendmentInput) -> AmendmentState:
        self._upsert()
        # Art. 2.2: the depositary communicates it to the parties within 7 days of receipt.
        if not await self._until(lambda s: s.status is not AmendmentStatus.NOTIFIED,
                                 self._state.deadline):
            self._state = rules.overdue(self._state)
            self._upsert()
            workflow.logger.warning("amendment overdue: not communicated within 7 days")
            await workflow.wait_condition(
                lambda: self._now.status is not AmendmentStatus.NOTIFIED)
        # In effect on its date, not before the parties were told (hub policy).
        await self._until(lambda s: s.status is AmendmentStatus.WITHDRAWN,
                          self._now.effective_at)
        if self._now.status is AmendmentStatus.COMMUNICATED:
            await self._apply(given)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._now

    async def _apply(self, given: AmendmentInput) -> None:
        try:
            ref = await workflow.execute_activity_method(
                Amendments.apply, ApplyChange(change=given.notification.change,
                                              by=workflow.info().workflow_id),
                start_to_close_timeout=APPLY_TIMEOUT, retry_policy=APPLY_RETRY)
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError) and cause.type == NOT_APPLICABLE):
                raise
            self._state = rules.not_applied(self._now, cause.message)
        else:
            self._state = rules.in_effect(self._now, ref, workflow.now())
        self._upsert()

    async def _until(self, done: Callable[[AmendmentState], bool], at: datetime) -> bool:
        """Wait until ``done(state)`` or the instant ``at``; whether it was done."""
        left = at - workflow.now()
        if left <= timedelta(0):
            return bool(done(self._now))
        try:
            await workflow.wait_condition(lambda: bool(done(self._now)), timeout=left)
        except TimeoutError:
            return bool(done(self._now))
        return True

    @property
    def _now(self) -> AmendmentState:
        return self._state

    def _upsert(self) -> None:
        updates = []
        for name, value in rules.search_attributes(self._now).items():
            if self._search.get(name, ...) == value:
                continue
            self._search[name] = value
            key = SEARCH_KEYS[name]
            updates.append(key.value_unset() if value is None else key.value_set(value))
        if updates:
            workflow.upsert_search_attributes(updates)

    @workflow.query
    def status(self) -> AmendmentState:
        return self._now

    @workflow.update
    async def communicate(self, action: Communication) -> AmendmentState:
        """The depositary communicated the amendment to the parties (art. 2.2)."""
        self._state = rules.communicate(self._now, action, workflow.now())
        self._upsert()
        return self._now

    @communicate.validator
    def _check_communicate(self, action: Communication) -> None:
        if problems := rules.problems_communicating(self._now):
            raise ApplicationError(problems[0], problems, type=REFUSED, non_retryable=True)

    @workflow.update
    async def withdraw(self, action: Withdrawal) -> AmendmentState:
        """The party withdrew its notification before it took effect."""
        self._state = rules.withdraw(self._now, action)
        self._upsert()
        return self._now

    @withdraw.validator
    def _check_withdraw(self, action: Withdrawal) -> None:
        if problems := rules.problems_withdrawing(self._now):
            raise ApplicationError(problems[0], problems, type=REFUSED, non_retryable=True)

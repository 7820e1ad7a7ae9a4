"""The Temporal workflow of an amendment to a list of competent authorities (SCO 2010
art. 2.2): opened by the hub's operators, who act for the depositary (the SCO
Secretariat, art. 14), when the party's notification is received.

It waits for the depositary's communication to the parties, 7 days from receipt (a
timer: past it the amendment is ``Overdue``, still waiting), then for the date the
change takes effect, and then publishes the treaty's next profile version
(``activities.amendment``) through the publisher's task queue (the gateway, which owns
``published/``; ``constants.publisher_queue``): new requests start under it, running ones
keep theirs.

The depositary's part is the hub's operators' (art. 14), and what they do is signed with
the operators' key like their actions on requests: the opening (verified at the start,
with the key directory it carries) and each action (in the update's validator). Runs
started before either change replay as they ran (``workflow.patched``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from treatyflow import constants as c
    from treatyflow.activities.amendment import NOT_APPLICABLE, Amendments
    from treatyflow.agency.signing import SignatureError
    from treatyflow.schemas.amendment import (
        AmendmentInput,
        AmendmentState,
        AmendmentStatus,
        ApplyChange,
        Communication,
        Withdrawal,
    )
    from treatyflow.workflows import amendment as rules
    from treatyflow.workflows.shell import upsert_changed

from treatyflow.workflows.refusals import REFUSED_AS, refused
from treatyflow.workflows.signatures import SignatureChecks

__all__ = ["AmendmentOfAuthorities"]

# A business refusal of an update (the validator's): the CLI says its reasons.
REFUSED = "AmendmentRefused"
# The opening was not signed by the operators' key: the workflow fails with this type.
OPENING_REFUSED = f"{REFUSED_AS}unsigned_opening"
# Patches: the change published on the publisher's queue (not the worker's), and the
# opening and actions signed (art. 14). A run recorded before them replays without.
PUBLISHED_BY_GATEWAY = "amendment-published-by-gateway"
SIGNED_ACTIONS = "amendment-signed-actions"
APPLY_TIMEOUT = timedelta(minutes=2)
APPLY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1),
                          maximum_interval=timedelta(minutes=1),
                          non_retryable_error_types=[NOT_APPLICABLE])


@workflow.defn
class AmendmentOfAuthorities(SignatureChecks):
    """One amendment, notified to the depositary, communicated, in effect."""

    @workflow.init
    def __init__(self, given: AmendmentInput) -> None:
        # Built before any update is handled (one may come in the first task).
        self._state = rules.notified(given, workflow.now())
        self._search: dict[str, object] = {}
        # The key directory the opening came with verifies it and every action (a newer
        # one sent along with an action replaces it if this one vouches for it).
        self._directory, self._directory_digest = given.directory, None
        self._keys = None
        self._signed: dict[str, str] = {}
        # Asked here, before any update's validator runs (they may share the first task).
        self._signing = workflow.patched(SIGNED_ACTIONS)
        self._opening_problem = self._refusal_of(given, "an amendment's opening",
                                                 "the amendment's opening")

    def _refusal_of(self, given: AmendmentInput, what: str, this: str) -> str | None:
        """Why the opening is refused (not signed by the operators' key), if it is."""
        try:
            self._check_operators_signed(given, what, this)
        except ApplicationError as err:
            return err.message
        except SignatureError as err:  # the directory it carries is not self-signed
            return f"the key directory the opening carries does not verify: {err}"
        return None

    @workflow.run
    async def run(self, given: AmendmentInput) -> AmendmentState:
        if self._signing and self._opening_problem is not None:
            raise ApplicationError(f"refused: {self._opening_problem}",
                                   type=OPENING_REFUSED, non_retryable=True)
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
        # Only the publisher writes published/ (the worker may only read it: compose).
        queue = (c.publisher_queue(workflow.info().task_queue)
                 if workflow.patched(PUBLISHED_BY_GATEWAY) else None)
        try:
            ref = await workflow.execute_activity_method(
                Amendments.apply, ApplyChange(
                    change=given.notification.change, by=workflow.info().workflow_id,
                    signed=given.signed if self._signing else None),
                task_queue=queue, start_to_close_timeout=APPLY_TIMEOUT,
                retry_policy=APPLY_RETRY)
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
        upsert_changed(self._search, rules.search_attributes(self._now))

    @workflow.query
    def status(self) -> AmendmentState:
        return self._now

    def _check_action(self, action: Communication | Withdrawal, what: str) -> None:
        """Refuse an action of an amendment whose opening was refused, or one the
        operators' key did not sign exactly (art. 14: the depositary's part is theirs)."""
        if self._signing and self._opening_problem is not None:
            refused([f"this amendment was refused at its opening: {self._opening_problem}"],
                    OPENING_REFUSED)
        self._check_operators_signed(action, f"the amendment's {what}", f"the {what}")

    @workflow.update
    async def communicate(self, action: Communication) -> AmendmentState:
        """The depositary communicated the amendment to the parties (art. 2.2)."""
        self._take_directory(action.directory)
        self._state = rules.communicate(self._now, action, workflow.now())
        self._upsert()
        return self._now

    @communicate.validator
    def _check_communicate(self, action: Communication) -> None:
        self._check_action(action, "communication")
        if problems := rules.problems_communicating(self._now):
            raise ApplicationError(problems[0], problems, type=REFUSED, non_retryable=True)

    @workflow.update
    async def withdraw(self, action: Withdrawal) -> AmendmentState:
        """The party withdrew its notification before it took effect."""
        self._take_directory(action.directory)
        self._state = rules.withdraw(self._now, action)
        self._upsert()
        return self._now

    @withdraw.validator
    def _check_withdraw(self, action: Withdrawal) -> None:
        self._check_action(action, "withdrawal")
        if problems := rules.problems_withdrawing(self._now):
            raise ApplicationError(problems[0], problems, type=REFUSED, non_retryable=True)

"""The art. 2.2 amendment procedure on the time-skipping server: the depositary's 7 days
(a timer, ``Overdue`` past it), the date it takes effect (published on the publisher's
queue), withdrawal, a change the list no longer allows on its date, and the operators'
signatures on the opening and every action (art. 14: the depositary's part is theirs)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.conftest import TEST_KEYS
from treatyflow import constants as c
from treatyflow.activities.amendment import NOT_APPLICABLE
from treatyflow.hub import signed_by_operators
from treatyflow.schemas.amendment import (
    AmendmentInput,
    AmendmentState,
    AmendmentStatus,
    ApplyChange,
    AuthorityChange,
    Communication,
    NewAuthority,
    Notification,
    Withdrawal,
)
from treatyflow.schemas.published import ProfileRef
from treatyflow.temporal import workflow_runner
from treatyflow.workflows.amendment_workflow import OPENING_REFUSED, AmendmentOfAuthorities

RECEIVED = date(2026, 3, 2)
ADDED = NewAuthority(id="KZ-AFM", state="KZ", name="Financial Monitoring Agency",
                     source="Notified to the depositary on 2026-03-02 (art. 2.2)")
CHANGE = AuthorityChange(treaty="sco-2010", change="add", authority_id="KZ-AFM",
                         authority=ADDED)


class Publisher:
    """The stubbed ``apply_amendment``: when it ran and with what; refuses if told to."""

    def __init__(self) -> None:
        self.calls: list[tuple[datetime, ApplyChange]] = []
        self.queues: list[str] = []
        self.refuse: str | None = None

    @activity.defn(name="apply_amendment")
    async def apply(self, request: ApplyChange) -> ProfileRef:
        self.calls.append((activity.info().current_attempt_scheduled_time, request))
        self.queues.append(activity.info().task_queue)
        if self.refuse:
            raise ApplicationError(self.refuse, type=NOT_APPLICABLE, non_retryable=True)
        return ProfileRef(treaty=request.change.treaty, version=2, digest="ab" * 32)


@pytest_asyncio.fixture
async def publisher(time_env: WorkflowEnvironment, task_queue: str
                    ) -> AsyncIterator[tuple[Client, Publisher, str]]:
    published = Publisher()
    # The workflows' worker, and the publisher's (the gateway's, workers.publisher).
    async with Worker(time_env.client, task_queue=task_queue,
                      workflows=[AmendmentOfAuthorities],
                      workflow_runner=workflow_runner(strict=True)), \
            Worker(time_env.client, task_queue=c.publisher_queue(task_queue),
                   activities=[published.apply]):
        yield time_env.client, published, task_queue


def signed(action: Any) -> Any:
    """``action`` as ``treatyflow authority`` sends it: signed by the operators' key, the
    hub's key directory along."""
    return signed_by_operators(action, TEST_KEYS.private[c.OPERATOR_SIGNER], TEST_KEYS)


def _opening(*, effective_in: int = 10, changed_before: int = 5,
             change: AuthorityChange = CHANGE) -> AmendmentInput:
    notification = Notification(
        amendment_id=f"KZ-AMD-{uuid.uuid4().hex[:10].upper()}", change=change,
        changed_on=RECEIVED - timedelta(days=changed_before), received_on=RECEIVED,
        effective_on=RECEIVED + timedelta(days=effective_in))
    return AmendmentInput(notification=notification, recorded_on=RECEIVED)


async def _notify(client: Client, task_queue: str, *, opening: AmendmentInput | None = None,
                  **given: Any) -> WorkflowHandle[AmendmentOfAuthorities, AmendmentState]:
    """Start an amendment, its opening signed unless ``opening`` is given as it is."""
    opening = opening or signed(_opening(**given))
    return await client.start_workflow(
        AmendmentOfAuthorities.run, opening,
        id=c.workflow_id("sco-2010", opening.notification.amendment_id), task_queue=task_queue)


async def _attributes(handle: WorkflowHandle[AmendmentOfAuthorities, AmendmentState]
                      ) -> tuple[object, object, datetime | None]:
    """RequestStatus, Overdue and Deadline as the server holds them, read raw: the
    time-skipping server keeps an unset attribute as a typed null, which the SDK's
    decoding of a description refuses."""
    client = handle._client
    raw = (await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace=client.namespace, execution=WorkflowExecution(
            workflow_id=handle.id)))).workflow_execution_info
    fields = raw.search_attributes.indexed_fields

    def value(name: str) -> object:
        found = json.loads(fields[name].data) if name in fields and fields[name].data else None
        return found[0] if isinstance(found, list) and len(found) == 1 else found

    deadline = value(c.SA_DEADLINE)
    return (value(c.SA_STATUS), value(c.SA_OVERDUE),
            datetime.fromisoformat(deadline) if isinstance(deadline, str) else None)


async def _started(handle: WorkflowHandle[AmendmentOfAuthorities, AmendmentState]) -> datetime:
    client = handle._client
    raw = (await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace=client.namespace, execution=WorkflowExecution(
            workflow_id=handle.id)))).workflow_execution_info
    return raw.start_time.ToDatetime(tzinfo=UTC)


OPERATOR = signed(Communication(operator="A. Operator", note="note verbale to every party"))


async def test_not_communicated_within_seven_days_is_overdue_and_still_takes_effect(
        time_env: WorkflowEnvironment, publisher: tuple[Client, Publisher, str]) -> None:
    client, published, queue = publisher
    handle = await _notify(client, queue)
    start = await _started(handle)
    await time_env.sleep(timedelta(days=6, hours=23))
    state = await handle.query(AmendmentOfAuthorities.status)
    assert state.status is AmendmentStatus.NOTIFIED and not state.overdue
    # Art. 2.2: 7 days from receipt (the workflow's first task began just after its start).
    assert timedelta(0) <= state.deadline - (start + timedelta(days=7)) < timedelta(seconds=5)
    assert state.effective_at - state.deadline == timedelta(days=3)
    assert await _attributes(handle) == ("amendment_notified", False, state.deadline)

    await time_env.sleep(timedelta(hours=2))
    assert (await handle.query(AmendmentOfAuthorities.status)).overdue
    assert await _attributes(handle) == ("amendment_notified", True, state.deadline)
    assert published.calls == []  # its date passes only after day 10, and no one was told

    await time_env.sleep(timedelta(days=5))  # day 12: past its date, still not told
    assert published.calls == []
    told = await handle.execute_update(AmendmentOfAuthorities.communicate, OPERATOR)
    assert told.status is AmendmentStatus.COMMUNICATED and told.communicated_by == "A. Operator"
    done = await handle.result()
    assert done.status is AmendmentStatus.IN_EFFECT and done.overdue
    assert done.profile is not None and done.profile.version == 2
    assert [call.change for _, call in published.calls] == [CHANGE]
    assert await _attributes(handle) == ("amendment_in_effect", False, None)


async def test_communicated_in_time_takes_effect_on_its_date(
        time_env: WorkflowEnvironment, publisher: tuple[Client, Publisher, str]) -> None:
    client, published, queue = publisher
    opening = signed(_opening(effective_in=10))
    handle = await _notify(client, queue, opening=opening)
    start = await _started(handle)
    await time_env.sleep(timedelta(days=2))
    await handle.execute_update(AmendmentOfAuthorities.communicate, OPERATOR)
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # told once only
        await handle.execute_update(AmendmentOfAuthorities.communicate, OPERATOR)
    assert "only a notified amendment" in str(refused.value.cause)
    await time_env.sleep(timedelta(days=6))  # past the 7 days: told in time, not overdue
    state = await handle.query(AmendmentOfAuthorities.status)
    assert state.status is AmendmentStatus.COMMUNICATED and not state.overdue
    assert published.calls == []  # day 8: before its date
    assert await _attributes(handle) == ("amendment_communicated", False, None)

    done = await handle.result()
    assert done.status is AmendmentStatus.IN_EFFECT
    (when, call), = published.calls
    assert when >= start + timedelta(days=10) and call.by == handle.id
    assert published.queues == [c.publisher_queue(queue)]  # the gateway's, not the worker's
    assert call.signed == opening.signed  # for the gateway to check against its registry
    assert done.in_effect_at is not None and done.in_effect_at >= start + timedelta(days=10)
    with pytest.raises(RPCError):  # in effect and ended: nothing more to communicate
        await handle.execute_update(AmendmentOfAuthorities.communicate, OPERATOR)


async def test_a_notification_later_than_30_days_after_the_change_is_flagged(
        publisher: tuple[Client, Publisher, str]) -> None:
    client, _, queue = publisher
    late = await _notify(client, queue, changed_before=31)
    on_time = await _notify(client, queue, changed_before=30)
    assert (await late.query(AmendmentOfAuthorities.status)).late_notification
    assert not (await on_time.query(AmendmentOfAuthorities.status)).late_notification
    for handle in (late, on_time):
        await handle.terminate("test over")


async def test_a_withdrawn_amendment_never_changes_the_list(
        time_env: WorkflowEnvironment, publisher: tuple[Client, Publisher, str]) -> None:
    client, published, queue = publisher
    handle = await _notify(client, queue, effective_in=3)
    await handle.execute_update(AmendmentOfAuthorities.communicate, OPERATOR)
    await handle.execute_update(AmendmentOfAuthorities.withdraw, signed(
        Withdrawal(operator="A. Operator", reason="the party withdrew")))
    done = await handle.result()
    assert done.status is AmendmentStatus.WITHDRAWN and published.calls == []


async def test_a_change_the_list_no_longer_allows_ends_not_applied(
        publisher: tuple[Client, Publisher, str]) -> None:
    client, published, queue = publisher
    published.refuse = "KZ-AFM is already a competent authority under sco-2010"
    handle = await _notify(client, queue, effective_in=0)
    await handle.execute_update(AmendmentOfAuthorities.communicate, OPERATOR)
    done = await handle.result()
    assert done.status is AmendmentStatus.NOT_APPLIED
    assert done.withdrawn_reason == published.refuse and done.profile is None
    assert len(published.calls) == 1  # a business refusal is not retried


async def test_an_action_not_signed_by_the_operators_key_is_refused_and_changes_nothing(
        publisher: tuple[Client, Publisher, str]) -> None:
    client, published, queue = publisher
    handle = await _notify(client, queue, effective_in=0)
    unsigned = Communication(operator="A. Operator", note="note verbale")
    forged = OPERATOR.model_copy(update={"note": "another note"})  # not what was signed
    stranger = signed_by_operators(unsigned, TEST_KEYS.private["KZ-GPO"], TEST_KEYS)
    for action, why in ((unsigned, "must be signed with the operators' key (OPERATOR)"),
                        (forged, "is not the action its JWS signs"),
                        (stranger, "is not a key of OPERATOR")):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(AmendmentOfAuthorities.communicate, action)
        assert why in str(refused.value.cause), refused.value.cause
    withdrawal = Withdrawal(operator="A. Operator", reason="the party withdrew")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(AmendmentOfAuthorities.withdraw, withdrawal)
    assert "withdrawal must be signed" in str(refused.value.cause)
    state = await handle.query(AmendmentOfAuthorities.status)
    assert state.status is AmendmentStatus.NOTIFIED and published.calls == []
    await handle.execute_update(AmendmentOfAuthorities.communicate, OPERATOR)  # signed: done
    assert (await handle.result()).status is AmendmentStatus.IN_EFFECT


async def test_an_opening_not_signed_by_the_operators_key_is_refused_at_the_start(
        publisher: tuple[Client, Publisher, str]) -> None:
    client, published, queue = publisher
    unsigned = _opening(effective_in=0)
    tampered = signed(_opening(effective_in=30)).model_copy(update={"time_scale": 0.001})
    for opening, why in ((unsigned, "must be signed with the operators' key"),
                         (tampered, "is not the action its JWS signs")):
        handle = await _notify(client, queue, opening=opening)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == OPENING_REFUSED
        assert "amendment's opening" in cause.message and why in cause.message, cause.message
    assert published.calls == []

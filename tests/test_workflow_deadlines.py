"""The request workflow on the time-skipping server with real treaty durations."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from tests.conftest import Outbox
from tests.factories import message, new_request_id, request_body
from treatyflow.constants import workflow_id
from treatyflow.hub import submit
from treatyflow.workflows.request import RequestForAssistance

KZ, RU = "KZ-GPO", "RU-MIA"


async def _open(env: WorkflowEnvironment, tq: str, **body: object) -> str:
    rid = new_request_id()
    await submit(env.client, message("request", request_id=rid, sender=KZ, recipient=RU,
                                     body=request_body(**body)), task_queue=tq)
    return rid


async def _status(env: WorkflowEnvironment, rid: str):  # type: ignore[no-untyped-def]
    handle = env.client.get_workflow_handle_for(RequestForAssistance.run,
                                                workflow_id("sco-2010", rid))
    return await handle.query(RequestForAssistance.status)


async def test_overdue_after_thirty_days_with_reminders(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _open(time_env, task_queue)
    await submit(time_env.client, message("receipt", request_id=rid, sender=RU, recipient=KZ),
                 task_queue=task_queue)
    await time_env.sleep(timedelta(days=29, hours=12))
    state = await _status(time_env, rid)
    assert not state.overdue
    assert outbox.events(KZ).count("deadline_reminder") == 2
    await time_env.sleep(timedelta(days=1))
    state = await _status(time_env, rid)
    assert state.overdue and state.status == "received"
    assert "overdue" in outbox.events(KZ) and "overdue" in outbox.events(RU)

"""Operator actions as validated updates (time-skipping server, real treaty durations)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Outbox, operate, submit
from tests.factories import message, new_request_id, request_body
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal, request_state
from treatyflow.workflows.lifecycle import OperatorAction
from treatyflow.workflows.request import RequestForAssistance

KZ, RU = "KZ-GPO", "RU-MIA"


def act(action: str, **extra: object) -> OperatorAction:
    return OperatorAction(action=action, operator="A. Operator",  # type: ignore[arg-type]
                          reason="Written instruction of 2026-11-20, file 17.", **extra)


async def _received(env: WorkflowEnvironment, tq: str) -> str:
    rid = new_request_id()
    await submit(env.client, message("request", request_id=rid, sender=KZ, recipient=RU,
                                     body=request_body()), task_queue=tq)
    await submit(env.client, message("receipt", request_id=rid, sender=RU, recipient=KZ),
                 task_queue=tq)
    return rid


async def _state(env: WorkflowEnvironment, rid: str):  # type: ignore[no-untyped-def]
    return await request_state(env.client, "sco-2010", rid)


async def test_extending_the_deadline_moves_overdue_and_is_in_the_timeline(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _received(time_env, task_queue)
    await time_env.sleep(timedelta(days=29))
    await operate(time_env.client, "sco-2010", rid, act("extend_deadline", days=10))
    await time_env.sleep(timedelta(days=2))
    assert not (await _state(time_env, rid)).overdue
    await time_env.sleep(timedelta(days=9))
    state = await _state(time_env, rid)
    assert state.overdue
    entry = next(e for e in state.timeline if e.event == "operator_extend_deadline")
    assert entry.actor == "operator:A. Operator" and "file 17" in (entry.note or "")
    assert "deadline_extended" in outbox.events(KZ) and "deadline_extended" in outbox.events(RU)


async def test_resend_repeats_the_last_notice_to_that_party(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _received(time_env, task_queue)
    await time_env.sleep(timedelta(hours=1))
    last = [d.message for d in outbox.sent if d.message.recipient == KZ][-1]
    await operate(time_env.client, "sco-2010", rid, act("resend_last_notice", party=KZ))
    await time_env.sleep(timedelta(hours=1))
    again = [d.message for d in outbox.sent if d.message.recipient == KZ][-1]
    assert again.message_id == last.message_id and again.body.event == "received"


@pytest.mark.parametrize(("action", "final"), [("withdraw", "withdrawn"), ("close", "closed")])
async def test_withdraw_and_close_end_the_request_and_tell_both_sides(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str,
    action: str, final: str,
) -> None:
    _, outbox = skipping
    rid = await _received(time_env, task_queue)
    await operate(time_env.client, "sco-2010", rid, act(action))
    handle = time_env.client.get_workflow_handle_for(RequestForAssistance.run,
                                                     workflow_id("sco-2010", rid))
    assert (await handle.result()).status == final
    assert final in outbox.events(KZ) and final in outbox.events(RU)


def test_an_action_needs_a_written_reason_and_a_name() -> None:
    with pytest.raises(ValidationError, match="reason"):
        OperatorAction(action="close", operator="A. Operator", reason="because")
    with pytest.raises(ValidationError, match="operator"):
        OperatorAction(action="close", operator="", reason="Party stopped answering.")


async def test_an_action_on_a_closed_request_is_refused_naming_its_final_status(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str,
) -> None:
    """The withdrawal clears the request's Deadline search attribute; describing the closed
    workflow on the time-skipping server must still tell the operator what became of it."""
    rid = await _received(time_env, task_queue)
    await operate(time_env.client, "sco-2010", rid, act("withdraw"))
    handle = time_env.client.get_workflow_handle_for(RequestForAssistance.run,
                                                     workflow_id("sco-2010", rid))
    assert (await handle.result()).status == "withdrawn"
    with pytest.raises(Refusal) as refused:
        await operate(time_env.client, "sco-2010", rid, act("close"))
    assert refused.value.problem == "request_closed"
    assert "withdrawn" in refused.value.reasons[0]

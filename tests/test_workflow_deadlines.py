"""The request workflow on the time-skipping server with real treaty durations."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from tests.conftest import Outbox, submit
from tests.factories import message, new_request_id, request_body
from treatyflow.constants import workflow_id
from treatyflow.hub import request_state
from treatyflow.workflows.request import RequestForAssistance

KZ, RU = "KZ-GPO", "RU-MIA"


async def _open(env: WorkflowEnvironment, tq: str, **body: object) -> str:
    rid = new_request_id()
    await submit(env.client, message("request", request_id=rid, sender=KZ, recipient=RU,
                                     body=request_body(**body)), task_queue=tq)
    return rid


async def _status(env: WorkflowEnvironment, rid: str):  # type: ignore[no-untyped-def]
    return await request_state(env.client, "sco-2010", rid)


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


async def test_oral_request_lapses_after_72_hours_unconfirmed(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _open(time_env, task_queue, urgent=True, oral=True, signed_by=None)
    await time_env.sleep(timedelta(hours=71))
    assert (await _status(time_env, rid)).status == "sent"
    await time_env.sleep(timedelta(hours=2))
    state = await _status(time_env, rid)
    assert state.status == "lapsed"
    assert "lapsed" in outbox.events(RU) and "lapsed" in outbox.events(KZ)


async def test_written_confirmation_within_72_hours_keeps_the_request_alive(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _open(time_env, task_queue, urgent=True, oral=True, signed_by=None)
    await time_env.sleep(timedelta(hours=48))
    confirmation = message("confirmation", request_id=rid, sender=KZ, recipient=RU,
                           body={"request": request_body(urgent=True)})
    await submit(time_env.client, confirmation, task_queue=task_queue)
    await time_env.sleep(timedelta(days=2))
    state = await _status(time_env, rid)
    assert state.status == "sent" and not state.oral_unconfirmed
    assert "request_confirmed" in outbox.events(RU) and "lapsed" not in outbox.events()


async def test_clock_stops_while_clarification_is_awaited(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _open(time_env, task_queue)
    await submit(time_env.client, message("receipt", request_id=rid, sender=RU, recipient=KZ),
                 task_queue=task_queue)
    await time_env.sleep(timedelta(days=10))
    ask = message("clarification_request", request_id=rid, sender=RU, recipient=KZ,
                  body={"topic": "additional_information", "questions": "Which period?"})
    await submit(time_env.client, ask, task_queue=task_queue)
    await time_env.sleep(timedelta(days=25))  # waiting on the requester: clock paused
    state = await _status(time_env, rid)
    assert not state.overdue and "overdue" not in outbox.events()
    await submit(time_env.client, message("clarification", request_id=rid, sender=KZ,
                                          recipient=RU, in_reply_to=ask.message_id,
                                          body={"answer": "March to June 2025."}),
                 task_queue=task_queue)
    await time_env.sleep(timedelta(days=19))
    assert not (await _status(time_env, rid)).overdue
    await time_env.sleep(timedelta(days=2))  # 10 + 20 days of running clock: overdue
    assert (await _status(time_env, rid)).overdue


async def test_final_state_ends_the_workflow_with_its_outcome(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    rid = await _open(time_env, task_queue)
    await submit(time_env.client, message("receipt", request_id=rid, sender=RU, recipient=KZ),
                 task_queue=task_queue)
    await submit(time_env.client, message(
        "refusal", request_id=rid, sender=RU, recipient=KZ,
        body={"extent": "whole", "grounds": ["no_offence"],
              "reason": "The act is not an offence under the law of the requested state."}),
        task_queue=task_queue)
    handle = time_env.client.get_workflow_handle_for(RequestForAssistance.run,
                                                     workflow_id("sco-2010", rid))
    outcome = await handle.result()
    assert (outcome.status, outcome.outcome) == ("refused", "whole")



async def test_silent_requested_authority_is_deemed_to_have_received_and_goes_overdue(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _open(time_env, task_queue)
    await time_env.sleep(timedelta(days=4))
    assert (await _status(time_env, rid)).status == "sent"
    await time_env.sleep(timedelta(days=2))
    state = await _status(time_env, rid)
    assert state.status == "received" and state.received_at == state.opened_at
    assert "receipt_deemed" in outbox.events(RU) and "receipt_deemed" in outbox.events(KZ)
    await time_env.sleep(timedelta(days=25))  # 31 days after delivery
    assert (await _status(time_env, rid)).overdue


REPORT = {"extent": "full", "summary": "Statements attached.", "confidentiality": "restricted"}


async def _overdue_then_report(env: WorkflowEnvironment, tq: str, before_deadline: timedelta
                               ) -> str:
    """A request past its deadline (the overdue timer fired), then a report that reached
    the gateway ``before_deadline`` before the deadline (negative: after it) and was
    applied only now, as after an outage of Temporal."""
    rid = await _open(env, tq)
    await submit(env.client, message("receipt", request_id=rid, sender=RU, recipient=KZ),
                 task_queue=tq)
    await env.sleep(timedelta(days=30, minutes=5))
    state = await _status(env, rid)
    assert state.overdue and state.deadline is not None
    arrived = state.deadline - before_deadline
    report = message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                     body=REPORT, sent_at=arrived - timedelta(seconds=2))
    await submit(env.client, report, task_queue=tq, received_at=arrived)
    await env.sleep(timedelta(minutes=1))  # the notices go out
    return rid


async def test_a_report_that_arrived_before_the_deadline_is_on_time_though_applied_after(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _overdue_then_report(time_env, task_queue, timedelta(seconds=24))
    state = await _status(time_env, rid)
    assert state.status == "executed" and not state.overdue
    events = [e.event for e in state.timeline]
    assert events[-3:] == ["overdue", "overdue_withdrawn", "execution_report"]
    assert "overdue_withdrawn" in outbox.events(KZ) and "overdue_withdrawn" in outbox.events(RU)
    executed = next(d.message for d in outbox.sent if d.message.body.event == "executed")
    assert executed.body.overdue is False


async def test_a_report_that_arrived_after_the_deadline_stays_overdue(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    rid = await _overdue_then_report(time_env, task_queue, -timedelta(seconds=24))
    state = await _status(time_env, rid)
    assert state.status == "executed" and state.overdue
    assert "overdue_withdrawn" not in outbox.events()


async def test_a_confirmation_that_arrived_within_72_hours_undoes_a_lapse_applied_before_it(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    """Art. 5.2 judged by arrival: the lapse timer fired while a written confirmation that
    had reached the hub 24 s before the 72 hours waited (Temporal away). The request is
    open again, as it was, and both sides are told the lapse is withdrawn."""
    _, outbox = skipping
    rid = await _open(time_env, task_queue, urgent=True, oral=True, signed_by=None)
    await time_env.sleep(timedelta(hours=72, minutes=1))
    lapsed = await _status(time_env, rid)
    assert lapsed.status == "lapsed" and lapsed.confirm_by is not None
    arrived = lapsed.confirm_by - timedelta(seconds=24)
    confirmation = message("confirmation", request_id=rid, sender=KZ, recipient=RU,
                           body={"request": request_body(urgent=True)},
                           sent_at=arrived - timedelta(seconds=2))
    await submit(time_env.client, confirmation, task_queue=task_queue, received_at=arrived)
    await time_env.sleep(timedelta(minutes=1))  # the notices go out
    state = await _status(time_env, rid)
    assert state.status == "sent" and not state.oral_unconfirmed
    assert [e.event for e in state.timeline][-3:] == ["lapsed", "lapse_withdrawn",
                                                      "confirmation"]
    assert "lapse_withdrawn" in outbox.events(KZ) and "lapse_withdrawn" in outbox.events(RU)
    assert "request_confirmed" in outbox.events(RU)
    # It goes on as any confirmed request: received, then executed.
    await submit(time_env.client, message("receipt", request_id=rid, sender=RU, recipient=KZ),
                 task_queue=task_queue)
    assert (await _status(time_env, rid)).status == "received"

"""Issue 12, item 3 on the time-skipping server: a party sending delay after delay is
refused past the limit with ``limit_reached``; the request keeps answering, its deadline
still fires, a later report is still applied, and its history stays small."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Outbox, submit
from tests.factories import envelope, message, new_request_id
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal, request_state
from treatyflow.schemas import limits
from treatyflow.schemas.messages import parse_inbound
from treatyflow.workers.gateway import describe, past_limits

KZ, RU = "KZ-GPO", "RU-MIA"


async def test_seventy_long_delays_leave_the_request_working(
    time_env: WorkflowEnvironment, skipping: tuple[object, Outbox], task_queue: str
) -> None:
    _, outbox = skipping
    client = time_env.client
    rid = new_request_id()
    await submit(client, message("request", request_id=rid, sender=KZ, recipient=RU),
                 task_queue=task_queue)
    await submit(client, message("receipt", request_id=rid, sender=RU, recipient=KZ),
                 task_queue=task_queue)
    # The delays carried 20,000-character reasons: the gateway refuses each one,
    # naming the field and its limit.
    raw = json.dumps(envelope("delay", request_id=rid, sender=RU, recipient=KZ,
                              body={"reason": "x" * 20_000}))
    with pytest.raises(ValidationError) as too_long:
        parse_inbound(raw)
    assert past_limits(too_long.value)
    assert describe(too_long.value) == [
        f"delay.body.reason: String should have at most {limits.REASON_MAX} characters"]
    # Seventy delays of the longest reason allowed: twenty are applied, the rest refused.
    refused: list[Refusal] = []
    for i in range(70):
        delay = message("delay", request_id=rid, sender=RU, recipient=KZ,
                        body={"reason": f"{i:02d} " + "y" * (limits.REASON_MAX - 3)})
        try:
            await submit(client, delay, task_queue=task_queue)
        except Refusal as err:
            refused.append(err)
    assert len(refused) == 70 - limits.MAX_PER_KIND
    assert {r.problem for r in refused} == {"limit_reached"}
    assert refused[0].reasons == [
        f"limit_reached: at most {limits.MAX_PER_KIND} delay messages (art. 6.2) per "
        f"request, the hub's limit; request {rid} has {limits.MAX_PER_KIND}"]
    assert outbox.events(KZ).count("delayed") == limits.MAX_PER_KIND
    # The deadline still fires (art. 6.1: 30 days from receipt) ...
    await time_env.sleep(timedelta(days=31))
    state = await request_state(client, "sco-2010", rid)
    assert state.overdue and "overdue" in outbox.events(KZ) and "overdue" in outbox.events(RU)
    # ... and a later report is still applied.
    await submit(client, message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                                 body={"extent": "full", "summary": "Statements attached.",
                                       "confidentiality": "confidential"}),
                 task_queue=task_queue)
    state = await request_state(client, "sco-2010", rid)
    assert state.status == "executed" and "executed" in outbox.events(KZ)
    assert state.content_bytes <= limits.MAX_CONTENT_BYTES_PER_REQUEST
    assert len(state.model_dump_json()) < 200_000
    # Every payload in the history (each update, notice, the state) stays small.
    history = await client.get_workflow_handle(workflow_id("sco-2010", rid)).fetch_history()
    assert max(event.ByteSize() for event in history.events) < 100_000

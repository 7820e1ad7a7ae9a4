"""Issue 12, item 3: a party sending delay after delay is
refused past the limit with ``limit_reached``; the request keeps answering, its deadline
still fires, a later report is still applied, and its history stays small."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from temporalio.client import Client

from tests.conftest import eventually, submit
from tests.factories import envelope, message, new_request_id
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal, request_state
from treatyflow.schemas import limits
from treatyflow.schemas.messages import parse_inbound
from treatyflow.settings import Settings
from treatyflow.workers.gateway import describe, past_limits

KZ, RU = "KZ-GPO", "RU-MIA"


@pytest.mark.stack
async def test_seventy_long_delays_leave_the_request_working(
    stack_client: Client, stack_settings: Settings
) -> None:
    """On the real dev server (the time-skipping one stops skipping time after a rejected
    update, and fifty are rejected here), one treaty day a second."""
    client, scale = stack_client, stack_settings.time_scale
    rid = new_request_id()
    await submit(client, message("request", request_id=rid, sender=KZ, recipient=RU),
                 time_scale=scale)
    await submit(client, message("receipt", request_id=rid, sender=RU, recipient=KZ))
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
            await submit(client, delay)
        except Refusal as err:
            refused.append(err)
    assert len(refused) == 70 - limits.MAX_PER_KIND
    assert {r.problem for r in refused} == {"limit_reached"}
    assert refused[0].reasons == [
        f"limit_reached: at most {limits.MAX_PER_KIND} delay messages (art. 6.2) per "
        f"request, the hub's limit; request {rid} has {limits.MAX_PER_KIND}"]
    state = await request_state(client, "sco-2010", rid)
    assert [e.event for e in state.timeline].count("delay") == limits.MAX_PER_KIND
    # The deadline still fires (art. 6.1: 30 days from receipt, 30 s here) ...

    async def overdue() -> bool:
        return (await request_state(client, "sco-2010", rid)).overdue

    await eventually(overdue, timeout=90, what="the request overdue")
    # ... and a later report is still applied.
    await submit(client, message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                                 body={"extent": "full", "summary": "Statements attached.",
                                       "confidentiality": "confidential"}))
    state = await request_state(client, "sco-2010", rid)
    assert state.status == "executed" and state.overdue
    assert state.content_bytes <= limits.MAX_CONTENT_BYTES_PER_REQUEST
    assert len(state.model_dump_json()) < 200_000
    # Every payload in the history (each update, notice, the state) stays small.
    history = await client.get_workflow_handle(workflow_id("sco-2010", rid)).fetch_history()
    assert max(event.ByteSize() for event in history.events) < 100_000

"""Integration, art. 7: consent and a transfer to a third party through the real RabbitMQ
and the real Temporal dev server; a transfer without consent lands in the dead-letter
queue with ``consent_required``."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from tests.conftest import KZ, REPORT, RU, Opened, dead_letter, error_about, event, status
from tests.factories import message
from treatyflow import constants as c
from treatyflow.metrics import OPEN_QUERY
from treatyflow.schemas.messages import NoticeMessage
from treatyflow.settings import Settings

pytestmark = pytest.mark.stack

CN, UZ = "CN-MPS", "UZ-MIA"  # a third state's authority; one the results must not reach
ASK = {"scope": "third_party_transfer", "purpose": "Joint investigation with China.",
       "third_party": CN, "reason": "The funds went on to an account in Urumqi."}


async def _executed(opened: Opened) -> None:
    """The opened request executed: RU-MIA's receipt and report, KZ-GPO told."""
    _, kz_box, ru, _, rid = opened
    await ru.publish(message("receipt", request_id=rid, sender=RU, recipient=KZ, body={}))
    await ru.publish(message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                             body=REPORT))
    executed = await kz_box.expect(event(rid, "executed"))
    assert isinstance(executed, NoticeMessage)
    assert executed.body.detail["handling"]["confidentiality"] == "restricted"


async def test_results_transferred_to_a_third_party_with_consent(
    opened: Opened, authorities, stack_client: Client
) -> None:
    kz, kz_box, ru, ru_box, rid = opened
    await _executed(opened)
    _, cn_box = await authorities(CN)
    asked = message("consent_request", request_id=rid, sender=KZ, recipient=RU, body=ASK)
    await kz.publish(asked)
    requested = await ru_box.expect(event(rid, "consent_requested"))
    assert isinstance(requested, NoticeMessage) and requested.body.detail["third_party"] == CN
    decision = message("consent_decision", request_id=rid, sender=RU, recipient=KZ,
                       in_reply_to=asked.message_id,
                       body={"granted": True, "conditions": "No onward transfer."})
    await ru.publish(decision)
    granted = await kz_box.expect(event(rid, "consent_granted"))
    assert isinstance(granted, NoticeMessage) and granted.body.status == "executed"
    transfer = message("results_transfer", request_id=rid, sender=KZ, recipient=CN,
                       body={"consent": decision.message_id, "content": "Statements attached."})
    await kz.publish(transfer)
    arrived = await cn_box.expect(event(rid, "results_transferred"))
    assert isinstance(arrived, NoticeMessage)
    assert arrived.body.detail["content"] == "Statements attached."
    assert arrived.body.detail["handling"]["purpose"] == ASK["purpose"]
    assert arrived.body.detail["conditions"] == "No onward transfer."
    told = await ru_box.expect(event(rid, "results_transferred"))
    assert isinstance(told, NoticeMessage) and told.body.detail["to_authority"] == CN
    state = await status(stack_client, rid)
    assert state.status == "executed"
    # the workflow runs on through the consent phase, but the request is no longer open
    wf = c.workflow_id("sco-2010", rid)
    described = await stack_client.get_workflow_handle(wf).describe()
    assert described.status is not None and described.status.name == "RUNNING"
    for _ in range(20):  # visibility is eventually consistent
        running = await stack_client.count_workflows(
            f"WorkflowId = '{wf}' AND ExecutionStatus = 'Running'")
        if running.count == 1:
            break
        await asyncio.sleep(0.5)
    assert running.count == 1
    assert (await stack_client.count_workflows(
        f"{OPEN_QUERY} AND WorkflowId = '{wf}'")).count == 0
    assert [e.event for e in state.timeline][-3:] == [
        "consent_request", "consent_decision", "results_transfer"]


async def test_transfer_without_consent_is_dead_lettered_consent_required(
    opened: Opened, authorities, stack_client: Client, stack_settings: Settings
) -> None:
    kz, kz_box, _, _, rid = opened
    await _executed(opened)
    _, uz_box = await authorities(UZ)
    transfer = message("results_transfer", request_id=rid, sender=KZ, recipient=UZ,
                       body={"consent": "no-such-consent", "content": "Statements attached."})
    await kz.publish(transfer)
    error = await kz_box.expect(error_about(transfer.message_id))
    assert error.body.problem == "consent_required"  # type: ignore[union-attr]
    assert error.body.reasons[0].startswith("art. 7.3")  # type: ignore[union-attr]
    kept = await dead_letter(stack_settings, transfer.message_id)
    assert kept.headers[c.HEADER_PROBLEM] == "consent_required"
    await uz_box.settle(1)
    assert not any(isinstance(m, NoticeMessage) and m.request_id == rid
                   for m in uz_box.messages)
    assert (await status(stack_client, rid)).results.transfers == []  # type: ignore[union-attr]

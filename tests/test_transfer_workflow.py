"""The transfer and transit workflows on the time-skipping server: the channel's hops, the
post-transfer deadlines (art. 12, 13.2) and the link of a transit to its transfer (art. 16)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Outbox
from tests.transfer_factories import (
    AE,
    AE_MFA,
    KZ,
    KZ_MFA,
    TREATY,
    envelope,
    handover,
    mid,
    transit_body,
)
from tests.transfer_factories import request_body as transfer_body
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal, submit, transfer_state
from treatyflow.schemas.messages import parse_inbound
from treatyflow.workflows.transfer import TransferState
from treatyflow.workflows.transfer_workflow import TransferOfConvictedPerson


class Wire:
    """One transfer driven through hub.submit, each message carried hop by hop by the
    foreign ministries (art. 5.1)."""

    def __init__(self, env: WorkflowEnvironment, task_queue: str) -> None:
        self.env = env
        self.tq = task_queue
        self.request_id = f"TR-{mid()[4:14].upper()}"

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def post(self, kind: str, sender: str, recipient: str, body: dict[str, Any], *,
                   request_id: str | None = None, **kw: Any) -> str:
        data = envelope(kind, sender, recipient, body, request_id=request_id or self.request_id,
                        sent_at=(await self.now()).astimezone(UTC), **kw)
        await submit(self.env.client, parse_inbound(json.dumps(data)), task_queue=self.tq)
        return str(data["message_id"])

    async def send(self, kind: str, sender: str, body: dict[str, Any], *, relay: bool = True,
                   **kw: Any) -> str:
        recipient = AE if sender == KZ else KZ
        message_id = await self.post(kind, sender, recipient, body, **kw)
        if relay:
            await self.relay(message_id)
        return message_id

    async def relay(self, message_id: str, hops: int = 2) -> None:
        for _ in range(hops):
            d = (await self.state()).dispatch(message_id)
            assert d is not None and d.next_hop is not None
            by, to = d.next_hop
            await self.post("transfer_relay", by, to, {"relayed_message_id": message_id,
                                                        "note_reference": "Note 12/7"})

    async def state(self) -> TransferState:
        return await transfer_state(self.env.client, TREATY, self.request_id)

    async def enforcing(self) -> None:
        await self.send("transfer_request", KZ, transfer_body())
        await self.send("transfer_decision", AE,
                        {"executing_state_provision": "UAE Penal Code, art. 451"})
        await self.send("transfer_decision", KZ, {})
        today = (await self.now()).date()
        await self.send("transfer_handover", KZ, handover(today + timedelta(days=3)))
        await self.send("transfer_completed", AE, {"handed_over_on": today.isoformat(),
                                                   "place": "Almaty International Airport"})
        await self.send("transfer_execution_report", AE, {
            "event": "enforcement_continued", "occurred_on": today.isoformat(),
            "term_imposed": {"years": 5}})
        assert (await self.state()).status == "enforcing"


async def events(outbox: Outbox, recipient: str, wanted: str) -> list[str]:
    """The events delivered to ``recipient``, once ``wanted`` is among them (the workflow
    delivers its notices after the update has answered)."""
    for _ in range(100):
        if wanted in outbox.events(recipient):
            break
        await asyncio.sleep(0.05)
    return outbox.events(recipient)


@pytest.fixture
def wire(time_env: WorkflowEnvironment, task_queue: str) -> Wire:
    return Wire(time_env, task_queue)


async def test_request_travels_through_both_foreign_ministries(
    wire: Wire, skipping: tuple[Client, Outbox]
) -> None:
    _, outbox = skipping
    request = await wire.send("transfer_request", KZ, transfer_body(), relay=False)
    assert (await wire.state()).status == "requested"
    assert await events(outbox, KZ_MFA, "relay_requested") == ["relay_requested"]
    with pytest.raises(Refusal) as refused:  # art. 5.1: not yet received by the UAE
        await wire.post("transfer_decision", AE, KZ, {})
    assert refused.value.problem == "not_allowed_now"
    await wire.relay(request)
    state = await wire.state()
    assert state.status == "under_consideration" and state.received_at is not None
    assert [e.hop for e in state.timeline[:3]] == [
        f"{KZ} → {KZ_MFA}", f"{KZ_MFA} → {AE_MFA}", f"{AE_MFA} → {AE}"]
    assert "delivered" in await events(outbox, AE, "delivered")
    assert "delivery_confirmed" in await events(outbox, KZ, "delivery_confirmed")


async def test_a_silent_foreign_ministry_goes_overdue_on_its_hop(
    wire: Wire, time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox]
) -> None:
    _, outbox = skipping
    await wire.send("transfer_request", KZ, transfer_body(), relay=False)
    await time_env.sleep(timedelta(days=9))
    assert not (await wire.state()).overdue
    await time_env.sleep(timedelta(days=2))  # hub policy: 10 days a hop (art. 5.1)
    state = await wire.state()
    assert state.overdue and state.status == "requested"
    assert "overdue" in await events(outbox, KZ_MFA, "overdue")
    assert "overdue" in await events(outbox, KZ, "overdue")
    assert "overdue" not in outbox.events(AE)


async def test_enforcement_change_after_a_sentence_decision_goes_overdue_art_12(
    wire: Wire, time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox]
) -> None:
    _, outbox = skipping
    await wire.enforcing()
    today = (await wire.now()).date()
    decision = await wire.send("transfer_sentence_decision", KZ, {
        "decision": "pardon", "effect": "ends_enforcement", "decided_on": today.isoformat(),
        "details": "Pardoned by decree of the President of the Republic of Kazakhstan."})
    await time_env.sleep(timedelta(days=1))
    assert not (await wire.state()).overdue
    await time_env.sleep(timedelta(days=2))  # hub policy for 'immediately': 2 days
    state = await wire.state()
    assert state.overdue and state.status == "enforcing"
    assert "overdue" in await events(outbox, AE, "overdue")
    assert "overdue" in await events(outbox, KZ, "overdue")
    await wire.send("transfer_enforcement_change", AE, {
        "action": "ended", "effective_on": (await wire.now()).date().isoformat()},
        in_reply_to=decision)
    handle = time_env.client.get_workflow_handle_for(
        TransferOfConvictedPerson.run, workflow_id(TREATY, wire.request_id))
    outcome = await handle.result()
    assert (outcome.status, outcome.overdue) == ("enforcement_ended", False)


async def test_information_requested_is_due_in_30_days_art_13_2(
    wire: Wire, time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox]
) -> None:
    _, outbox = skipping
    await wire.enforcing()
    ask = await wire.send("transfer_information_request", KZ,
                          {"questions": "How is the sentence being executed?"})
    await time_env.sleep(timedelta(days=29))
    assert not (await wire.state()).overdue
    await time_env.sleep(timedelta(days=2))
    assert (await wire.state()).overdue
    await wire.send("transfer_execution_report", AE, {
        "event": "information", "occurred_on": (await wire.now()).date().isoformat(),
        "details": "Serving the sentence in Al Wathba."}, in_reply_to=ask)
    assert not (await wire.state()).overdue


async def test_a_transit_is_its_own_workflow_linked_to_the_transfer_art_16(
    wire: Wire, skipping: tuple[Client, Outbox]
) -> None:
    _, outbox = skipping
    await wire.send("transfer_request", KZ, transfer_body())
    await wire.send("transfer_decision", AE, {"executing_state_provision": "UAE Penal Code"})
    await wire.send("transfer_decision", KZ, {})
    today = (await wire.now()).date()
    await wire.send("transfer_handover", KZ, handover(today + timedelta(days=3),
                                                      transit=["UZ"]))
    assert (await wire.state()).transits == {"UZ": "not_requested"}
    with pytest.raises(Refusal, match="transit through UZ is not requested"):
        await wire.post("transfer_completed", AE, KZ, {"handed_over_on": today.isoformat(),
                                                       "place": "Almaty"})
    transit_id = f"TT-{wire.request_id[3:]}"
    body = transit_body(wire.request_id, "UZ", period_from=today.isoformat(),
                        period_to=(today + timedelta(days=5)).isoformat())
    request = await wire.post("transfer_transit_request", KZ, "UZ-GPO", body,
                              request_id=transit_id)
    assert "transit_requested" in await events(outbox, "UZ-GPO", "transit_requested")
    await wire.post("transfer_transit_decision", "UZ-GPO", KZ, {"granted": True},
                    request_id=transit_id, in_reply_to=request)
    for _ in range(50):
        if (await wire.state()).transits == {"UZ": "granted"}:
            break
        await wire.env.sleep(timedelta(seconds=1))
    assert (await wire.state()).transits == {"UZ": "granted"}
    await wire.send("transfer_completed", AE, {"handed_over_on": today.isoformat(),
                                               "place": "Almaty International Airport"})
    assert (await wire.state()).status == "transferred"
    assert "transit_granted" in await events(outbox, KZ, "transit_granted")
    assert "transit_granted" in await events(outbox, AE, "transit_granted")

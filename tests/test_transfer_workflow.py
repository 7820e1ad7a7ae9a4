"""The transfer workflow on the time-skipping server: the channel's hops and the deadlines
of the channel (hub policy) and after the transfer (art. 12, 13.2)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import pytest_asyncio

from tests.conftest import Outbox, Wire, events, own_time_skipping, submit
from tests.transfer_factories import (
    AE,
    AE_MFA,
    KZ,
    KZ_MFA,
    TREATY,
    envelope,
)
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal
from treatyflow.schemas.messages import parse_inbound
from treatyflow.workflows.transfer_workflow import TransferOfConvictedPerson

time_env = pytest_asyncio.fixture(own_time_skipping, name="time_env")


async def test_request_travels_through_both_foreign_ministries(wire: Wire) -> None:
    request = await wire.send("transfer_request", KZ, await wire.request(), relay=False)
    assert (await wire.state()).status == "requested"
    assert await events(wire.outbox, KZ_MFA, "relay_requested") == ["relay_requested"]
    with pytest.raises(Refusal) as refused:  # art. 5.1: not yet received by the UAE
        await wire.post("transfer_decision", AE, KZ, {})
    assert refused.value.problem == "not_allowed_now"
    await wire.relay(request)
    state = await wire.state()
    assert state.status == "under_consideration" and state.received_at is not None
    assert [e.hop for e in state.timeline[:3]] == [
        f"{KZ} → {KZ_MFA}", f"{KZ_MFA} → {AE_MFA}", f"{AE_MFA} → {AE}"]
    assert "delivered" in await events(wire.outbox, AE, "delivered")
    assert "delivery_confirmed" in await events(wire.outbox, KZ, "delivery_confirmed")


async def test_a_silent_foreign_ministry_goes_overdue_on_its_hop(wire: Wire) -> None:
    await wire.send("transfer_request", KZ, await wire.request(), relay=False)
    await wire.env.sleep(timedelta(days=9))
    assert not (await wire.state()).overdue
    await wire.env.sleep(timedelta(days=2))  # hub policy: 10 days a hop (art. 5.1)
    state = await wire.state_once(lambda s: s.overdue)
    assert state.overdue and state.status == "requested"
    assert "overdue" in await events(wire.outbox, KZ_MFA, "overdue")
    assert "overdue" in await events(wire.outbox, KZ, "overdue")
    assert "overdue" not in wire.outbox.events(AE)


async def test_enforcement_change_after_a_sentence_decision_goes_overdue_art_12(wire: Wire) -> None:
    await wire.enforcing()
    decision = await wire.pardon()
    await wire.env.sleep(timedelta(days=1))
    assert not (await wire.state()).overdue
    await wire.env.sleep(timedelta(days=2))  # hub policy for 'immediately': 2 days
    state = await wire.state_once(lambda s: s.overdue)
    assert state.overdue and state.status == "enforcing"
    assert "overdue" in await events(wire.outbox, AE, "overdue")
    assert "overdue" in await events(wire.outbox, KZ, "overdue")
    await wire.send("transfer_enforcement_change", AE, {
        "action": "ended", "effective_on": (await wire.now()).date().isoformat()},
        in_reply_to=decision)
    handle = wire.env.client.get_workflow_handle_for(
        TransferOfConvictedPerson.run, workflow_id(TREATY, wire.request_id))
    outcome = await handle.result()
    assert (outcome.status, outcome.overdue) == ("enforcement_ended", False)


async def test_information_requested_is_due_in_30_days_art_13_2(wire: Wire) -> None:
    await wire.enforcing()
    ask = await wire.send("transfer_information_request", KZ,
                          {"questions": "How is the sentence being executed?"})
    await wire.env.sleep(timedelta(days=29))
    assert not (await wire.state()).overdue
    await wire.env.sleep(timedelta(days=2))
    assert (await wire.state_once(lambda s: s.overdue)).overdue
    report = await wire.send("transfer_execution_report", AE, {
        "event": "information", "occurred_on": (await wire.now()).date().isoformat(),
        "details": "Serving the sentence in Al Wathba."}, in_reply_to=ask)
    assert not (await wire.state()).overdue
    await delivered(wire.outbox, AE, "delivery_confirmed", report)


async def delivered(outbox: Outbox, recipient: str, event: str, about: str) -> None:
    """Wait for the notice: a delivery still running when the test's workflow is terminated
    leaves the time-skipping server unable to skip time for the tests after it."""
    for _ in range(100):
        if any(d.message.recipient == recipient and d.message.body.event == event
               and d.message.body.about_message_id == about for d in outbox.sent):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} about {about} delivered to {recipient}")


# The link of a transit to its transfer (a signal from the transit's workflow, art. 16) is
# tested on the real stack: test_stack_transfer.py.


async def _hop_overdue_then_relayed(wire: Wire, before_due: timedelta) -> None:
    """A request the Kazakh ministry did not relay within its hop's 10 days (the overdue
    timer fired), then its relay that reached the hub ``before_due`` before the hop was due
    (negative: after it) and was applied only now, as after an outage of Temporal."""
    request = await wire.send("transfer_request", KZ, await wire.request(), relay=False)
    await wire.env.sleep(timedelta(days=11))
    state = await wire.state_once(lambda s: s.overdue)
    hop = next(d for d in state.deadlines if d.open and d.overdue)
    assert hop.code == "relay_hop" and hop.owner == KZ_MFA
    arrived = hop.due - before_due
    data = envelope("transfer_relay", KZ_MFA, AE_MFA,
                    {"relayed_message_id": request, "note_reference": "Note 12/7"},
                    request_id=wire.request_id, sent_at=arrived - timedelta(seconds=2))
    await submit(wire.env.client, parse_inbound(json.dumps(data)), task_queue=wire.tq,
                 received_at=arrived)


async def test_a_relay_that_reached_the_hub_before_its_hop_was_due_is_on_time(wire: Wire) -> None:
    """Judged by arrival: the ministry's relay reached the hub 24 s before the hop's 10
    days ran out, but was applied only after the overdue timer fired (Temporal away). The
    overdue mark is withdrawn, and those the overdue notice told are told so."""
    await _hop_overdue_then_relayed(wire, timedelta(seconds=24))
    state = await wire.state_once(lambda s: not s.overdue)
    assert not state.overdue
    events_now = [e.event for e in state.timeline]
    assert events_now[-3:] == ["overdue", "overdue_withdrawn", "relayed"], events_now
    assert "overdue_withdrawn" in await events(wire.outbox, KZ_MFA, "overdue_withdrawn")
    assert "overdue_withdrawn" in await events(wire.outbox, KZ, "overdue_withdrawn")


async def test_a_relay_that_reached_the_hub_after_its_hop_was_due_stays_overdue(wire: Wire) -> None:
    await _hop_overdue_then_relayed(wire, -timedelta(seconds=24))
    state = await wire.state()
    assert "overdue_withdrawn" not in [e.event for e in state.timeline]
    assert "overdue_withdrawn" not in wire.outbox.events()

"""The transfer workflow on the time-skipping server: the channel's hops and the deadlines
of the channel (hub policy) and after the transfer (art. 12, 13.2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Outbox, eventually, start_time_skipping, submit
from tests.transfer_factories import (
    AE,
    AE_MFA,
    KZ,
    KZ_MFA,
    TREATY,
    envelope,
    handover,
    mid,
    sentence,
)
from tests.transfer_factories import request_body as transfer_body
from treatyflow.codec import PayloadKeys
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal, transfer_state
from treatyflow.schemas.messages import parse_inbound
from treatyflow.workflows.transfer import TransferState
from treatyflow.workflows.transfer_workflow import TransferOfConvictedPerson


class Wire:
    """One transfer driven through hub.submit, each message carried hop by hop by the
    foreign ministries (art. 5.1)."""

    def __init__(self, env: WorkflowEnvironment, task_queue: str) -> None:
        self.env = env
        self.tq = task_queue
        self.request_id = f"{KZ}-TR-{mid()[4:14].upper()}"

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

    async def request(self) -> dict[str, Any]:
        """A complete request whose sentence leaves years to serve on the server's clock,
        which earlier tests of the session have moved on (art. 8.3)."""
        today = (await self.now()).date()
        return transfer_body(sentence=sentence(
            judgment_date=(today - timedelta(days=300)).isoformat(),
            judgment_final_on=(today - timedelta(days=270)).isoformat(),
            counted_from=(today - timedelta(days=365)).isoformat()))

    async def state_once(self, holds: Callable[[TransferState], bool],
                         timeout: float = 30) -> TransferState:
        """The state once ``holds`` is true of it (a fired timer's workflow task may still
        be running when the clock has moved), or as it is after ``timeout``."""
        async def held() -> TransferState | None:
            state = await self.state()
            return state if holds(state) else None

        try:
            return await eventually(held, timeout=timeout, interval=0.1)
        except AssertionError:
            return await self.state()

    async def state(self) -> TransferState:
        return await transfer_state(self.env.client, TREATY, self.request_id)

    async def enforcing(self) -> None:
        await self.send("transfer_request", KZ, await self.request())
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
    with contextlib.suppress(AssertionError):  # a loaded machine: the caller asserts
        await eventually(lambda: wanted in outbox.events(recipient), interval=0.05)
    return outbox.events(recipient)


@pytest_asyncio.fixture
async def time_env(payload_keys: PayloadKeys) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this test's own. Sharing the session's, these tests saw
    it stop skipping time now and then (about 1 run in 15, env.sleep timing out after the
    previous test's transfer); a fresh server costs about a second."""
    env = await start_time_skipping(payload_keys)
    yield env
    await env.shutdown()


@pytest.fixture
def wire(time_env: WorkflowEnvironment, task_queue: str) -> Wire:
    return Wire(time_env, task_queue)


async def test_request_travels_through_both_foreign_ministries(
    wire: Wire, skipping: tuple[Client, Outbox]
) -> None:
    _, outbox = skipping
    request = await wire.send("transfer_request", KZ, await wire.request(), relay=False)
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
    await wire.send("transfer_request", KZ, await wire.request(), relay=False)
    await time_env.sleep(timedelta(days=9))
    assert not (await wire.state()).overdue
    await time_env.sleep(timedelta(days=2))  # hub policy: 10 days a hop (art. 5.1)
    state = await wire.state_once(lambda s: s.overdue)
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
    state = await wire.state_once(lambda s: s.overdue)
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
    assert (await wire.state_once(lambda s: s.overdue)).overdue
    report = await wire.send("transfer_execution_report", AE, {
        "event": "information", "occurred_on": (await wire.now()).date().isoformat(),
        "details": "Serving the sentence in Al Wathba."}, in_reply_to=ask)
    assert not (await wire.state()).overdue
    await delivered(outbox, AE, "delivery_confirmed", report)


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


async def test_a_relay_that_reached_the_hub_before_its_hop_was_due_is_on_time(
    wire: Wire, time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox]
) -> None:
    """Judged by arrival: the ministry's relay reached the hub 24 s before the hop's 10
    days ran out, but was applied only after the overdue timer fired (Temporal away). The
    overdue mark is withdrawn, and those the overdue notice told are told so."""
    _, outbox = skipping
    request = await wire.send("transfer_request", KZ, await wire.request(), relay=False)
    await time_env.sleep(timedelta(days=11))
    state = await wire.state_once(lambda s: s.overdue)
    hop = next(d for d in state.deadlines if d.open and d.overdue)
    assert hop.code == "relay_hop" and hop.owner == KZ_MFA
    arrived = hop.due - timedelta(seconds=24)
    data = envelope("transfer_relay", KZ_MFA, AE_MFA,
                    {"relayed_message_id": request, "note_reference": "Note 12/7"},
                    request_id=wire.request_id, sent_at=arrived - timedelta(seconds=2))
    await submit(time_env.client, parse_inbound(json.dumps(data)), task_queue=wire.tq,
                 received_at=arrived)
    state = await wire.state_once(lambda s: not s.overdue)
    assert not state.overdue
    events_now = [e.event for e in state.timeline]
    assert events_now[-3:] == ["overdue", "overdue_withdrawn", "relayed"], events_now
    assert "overdue_withdrawn" in await events(outbox, KZ_MFA, "overdue_withdrawn")
    assert "overdue_withdrawn" in await events(outbox, KZ, "overdue_withdrawn")


async def test_a_relay_that_reached_the_hub_after_its_hop_was_due_stays_overdue(
    wire: Wire, time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox]
) -> None:
    _, outbox = skipping
    request = await wire.send("transfer_request", KZ, await wire.request(), relay=False)
    await time_env.sleep(timedelta(days=11))
    state = await wire.state_once(lambda s: s.overdue)
    hop = next(d for d in state.deadlines if d.open and d.overdue)
    arrived = hop.due + timedelta(seconds=24)
    data = envelope("transfer_relay", KZ_MFA, AE_MFA,
                    {"relayed_message_id": request, "note_reference": "Note 12/7"},
                    request_id=wire.request_id, sent_at=arrived - timedelta(seconds=2))
    await submit(time_env.client, parse_inbound(json.dumps(data)), task_queue=wire.tq,
                 received_at=arrived)
    state = await wire.state()
    assert "overdue_withdrawn" not in [e.event for e in state.timeline]
    assert "overdue_withdrawn" not in outbox.events()

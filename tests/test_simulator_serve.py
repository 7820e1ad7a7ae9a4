"""The simulator's ``--serve`` mode answers transfers of convicted persons (KZ–UAE 2018) as
well as requests for assistance: an agency that connects to a stack with simulated
counterparts sees its transfer relayed by both foreign ministries (art. 5.1, 6.1), agreed by
the other central authority (art. 8.6, naming its provision: art. 8.4), and once handed
over, completed and reported on (art. 10)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.conftest import event
from tests.transfer_factories import (
    AE,
    AE_MFA,
    KZ,
    KZ_MFA,
    TREATY,
    es_request_body,
    handover,
    mid,
    request_body,
)
from tests.transfer_factories import message as transfer_message
from treatyflow.agency import AgencyClient
from treatyflow.hub import transfer_state
from treatyflow.schemas.messages import NoticeMessage
from treatyflow.settings import Settings
from treatyflow.simulation.simulator import Simulation, serving_simulation

pytestmark = pytest.mark.stack


async def _serving(settings: Settings, authorities: set[str]) -> AsyncIterator[Simulation]:
    sim = serving_simulation(settings)
    await sim.connect(authorities)
    yield sim
    await sim.close()


@pytest_asyncio.fixture
async def served(stack_settings: Settings) -> AsyncIterator[Simulation]:
    """The UAE's central authority and both foreign ministries, played by ``--serve``."""
    async for sim in _serving(stack_settings, {AE, KZ_MFA, AE_MFA}):
        yield sim


@pytest_asyncio.fixture
async def served_kz(stack_settings: Settings) -> AsyncIterator[Simulation]:
    """Kazakhstan's central authority and both foreign ministries, played by ``--serve``."""
    async for sim in _serving(stack_settings, {KZ, KZ_MFA, AE_MFA}):
        yield sim


def _sender(client: AgencyClient, sender: str, recipient: str, rid: str
            ) -> Callable[[str, dict[str, object]], Awaitable[str]]:
    """Sends a transfer message of ``rid`` from ``sender`` (on ``client``) to ``recipient``:
    returns its message id."""
    async def send(kind: str, body: dict[str, object]) -> str:
        m = transfer_message(kind, sender, recipient, body, request_id=rid,
                             sent_at=datetime.now(UTC))
        await client.publish(m)
        return m.message_id
    return send


def _delivered(request_id: str, kind: str):  # type: ignore[no-untyped-def]
    def match(m: object) -> bool:
        return (isinstance(m, NoticeMessage) and m.request_id == request_id
                and m.body.event == "delivered" and m.body.detail.get("kind") == kind)
    return match


async def test_served_authorities_carry_a_transfer_to_enforcement(
    served: Simulation, authorities, stack_client: Client
) -> None:
    kz, kz_box = await authorities(KZ)  # the agency under test: everyone else is simulated
    rid = f"{KZ}-TR-SERVE-{mid()[4:12].upper()}"
    send = _sender(kz, KZ, AE, rid)

    request = await send("transfer_request", request_body())
    decided = await kz_box.expect(_delivered(rid, "transfer_decision"), timeout=60)
    assert isinstance(decided, NoticeMessage)
    decision = decided.body.detail["message"]
    assert decision["sender"] == AE
    assert decision["body"]["executing_state_provision"]  # art. 8.4: named by the executing state
    state = await transfer_state(stack_client, TREATY, rid)
    legs = [e.hop for e in state.timeline if e.hop]
    # The request and the answer each went through both ministries (art. 5.1).
    assert f"{KZ_MFA} → {AE_MFA}" in legs and f"{AE_MFA} → {KZ_MFA}" in legs
    assert state.dispatch(request) is not None and state.dispatch(request).delivered_at

    await send("transfer_decision", {})
    await kz_box.expect(event(rid, "agreed"), timeout=60)
    await send("transfer_handover", handover(datetime.now(UTC).date() + timedelta(days=1)))
    reported = await kz_box.expect(_delivered(rid, "transfer_execution_report"), timeout=60)
    assert reported.body.detail["message"]["body"]["event"] == "enforcement_continued"  # type: ignore[union-attr]
    state = await transfer_state(stack_client, TREATY, rid)
    assert state.status == "enforcing"
    assert not [m for m in kz_box.messages if getattr(m, "kind", None) == "error"]
    # Every message the simulated side sent was accepted: none came back as an error.
    assert not [m for run in served.transfers.runs.values() for m in run.errors]
    assert served.transfers.run_of(rid) is not None


async def test_served_sentencing_state_answers_the_executing_states_request(
    served_kz: Simulation, authorities, stack_client: Client
) -> None:
    """The UAE asks (art. 4, 7.2); the served Kazakh authority agrees, then supplies its own
    checklist with the sentence and the consent it carries (art. 7.3, 7.1(b), (e)) and,
    once both agree, arranges the handover (art. 3)."""
    ae, ae_box = await authorities(AE)
    rid = f"{AE}-TR-SERVE-{mid()[4:12].upper()}"
    send = _sender(ae, AE, KZ, rid)

    await send("transfer_request", es_request_body())
    await ae_box.expect(_delivered(rid, "transfer_decision"), timeout=60)
    supplied = await ae_box.expect(_delivered(rid, "transfer_documents"), timeout=60)
    docs = supplied.body.detail["message"]["body"]  # type: ignore[union-attr]
    assert {d["code"] for d in docs["documents"]} >= {"sentence_information", "consent"}
    assert docs["sentence"] and docs["consent"]
    assert supplied.body.status == "under_consideration"  # type: ignore[union-attr]
    await send("transfer_decision", {})
    await ae_box.expect(event(rid, "agreed"), timeout=60)
    handed = await ae_box.expect(_delivered(rid, "transfer_handover"), timeout=60)
    assert handed.body.detail["message"]["sender"] == KZ  # type: ignore[union-attr]
    state = await transfer_state(stack_client, TREATY, rid)
    assert state.status == "handover_arranged"
    assert not [m for run in served_kz.transfers.runs.values() for m in run.errors]

"""Faults the system must survive (issue 4), one focused test per kind, on a stack of this
module's own: its components are killed and restarted here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.conftest import eventually, running_stack
from tests.factories import message, new_request_id, request_body
from treatyflow import constants as c
from treatyflow.agency import AgencyClient
from treatyflow.chaos import faults
from treatyflow.hub import request_state
from treatyflow.keys import RegistryFile, signing_key
from treatyflow.schemas.messages import ErrorMessage, NoticeMessage
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import Expectation, Scenario, execute, silent
from treatyflow.simulation.simulator import Simulation
from treatyflow.temporal import connect
from treatyflow.workflows.lifecycle import RequestState

pytestmark = pytest.mark.stack

KZ, RU = "KZ-GPO", "RU-MIA"
ORAL = {"urgent": True, "oral": True, "signed_by": None}


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A destructive stack: one treaty day = 1 s."""
    with running_stack(Settings(state_dir=tmp_path_factory.mktemp("faults"),
                                seconds_per_day=1.0, log_level="warning")) as settings:
        yield settings


@pytest_asyncio.fixture
async def sim(fault_stack: Settings) -> AsyncIterator[Simulation]:
    simulation = Simulation(fault_stack, fault_stack.seconds_per_day)
    await simulation.connect({KZ, RU})
    yield simulation
    await simulation.close()


def client_for(settings: Settings, authority: str) -> AgencyClient:
    passwords = faults.read_passwords(settings.secrets_dir)
    return AgencyClient(authority, settings.amqp_url(authority, passwords[authority]),
                        signing_key=signing_key(settings.secrets_dir, authority),
                        hub_keys=RegistryFile(settings.secrets_dir))


async def reaches(client: Client, request_id: str, status: str, timeout: float = 60) -> None:
    async def there() -> RequestState | None:
        state = await request_state(client, "sco-2010", request_id)
        return state if state.status.value == status else None

    state = await eventually(there, timeout=timeout, interval=0.5,
                             what=f"{request_id} reaching {status}")
    assert len(state.applied) == len(set(state.applied)), state.applied


async def test_worker_and_gateway_killed_under_load_lose_nothing(
        fault_stack: Settings, sim: Simulation) -> None:
    executed = Scenario("executed", KZ, RU, {RU: execute(1)}, Expectation("executed", "full"))
    ids = [new_request_id() for _ in range(12)]
    for rid in ids[:6]:
        await sim.start(executed, rid)
    assert faults.kill(fault_stack, "worker") is not None  # mid-activity under load
    for rid in ids[6:]:
        await sim.start(executed, rid)
    assert faults.kill(fault_stack, "gateway") is not None  # accepted, maybe not yet acked
    await faults.restore(fault_stack)
    client = await connect(fault_stack)
    for rid in ids:
        await reaches(client, rid, "executed")
    delivered = [m.message_id for m in sim.inbox[KZ]]
    assert len(delivered) == len(set(delivered))


@pytest.mark.parametrize("how", ["kill", "graceful"])
async def test_broker_restart_every_consumer_back_within_seconds(
        fault_stack: Settings, sim: Simulation, how: str) -> None:
    if how == "kill":
        faults.kill(fault_stack, "rabbitmq")
    else:
        faults.stop_rabbitmq_gracefully(fault_stack)
    await faults.restore(fault_stack)
    took = await faults.await_consumers(
        fault_stack, {c.inbound_queue(KZ), c.inbound_queue(RU), c.inbox_queue(KZ),
                      c.inbox_queue(RU)}, timeout=30)
    assert took < 30
    rid = new_request_id()  # and messages flow again, published with confirms
    await sim.start(Scenario("executed", KZ, RU, {RU: execute(1)},
                             Expectation("executed", "full")), rid)
    await reaches(await connect(fault_stack), rid, "executed")


async def test_temporal_killed_restarts_on_its_database_with_timers(
        fault_stack: Settings, sim: Simulation) -> None:
    lapsing, deemed = new_request_id(), new_request_id()
    await sim.start(Scenario("lapsed", KZ, RU, {RU: silent()}, Expectation("lapsed"),
                             content=ORAL), lapsing)
    await sim.start(Scenario("deemed", KZ, RU, {RU: silent()}, Expectation("received")),
                    deemed)
    client = await connect(fault_stack)
    await reaches(client, deemed, "sent", timeout=10)
    faults.kill(fault_stack, "temporal")
    await asyncio.sleep(2)
    await faults.restore(fault_stack)
    client = await connect(fault_stack)
    await reaches(client, lapsing, "lapsed", timeout=30)  # the 72-hour timer fired
    await reaches(client, deemed, "received", timeout=30)  # receipt deemed after 5 days


REPORT = {"extent": "full", "summary": "Statements attached.", "confidentiality": "restricted"}


async def test_a_report_sent_before_a_deadline_that_fell_in_a_temporal_outage_is_on_time(
        fault_stack: Settings) -> None:
    """Art. 6.1 judged by arrival: RU-MIA's report reaches the hub three treaty days before
    the deadline, while Temporal is down; the deadline falls during the outage. Once
    Temporal is back the report is applied, and the request is executed on time: the
    overdue mark the timer set is withdrawn, on the record and to both parties."""
    client = await connect(fault_stack)
    async with client_for(fault_stack, KZ) as kz, client_for(fault_stack, RU) as ru, \
            kz.inbox(explicit_ack=False) as kz_inbox:
        rid = new_request_id()
        await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                                 body=request_body()))
        await reaches(client, rid, "sent", timeout=20)
        await ru.publish(message("receipt", request_id=rid, sender=RU, recipient=KZ))
        await reaches(client, rid, "received", timeout=20)
        deadline = (await request_state(client, "sco-2010", rid)).deadline
        assert deadline is not None
        loop = asyncio.get_running_loop()
        until = (deadline - datetime.now(UTC)).total_seconds() - 3 * fault_stack.seconds_per_day
        await asyncio.sleep(max(until, 0))
        faults.kill(fault_stack, "temporal")
        report = message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                         body=REPORT)
        await ru.publish(report)
        assert report.sent_at < deadline
        started = loop.time()
        while datetime.now(UTC) < deadline + timedelta(seconds=3):
            await asyncio.sleep(0.5)
        await faults.restore(fault_stack)
        client = await connect(fault_stack)
        await reaches(client, rid, "executed", timeout=60)
        state = await request_state(client, "sco-2010", rid)
        events = [e.event for e in state.timeline]
        assert not state.overdue, events
        assert "overdue_withdrawn" in events and events[-1] == "execution_report", events
        assert loop.time() - started > 3  # the outage did span the deadline
        told: set[str] = set()
        while not {"overdue_withdrawn", "executed"} <= told:
            got = await kz_inbox.get(timeout=30)
            if isinstance(got, NoticeMessage) and got.request_id == rid:
                told.add(got.body.event)


async def test_authority_crash_between_receiving_and_acking_gets_it_again(
        fault_stack: Settings) -> None:
    async with client_for(fault_stack, KZ) as kz:
        rid = new_request_id()
        crashed = client_for(fault_stack, RU)
        await crashed.connect()
        async with crashed.inbox(explicit_ack=True) as inbox:
            await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                                     body=request_body()))
            while True:
                async with inbox.next(timeout=20) as got:
                    if isinstance(got, NoticeMessage) and got.request_id == rid:
                        first = got.message_id
                        await crashed.close()  # dies holding it: no ack
                        break
        async with client_for(fault_stack, RU) as again, again.inbox(
                explicit_ack=True) as inbox:
            while True:
                async with inbox.next(timeout=20) as got:
                    if isinstance(got, NoticeMessage) and got.request_id == rid:
                        assert got.message_id == first
                        break


async def test_duplicates_and_a_reply_before_its_message(fault_stack: Settings) -> None:
    client = await connect(fault_stack)
    async with client_for(fault_stack, KZ) as kz, client_for(fault_stack, RU) as ru, \
            ru.inbox(explicit_ack=True) as ru_inbox:
        rid = new_request_id()
        # The reply first, answered before the request is sent: the two senders' lanes are
        # served side by side, so only one sender's messages keep their order.
        early = await ru.publish(message("receipt", request_id=rid, sender=RU, recipient=KZ,
                                         body={}))
        refused = None
        while refused is None:
            async with ru_inbox.next(timeout=20) as got:
                if isinstance(got, ErrorMessage) and got.body.refused_message_id == (
                        early.message_id):
                    refused = got.body.problem
        assert refused == "unknown_request"
        request = await kz.publish(message("request", request_id=rid, sender=KZ,
                                           recipient=RU, body=request_body()))
        await kz.publish(request)  # the same message twice
        seen: list[str] = []
        while "request_delivered" not in seen:
            async with ru_inbox.next(timeout=20) as got:
                if isinstance(got, NoticeMessage) and got.request_id == rid:
                    seen.append(got.body.event)
        await ru.publish(message("receipt", request_id=rid, sender=RU, recipient=KZ, body={}))
        await reaches(client, rid, "received", timeout=20)
        state = await request_state(client, "sco-2010", rid)
        assert state.applied.count(request.message_id) == 1
        assert seen.count("request_delivered") == 1


async def test_poison_message_ends_in_the_dead_letter_queue(fault_stack: Settings) -> None:
    result = await faults.poison_probe(fault_stack)
    assert (result.deliveries, result.reason) == (c.DELIVERY_LIMIT + 1, "delivery_limit")


async def test_publish_to_a_queue_that_does_not_exist_raises(fault_stack: Settings) -> None:
    assert "Unroutable" in await faults.unroutable_probe(fault_stack)

"""Two gateways and two workers on one stack (issue 16; docs/operators/scale-out.md): the
messages of many requests, from both parties, interleaved, are applied in the order each
party sent them, by both gateways; a gateway killed, its lanes and its lead are taken
over within seconds, and handed back once it is up again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest
import pytest_asyncio

from tests.conftest import REPORT, eventually, running_stack, status
from tests.factories import message, new_request_id
from treatyflow import constants as c
from treatyflow.agency import AgencyClient, Unverified
from treatyflow.agency.entries import entry_id
from treatyflow.chaos import faults
from treatyflow.codec import load_keys
from treatyflow.keys import RegistryFile, signing_key
from treatyflow.local import stack
from treatyflow.record import Record
from treatyflow.schemas.messages import ErrorMessage, NoticeMessage, OutboundMessage
from treatyflow.schemas.treaty import all_authorities
from treatyflow.settings import Settings
from treatyflow.temporal import connect
from treatyflow.topology import read_passwords
from treatyflow.workers.replicas import slot_of

pytestmark = pytest.mark.stack

# Each pair's two lanes are served first by different gateways (slots 0 and 1 of 2).
PAIRS = (("KZ-GPO", "RU-MIA"), ("UZ-MIA", "CN-MPS"))
PER_PAIR = 15
GATEWAYS = ("gateway", "gateway-2")
TAKEOVER_S = 10  # "within seconds": a standby is already registered on every lane


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_stack(Settings(state_dir=tmp_path_factory.mktemp("replicas"),
                                seconds_per_day=600.0, gateways=2, workers=2)) as settings:
        yield settings


class Party:
    """One authority's connection and everything its inbox receives, read in the
    background (many requests wait on it at once)."""

    def __init__(self, who: str, client: AgencyClient) -> None:
        self.who = who
        self.client = client
        self.got: list[OutboundMessage] = []

    async def read(self, inbox: object) -> None:
        while True:
            got = await inbox.get(timeout=3600)  # type: ignore[attr-defined]
            if not isinstance(got, Unverified):
                self.got.append(got)

    async def notice(self, rid: str, name: str, timeout: float = 60) -> NoticeMessage:
        def found() -> NoticeMessage | None:
            return next((m for m in self.got if isinstance(m, NoticeMessage)
                         and m.request_id == rid and m.body.event == name), None)
        return await eventually(found, timeout=timeout, interval=0.1,
                                what=f"{name} of {rid} in {self.who}'s inbox")

    def errors(self) -> list[ErrorMessage]:
        return [m for m in self.got if isinstance(m, ErrorMessage)]


@pytest_asyncio.fixture
async def parties(replicas: Settings) -> AsyncIterator[dict[str, Party]]:
    passwords = read_passwords(replicas.secrets_dir)
    registry = RegistryFile(replicas.secrets_dir)
    async with AsyncExitStack() as exits:
        out: dict[str, Party] = {}
        readers = []
        for who in {a for pair in PAIRS for a in pair}:
            client = await exits.enter_async_context(AgencyClient(
                who, replicas.amqp_url(who, passwords[who]),
                signing_key=signing_key(replicas.secrets_dir, who), keys=registry))
            out[who] = Party(who, client)
            inbox = await exits.enter_async_context(client.inbox(explicit_ack=False))
            readers.append(asyncio.create_task(out[who].read(inbox)))
        try:
            yield out
        finally:
            for reader in readers:
                reader.cancel()


def applied_by(settings: Settings, message_ids: set[str]) -> dict[str, str]:
    """Which gateway's log says it accepted each of ``message_ids``."""
    out = {}
    for name in GATEWAYS:
        for line in (settings.logs_dir / f"{name}.log").read_text().splitlines():
            if '"message accepted"' in line:
                mid = json.loads(line).get("message_id")
                if mid in message_ids:
                    out[mid] = name
    return out


def active_lanes(settings: Settings) -> set[str]:
    """The senders' lanes that have an active consumer."""
    return {q for q in faults.active_consumers(settings) if q.startswith(c.QUEUE_INBOUND + ".")}


async def lifecycle(parties: dict[str, Party], requester: str, requested: str) -> list[str]:
    """A request, then its receipt and execution report back to back (the race of one
    request's messages through two gateways); the message ids in the order sent."""
    rid = new_request_id(requester)
    asking, asked = parties[requester], parties[requested]
    sent = [message("request", request_id=rid, sender=requester, recipient=requested)]
    await asking.client.publish(sent[0])
    await asked.notice(rid, "request_delivered")
    sent.append(message("receipt", request_id=rid, sender=requested, recipient=requester,
                        body={}))
    sent.append(message("execution_report", request_id=rid, sender=requested,
                        recipient=requester, body=REPORT))
    for m in sent[1:]:
        await asked.client.publish(m)
    await asking.notice(rid, "executed")
    return [rid, *(m.message_id for m in sent)]


async def test_interleaved_requests_through_two_gateways_are_applied_in_send_order(
    replicas: Settings, parties: dict[str, Party],
) -> None:
    for requester, requested in PAIRS:  # the two parties' lanes on different gateways
        assert slot_of(c.inbound_queue(requester), 2) != slot_of(c.inbound_queue(requested), 2)
    runs = await asyncio.gather(*(lifecycle(parties, *pair) for pair in PAIRS
                                  for _ in range(PER_PAIR)))
    for party in parties.values():
        assert party.errors() == [], [e.body.problem for e in party.errors()]
    client = await connect(replicas)
    for rid, *ids in runs:
        state = await status(client, rid)
        assert state.status == "executed"
        assert [e.event for e in state.timeline] == ["request_sent", "receipt",
                                                     "execution_report"]
        assert state.applied == ids
    by = applied_by(replicas, {mid for _, *ids in runs for mid in ids})
    assert set(by.values()) == set(GATEWAYS), "both gateways applied messages"
    async with await Record.open(replicas.record_database_url, load_keys(replicas)) as record:
        for rid, *ids in runs:  # the record in the order applied, whoever applied them
            wanted = [entry_id("sco-2010", rid, mid) for mid in ids]
            kept = [e.entry_id for e in await record.entries(rid) if e.entry_id in wanted]
            assert kept == wanted


async def test_a_killed_gateways_lanes_and_lead_are_taken_over_then_handed_back(
    replicas: Settings, parties: dict[str, Party],
) -> None:
    requester, requested = PAIRS[0]
    lanes = active_lanes(replicas)
    assert lanes == {c.inbound_queue(a) for a in all_authorities()}
    first = await lifecycle(parties, requester, requested)
    leader = "gateway"  # started first: it took the lease
    assert '"gateway leads' in (replicas.logs_dir / f"{leader}.log").read_text()
    killed_at = time.monotonic()
    assert faults.kill(replicas, leader) is not None
    await eventually(lambda: active_lanes(replicas) == lanes or None, timeout=TAKEOVER_S,
                     interval=0.2, what="every lane with an active consumer again")
    took = time.monotonic() - killed_at
    # Both parties' messages applied meanwhile, by the gateway left.
    during = await lifecycle(parties, requester, requested)
    assert set(applied_by(replicas, set(during[1:])).values()) == {"gateway-2"}
    await eventually(lambda: '"gateway leads' in (replicas.logs_dir / "gateway-2.log")
                     .read_text() or None, timeout=TAKEOVER_S, interval=0.2,
                     what="the gateway left taking the lead")
    async with await Record.open(replicas.record_database_url, load_keys(replicas)) as record:
        size = (await record.tree()).size
        await eventually(lambda: _receipts_at(record, size), timeout=TAKEOVER_S + 10,
                         what="receipts sent by the new lead")
    await asyncio.to_thread(stack.up, replicas)  # back, standing by on its slot's lanes
    handed = '"lane handed over to its own gateway"'
    await eventually(lambda: handed in (replicas.logs_dir / "gateway-2.log").read_text()
                     or None, timeout=c.STANDBY_DELAY_S + 30, interval=0.5,
                     what="gateway-2 handing the restarted gateway's lanes back")
    await asyncio.sleep(1)
    after = await lifecycle(parties, requester, requested)
    # The requested party's lane is slot 0's: applied by the restarted gateway again.
    assert applied_by(replicas, set(after[2:]))[after[2]] == leader
    client = await connect(replicas)
    for rid, *ids in (first, during, after):
        assert (await status(client, rid)).applied == ids
    assert took < TAKEOVER_S


async def _receipts_at(record: Record, size: int) -> bool | None:
    return (await record.receipts_sent()) >= size or None

"""What an authority addresses to the hub itself (workers/desk.py) and the checkpoints the
hub sends every inbox (workers/announce.py Herald), on a real record (SQLite) with the
broker stubbed: a consistency request is answered with a proof that verifies or refused
out of range, a retrieval is recorded once and refused for a notice not delivered to its
sender, and a checkpoint is sent only when the log changed, with its proof from the last
one sent."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
import pytest_asyncio
from pydantic import ValidationError

from tests.conftest import RECORD_KEYS, TEST_KEYS, record_entry
from treatyflow import constants as c
from treatyflow.agency.checkpoints import read_checkpoint
from treatyflow.agency.entries import DELIVERED, NewEntry, entry_id, record_time
from treatyflow.agency.merkle import verify_consistency
from treatyflow.agency.signing import Verified, sign, verify
from treatyflow.agency.witness import Outcome, Witness
from treatyflow.hub import Refusal
from treatyflow.record import Record
from treatyflow.record.writers import Recorder
from treatyflow.schemas.record import (
    ConsistencyBody,
    ConsistencyRequestBody,
    ConsistencyRequestMessage,
    RecordCheckpointMessage,
    RetrievalBody,
    RetrievalMessage,
    RetrievedNotice,
    parse_record,
)
from treatyflow.workers import desk as desk_module
from treatyflow.workers.announce import Herald
from treatyflow.workers.desk import Desk, addressed

HUB = TEST_KEYS.private[c.HUB_SENDER]
KZ, RU = "KZ-GPO", "RU-MIA"
NOTICE_ID = "notice-0001-abcdef"


class Outbox:
    """The gateway's outbox, keeping what it was asked to publish; ``fail`` makes it raise."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, aio_pika.Message, str]] = []
        self.fail = False

    async def publish(self, exchange: str, message: aio_pika.Message, routing_key: str,
                      timeout: float = 10.0) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.sent.append((exchange, message, routing_key))


@pytest_asyncio.fixture
async def record(tmp_path: Path) -> AsyncIterator[Record]:
    async with await Record.open(f"sqlite+aiosqlite:///{tmp_path / 'record.sqlite3'}",
                                 RECORD_KEYS) as opened:
        yield opened


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def desk(record: Record, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> Desk:
    monkeypatch.setattr(desk_module, "NOTICE_WAITS", (0.01,))
    return Desk(record, Recorder(record), outbox, lambda: HUB)  # type: ignore[arg-type]


def signed(message: ConsistencyRequestMessage | RetrievalMessage) -> Verified:
    return verify(sign(message, TEST_KEYS.private[message.sender]), TEST_KEYS.ring,
                  signer=message.sender)


def ask(first: int, to: int | None = None, sender: str = KZ) -> ConsistencyRequestMessage:
    return ConsistencyRequestMessage(
        kind="consistency_request", message_id=f"cr-{uuid.uuid4()}", sender=sender,
        recipient="HUB", sent_at=datetime.now(UTC),
        body=ConsistencyRequestBody(from_tree_size=first, to_tree_size=to))


def retrieval(sender: str, *notice_ids: str, request_id: str = "R-1") -> RetrievalMessage:
    return RetrievalMessage(
        kind="retrieval", message_id=f"rt-{uuid.uuid4()}", sender=sender, recipient="HUB",
        sent_at=datetime.now(UTC), body=RetrievalBody(notices=[RetrievedNotice(
            notice_message_id=notice_id, request_id=request_id, treaty_id="sco-2010",
            digest="0" * 64) for notice_id in notice_ids or (NOTICE_ID,)]))


async def delivered(record: Record, request_id: str, notice_id: str, to: str = RU) -> None:
    """A notice of ``request_id`` delivered to ``to``, as the worker records it."""
    await record.append([NewEntry(
        entry_id=entry_id("sco-2010", request_id, notice_id), request_id=request_id,
        procedure="assistance", treaty="sco-2010", actor=to, kind=DELIVERED,
        time=record_time(datetime.now(UTC)),
        jws=sign(json.dumps({"kind": "notice", "id": notice_id}).encode(), HUB))])


def test_only_the_hub_addressed_kinds_go_to_the_desk() -> None:
    assert addressed(ask(0).model_dump_json().encode())
    assert addressed(retrieval(RU).model_dump_json().encode())
    mention = json.dumps({"kind": "request", "body": {"facts": 'the "retrieval" of files'}})
    assert not addressed(mention.encode())
    assert not addressed(b'{"kind": "retrieval"')  # not JSON: the envelope parser says so


async def test_a_consistency_request_is_answered_in_the_senders_inbox(
    desk: Desk, record: Record, outbox: Outbox
) -> None:
    await record.append([record_entry("R-1", n) for n in range(3)])
    await record.checkpoint(HUB)
    await record.append([record_entry("R-1", n) for n in range(3, 11)])
    newest = await record.checkpoint(HUB)
    question = ask(3)
    await desk.answer(question, signed(question))
    ((exchange, sent, routing_key),) = outbox.sent
    assert (exchange, routing_key, sent.type) == (c.EXCHANGE_DELIVER, KZ, "consistency_proof")
    answer = parse_record(verify(sent.body, TEST_KEYS.ring, signer=c.HUB_SENDER).payload)
    assert answer.kind == "consistency_proof" and answer.in_reply_to == question.message_id
    assert answer.body.checkpoint == newest.jws and answer.body.from_tree_size == 3
    checkpoint = read_checkpoint(answer.body.checkpoint, TEST_KEYS.ring)
    verify_consistency(3, 11, [bytes.fromhex(h) for h in answer.body.consistency_proof],
                       (await record.tree(3)).root(), checkpoint.root)
    # ...and a witness holding the checkpoint of 3 takes it
    witness = Witness()
    first = (await record.checkpoints())[0]
    assert witness.take(_as_checkpoint_message(first.jws), TEST_KEYS.ring) is Outcome.ACCEPTED
    assert witness.take(sent.body, TEST_KEYS.ring) is Outcome.ACCEPTED
    assert witness.held is not None and witness.held.checkpoint.tree_size == 11


def _as_checkpoint_message(jws: str) -> bytes:
    return sign(RecordCheckpointMessage(
        kind="record_checkpoint", message_id="checkpoint-x", sender="HUB",
        sent_at=datetime.now(UTC),
        body=ConsistencyBody(checkpoint=jws, from_tree_size=0, consistency_proof=[])),
        HUB).encode()


async def test_sizes_out_of_range_are_refused(desk: Desk, record: Record, outbox: Outbox) -> None:
    none_yet = ask(0)
    with pytest.raises(Refusal) as refused:
        await desk.answer(none_yet, signed(none_yet))
    assert refused.value.problem == "out_of_range" and "no checkpoint" in refused.value.reasons[0]
    await record.append([record_entry("R-1", n) for n in range(4)])
    await record.checkpoint(HUB)
    for bad, words in ((ask(5), "past the 4 entries"), (ask(0, 9), "no checkpoint of 9")):
        with pytest.raises(Refusal) as refused:
            await desk.answer(bad, signed(bad))
        assert refused.value.problem == "out_of_range" and words in refused.value.reasons[0]
    assert outbox.sent == []


async def test_proofs_stay_right_as_the_log_grows_without_rebuilding_it(
    desk: Desk, record: Record, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The desk keeps the log's tree and extends it: a proof asked after the log grew is
    the one a rebuild gives, and no question makes the desk read the whole log again."""
    await record.append([record_entry("R-1", n) for n in range(5)])
    await record.checkpoint(HUB)
    first = ask(2)
    await desk.answer(first, signed(first))

    async def no_rebuild(size: int | None = None) -> object:
        raise AssertionError("the desk rebuilt the whole tree")

    rebuilt_tree = record.tree
    monkeypatch.setattr(record, "tree", no_rebuild)
    await record.append([record_entry("R-1", n) for n in range(5, 13)])
    newest = await record.checkpoint(HUB, await rebuilt_tree())
    for start in (2, 5, 7):
        question = ask(start)
        await desk.answer(question, signed(question))
        answer = parse_record(verify(outbox.sent[-1][1].body, TEST_KEYS.ring,
                                     signer=c.HUB_SENDER).payload)
        assert answer.body.checkpoint == newest.jws
        assert [bytes.fromhex(h) for h in answer.body.consistency_proof] == \
            (await rebuilt_tree()).consistency_proof(start, 13)


def test_a_tree_size_past_any_log_is_malformed_not_a_crash() -> None:
    """2**63 and more overflow a database integer: refused by the contract's bound."""
    payload = ask(0).model_dump(mode="json")
    payload["body"]["from_tree_size"] = 10**30
    with pytest.raises(ValidationError, match="from_tree_size"):
        Desk.parse(json.dumps(payload).encode())


async def test_a_retrieval_is_recorded_once_and_only_by_the_notices_recipient(
    desk: Desk, record: Record
) -> None:
    notice_jws = sign(json.dumps({"kind": "notice", "n": 1}).encode(), HUB)
    await record.append([record_entry("R-1", 0), NewEntry(
        entry_id=entry_id("sco-2010", "R-1", NOTICE_ID), request_id="R-1",
        procedure="assistance", treaty="sco-2010", actor=RU, kind=DELIVERED,
        time=record_time(datetime.now(UTC)), jws=notice_jws)])
    for _ in range(2):  # a client that sent it again after a restart: one entry
        again = retrieval(RU)
        await desk.answer(again, signed(again))
    kinds = [(e.kind, e.actor) for e in await record.entries("R-1")]
    assert kinds == [("request", KZ), ("delivered", RU), ("retrieved", RU)]
    for stranger in (retrieval(KZ), retrieval(RU, "notice-never-sent")):
        with pytest.raises(Refusal) as refused:
            await desk.answer(stranger, signed(stranger))
        assert refused.value.problem == "unknown_notice"
        assert f"delivered to you ({stranger.sender})" in refused.value.reasons[0]
    assert len(await record.entries("R-1")) == 3


async def test_a_retrieval_of_several_notices_records_each_in_its_own_request(
    desk: Desk, record: Record
) -> None:
    await delivered(record, "R-1", "notice-n1")
    await delivered(record, "R-2", "notice-n2")
    await delivered(record, "R-2", "notice-n3", to=KZ)  # someone else's
    both = retrieval(RU, "notice-n1")
    both.body.notices.append(RetrievedNotice(notice_message_id="notice-n2", request_id="R-2",
                                             treaty_id="sco-2010", digest="0" * 64))
    await desk.answer(both, signed(both))
    for rid in ("R-1", "R-2"):
        retrieved = [e for e in await record.entries(rid) if e.kind == "retrieved"]
        assert [e.actor for e in retrieved] == [RU]
        assert retrieved[0].jws == signed(both).token  # the retrieval as RU signed it
    # Two bad items among good ones: each named by its place, the good one recorded.
    mixed = retrieval(RU, "never-sent", "notice-n3", request_id="R-2")
    mixed.body.notices.insert(1, RetrievedNotice(notice_message_id="notice-n1", request_id="R-1",
                                                 treaty_id="sco-2010", digest="0" * 64))
    with pytest.raises(Refusal) as refused:
        await desk.answer(mixed, signed(mixed))
    assert refused.value.problem == "unknown_notice"
    assert [r.split(":")[0] for r in refused.value.reasons[:2]] == [
        "body.notices[0]", "body.notices[2]"]
    assert "notice-n3" in refused.value.reasons[1] and "recorded" in refused.value.reasons[2]
    # notice-n1 listed again (in another retrieval): still one entry each
    assert [len([e for e in await record.entries(r) if e.kind == "retrieved"])
            for r in ("R-1", "R-2")] == [1, 1]


def test_a_retrieval_lists_at_least_one_notice_and_at_most_the_limit() -> None:
    from treatyflow.schemas.limits import RETRIEVALS_PER_MESSAGE_MAX

    payload = retrieval(RU).model_dump(mode="json")
    for n in (0, RETRIEVALS_PER_MESSAGE_MAX + 1):
        payload["body"]["notices"] = payload["body"]["notices"][:1] * n
        with pytest.raises(ValidationError, match="notices"):
            Desk.parse(json.dumps(payload).encode())


async def test_a_checkpoint_is_sent_when_the_log_changed_with_its_proof_from_the_last_sent(
    record: Record, outbox: Outbox
) -> None:
    herald = Herald(record, lambda: HUB, outbox)  # type: ignore[arg-type]
    witness = Witness()
    await herald()  # an empty log: nothing to witness
    assert outbox.sent == []
    await record.append([record_entry("R-1", n) for n in range(3)])
    await herald()
    await herald()  # nothing new: signed, not sent
    assert len(outbox.sent) == 1 and len(await record.checkpoints()) == 3
    await record.append([record_entry("R-1", n) for n in range(3, 9)])
    outbox.fail = True
    await herald()  # the broker away: signed, and sent with the next one
    assert len(outbox.sent) == 1 and len(await record.checkpoints()) == 4
    outbox.fail = False
    await record.append([record_entry("R-1", 9)])
    await herald()
    routed = [(exchange, key, sent.type) for exchange, sent, key in outbox.sent]
    assert routed == [(c.EXCHANGE_DELIVER, c.CHECKPOINT_ROUTING_KEY, "record_checkpoint")] * 2
    bodies = [parse_record(verify(sent.body, TEST_KEYS.ring, signer=c.HUB_SENDER).payload)
              for _, sent, _ in outbox.sent]
    assert [b.body.from_tree_size for b in bodies] == [0, 3]
    assert [witness.take(sent.body, TEST_KEYS.ring) for _, sent, _ in outbox.sent] == [
        Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert bodies[1].message_id == "checkpoint-" + hashlib.sha256(
        bodies[1].body.checkpoint.encode()).hexdigest()[:32]
    # A restarted gateway goes on from the newest checkpoint the record keeps.
    again = Herald(record, lambda: HUB, outbox)  # type: ignore[arg-type]
    await record.append([record_entry("R-1", 10)])
    await again()
    last = parse_record(verify(outbox.sent[-1][1].body, TEST_KEYS.ring,
                               signer=c.HUB_SENDER).payload)
    assert last.body.from_tree_size == 10
    assert witness.take(outbox.sent[-1][1].body, TEST_KEYS.ring) is Outcome.ACCEPTED

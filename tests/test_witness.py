"""The agency's witness of the hub's record: a consistent chain of checkpoints is taken
one after another; a fork, a shrunk log, a bad signature or a wrong proof is reported and
the checkpoint held stays (treatyflow/agency/witness.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from tests.conftest import TEST_KEYS
from treatyflow import constants as c
from treatyflow.agency import AgencyClient, Unverified
from treatyflow.agency.checkpoints import SignedCheckpoint, sign_checkpoint
from treatyflow.agency.entries import digest_of
from treatyflow.agency.merkle import MerkleTree
from treatyflow.agency.signing import SigningKey, sign
from treatyflow.agency.witness import Outcome, Witness, WitnessError
from treatyflow.schemas.messages import NoticeMessage
from treatyflow.schemas.record import (
    ConsistencyBody,
    ConsistencyRequestMessage,
    RecordCheckpointMessage,
    RetrievalMessage,
)

HUB = TEST_KEYS.private[c.HUB_SENDER]
KEYS = TEST_KEYS.ring
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def tree_of(n: int, *, changed: int | None = None) -> MerkleTree:
    """A log of ``n`` leaves; ``changed``: that leaf rewritten."""
    return MerkleTree.of_leaves([f"entry {i}{' rewritten' if i == changed else ''}".encode()
                                 for i in range(n)])


def checkpoint(tree: MerkleTree, size: int, minute: int,
               key: SigningKey = HUB) -> SignedCheckpoint:
    return sign_checkpoint(size, tree.root(size), key, T0 + timedelta(minutes=minute))


def delivery(signed: SignedCheckpoint, first: int, proof: list[bytes],
             key: SigningKey = HUB) -> bytes:
    """A record_checkpoint message as the hub sends every inbox."""
    message = RecordCheckpointMessage(
        kind="record_checkpoint", message_id=f"checkpoint-{signed.checkpoint.tree_size:08d}",
        sender="HUB", sent_at=T0,
        body=ConsistencyBody(checkpoint=signed.jws, from_tree_size=first,
                             consistency_proof=[h.hex() for h in proof]))
    return sign(message, key).encode()


def step(witness: Witness, tree: MerkleTree, first: int, size: int, minute: int) -> Outcome:
    return witness.take(delivery(checkpoint(tree, size, minute), first,
                                 tree.consistency_proof(first, size)), KEYS)


@pytest.fixture
def holding() -> Witness:
    """A witness holding the checkpoint of a log of 5 entries."""
    witness = Witness(party="KZ-GPO")
    assert step(witness, tree_of(5), 0, 5, 0) is Outcome.ACCEPTED
    return witness


def test_a_consistent_chain_is_taken_checkpoint_after_checkpoint(holding: Witness) -> None:
    log = tree_of(40)
    for minute, (first, size) in enumerate([(5, 6), (6, 13), (13, 13), (13, 32), (32, 40)],
                                           start=1):
        assert step(holding, log, first, size, minute) in (Outcome.ACCEPTED, Outcome.SAME)
        assert holding.held is not None and holding.held.checkpoint.tree_size == size
    assert holding.fork is None and holding.rejected is None
    assert holding.held.checkpoint.root_hash == log.root(40).hex()


def test_a_rewritten_entry_is_a_fork_and_the_held_checkpoint_stays(holding: Witness) -> None:
    held = holding.held
    rewritten = tree_of(9, changed=2)  # entry 2 changed after the held checkpoint of 5
    assert step(holding, rewritten, 5, 9, 1) is Outcome.FORK
    assert holding.held == held
    fork = holding.fork
    assert fork is not None and "rewritten before that size" in fork.reason
    assert fork.held == held.jws and fork.from_tree_size == 5
    assert fork.offered != held.jws and fork.consistency_proof  # the evidence, signed
    # the same size with another root: a fork too; and the first evidence is kept
    assert step(holding, tree_of(5, changed=0), 5, 5, 2) is Outcome.FORK
    assert holding.fork == fork and holding.held == held


def test_a_shrunk_log_is_a_fork_but_an_older_checkpoint_is_only_late(holding: Witness) -> None:
    log = tree_of(5)
    assert step(holding, log, 0, 3, -1) is Outcome.STALE  # signed before the one held
    assert holding.fork is None
    assert step(holding, log, 0, 3, 5) is Outcome.FORK  # signed after it: entries removed
    assert holding.fork is not None and "shrank" in holding.fork.reason
    assert holding.held is not None and holding.held.checkpoint.tree_size == 5


def test_a_bad_signature_is_refused_and_the_held_checkpoint_stays(holding: Witness) -> None:
    held = holding.held
    log = tree_of(9)
    stranger = SigningKey(HUB.key_id, Ed25519PrivateKey.generate())  # the hub's kid, not its key
    forged = checkpoint(log, 9, 1, key=stranger)
    assert holding.take(delivery(forged, 5, log.consistency_proof(5, 9)), KEYS) is (
        Outcome.REJECTED)
    assert holding.take(delivery(checkpoint(log, 9, 1), 5, log.consistency_proof(5, 9),
                                 key=TEST_KEYS.private["KZ-GPO"]), KEYS) is Outcome.REJECTED
    assert holding.held == held and holding.fork is None
    assert holding.rejected is not None and "signed by the hub" in holding.rejected


def test_a_wrong_proof_is_a_fork(holding: Witness) -> None:
    held = holding.held
    log = tree_of(9)
    proof = log.consistency_proof(5, 9)
    proof[-1] = bytes(32)
    assert holding.take(delivery(checkpoint(log, 9, 1), 5, proof), KEYS) is Outcome.FORK
    assert holding.held == held
    assert holding.fork is not None and "no consistency" in holding.fork.reason


def test_a_proof_from_another_size_makes_it_ask_once(holding: Witness) -> None:
    log = tree_of(12)
    assert step(holding, log, 9, 12, 1) is Outcome.ASK  # the hub's last one was 9, not 5
    assert holding.wanted is not None
    assert (holding.wanted.from_tree_size, holding.wanted.to_tree_size) == (5, 12)
    assert step(holding, log, 9, 12, 1) is Outcome.WAITING
    assert holding.held is not None and holding.held.checkpoint.tree_size == 5
    assert step(holding, log, 5, 12, 1) is Outcome.ACCEPTED  # the proof asked for
    assert holding.wanted is None


def test_a_receipts_checkpoint_is_held_first_and_checked_for_a_second_root() -> None:
    """A receipt's checkpoint (no proof with it): held when nothing is, a fork when it
    gives the held size another root, left alone when larger or smaller."""
    witness = Witness()
    log, rewritten = tree_of(12), tree_of(12, changed=3)
    assert witness.seen(checkpoint(log, 5, 0), KEYS) is Outcome.ACCEPTED
    assert witness.seen(checkpoint(log, 9, 1), KEYS) is Outcome.STALE  # no proof: not held
    assert witness.held is not None and witness.held.checkpoint.tree_size == 5
    assert witness.seen(checkpoint(log, 5, 2), KEYS) is Outcome.SAME
    assert witness.fork is None
    assert witness.seen(checkpoint(rewritten, 5, 3), KEYS) is Outcome.FORK
    assert witness.fork is not None and witness.held.checkpoint.root == log.root(5)
    behind = Witness()  # a receipts' backlog: signed later, of fewer entries
    behind.seen(checkpoint(log, 9, 0), KEYS)
    assert behind.seen(checkpoint(log, 4, 1), KEYS) is Outcome.STALE
    assert behind.fork is None


def test_the_held_checkpoint_is_kept_in_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "witness.json"
    first = Witness(path)
    assert step(first, tree_of(5), 0, 5, 0) is Outcome.ACCEPTED
    assert path.stat().st_mode & 0o777 == 0o600
    again = Witness(path)
    again.load(KEYS)
    assert again.held == first.held
    assert step(again, tree_of(7, changed=1), 5, 7, 1) is Outcome.FORK
    fork_file = tmp_path / "witness.json.fork.json"
    assert fork_file.stat().st_mode & 0o777 == 0o600
    reloaded = Witness(path)
    reloaded.load(KEYS)
    assert reloaded.fork == again.fork and reloaded.held == first.held
    # a file that is not the hub's checkpoint is refused loudly, not trusted
    path.write_text(json.dumps({"checkpoint": checkpoint(tree_of(5), 5, 0, key=TEST_KEYS.private[
        "KZ-GPO"]).jws}))
    os.chmod(path, 0o600)
    with pytest.raises(WitnessError, match="not a checkpoint the hub signed"):
        Witness(path).load(KEYS)


def test_the_node_agency_witness_checks_the_same_chain_and_reports_the_fork(
        tmp_path: Path) -> None:
    """tests/node_agency/witness.mjs, written from docs/reference/evidence.md: the same
    deliveries, the same outcomes as the Python witness."""
    node = shutil.which("node")
    agency = Path(__file__).resolve().parent / "node_agency"
    if node is None or not (agency / "node_modules" / "jose").is_dir():
        pytest.fail("node or tests/node_agency/node_modules missing: run `make setup`")
    log, rewritten = tree_of(40), tree_of(40, changed=3)
    wrong = log.consistency_proof(13, 32)
    wrong[0] = bytes(32)
    chain = [
        delivery(checkpoint(log, 5, 0), 0, []),
        delivery(checkpoint(log, 13, 1), 5, log.consistency_proof(5, 13)),
        delivery(checkpoint(log, 13, 2), 13, []),
        delivery(checkpoint(log, 32, 3), 20, log.consistency_proof(20, 32)),  # another size
        delivery(checkpoint(log, 32, 3), 13, wrong),
        delivery(checkpoint(rewritten, 40, 4), 13, rewritten.consistency_proof(13, 40)),
        delivery(checkpoint(log, 8, 5), 0, []),
        delivery(checkpoint(log, 40, 6, key=TEST_KEYS.private["KZ-GPO"]), 13,
                 log.consistency_proof(13, 40)),
        delivery(checkpoint(log, 40, 7), 13, log.consistency_proof(13, 40)),
    ]
    python = Witness()
    expected = [str(python.take(body, KEYS)) for body in chain]
    assert expected == ["accepted", "accepted", "same", "ask", "fork", "fork", "fork",
                        "rejected", "accepted"]
    (tmp_path / "deliveries.json").write_text(json.dumps(
        [{"type": "record_checkpoint", "body": body.decode()} for body in chain]))
    (tmp_path / "directory.json").write_text(TEST_KEYS.text)
    done = subprocess.run([node, str(agency / "witness.mjs"), str(tmp_path / "deliveries.json"),
                           str(tmp_path / "directory.json")], cwd=agency, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [line["outcome"] for line in lines] == expected
    assert [line["held"] for line in lines] == [5, 13, 13, 13, 13, 13, 13, 13, 40]


class Published(list[BaseModel]):
    async def __call__(self, envelope: BaseModel) -> None:
        self.append(envelope)


def client_publishing(**options: object) -> tuple[AgencyClient, Published]:
    client = AgencyClient("KZ-GPO", "amqp://unused", signing_key=TEST_KEYS.private["KZ-GPO"],
                          keys=KEYS, **options)  # type: ignore[arg-type]
    published = Published()
    client._publish_quietly = published  # type: ignore[method-assign]
    return client, published


async def test_the_client_asks_for_the_proof_its_witness_needs() -> None:
    client, published = client_publishing()
    log = tree_of(12)
    assert await client._take_checkpoint(delivery(checkpoint(log, 5, 0), 0, []), KEYS) is (
        Outcome.ACCEPTED)
    assert await client._take_checkpoint(
        delivery(checkpoint(log, 12, 1), 9, log.consistency_proof(9, 12)), KEYS) is Outcome.ASK
    (ask,) = published
    assert isinstance(ask, ConsistencyRequestMessage) and ask.sender == "KZ-GPO"
    assert (ask.body.from_tree_size, ask.body.to_tree_size) == (5, 12)


class Incoming:
    """A delivery of the inbox, and when it was acked (after how many publishes)."""

    def __init__(self, body: bytes, published: Published) -> None:
        self.body = body
        self._published = published
        self.acked_after: int | None = None

    async def ack(self) -> None:
        self.acked_after = len(self._published)


def notices(n: int) -> list[tuple[NoticeMessage, bytes]]:
    out = []
    for i in range(n):
        notice = NoticeMessage.model_validate({**message_json("notice"),
                                               "message_id": f"notice-{i:04d}-abcdef"})
        out.append((notice, sign(notice, HUB).encode()))
    return out


async def test_handled_notices_are_acknowledged_in_one_retrieval_then_acked() -> None:
    client, published = client_publishing(retrieval_seconds=0.05)
    handled = [(notice, Incoming(body, published)) for notice, body in notices(3)]
    assert all(client._retrieved(n, i) for n, i in handled)  # type: ignore[arg-type]
    assert not client._retrieved(Unverified("malformed", "not the hub's", b"x"),
                                 Incoming(b"x", published))  # type: ignore[arg-type]
    assert published == [] and {i.acked_after for _, i in handled} == {None}  # held
    await asyncio.sleep(0.2)
    (retrieval,) = published  # one for the three, after the short wait
    assert isinstance(retrieval, RetrievalMessage) and retrieval.sender == "KZ-GPO"
    assert [n.notice_message_id for n in retrieval.body.notices] == [
        n.message_id for n, _ in handled]
    assert [n.digest for n in retrieval.body.notices] == [
        digest_of(i.body.decode()) for _, i in handled]
    assert [i.acked_after for _, i in handled] == [1, 1, 1]  # acked once it was confirmed


async def test_a_full_retrieval_goes_at_once_and_close_sends_what_is_held() -> None:
    client, published = client_publishing(retrieval_seconds=60)
    client._retrievals.most = 2
    handled = [(notice, Incoming(body, published)) for notice, body in notices(3)]
    for notice, incoming in handled:
        client._retrieved(notice, incoming)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [len(r.body.notices) for r in published] == [2]  # type: ignore[attr-defined]
    await client.close()
    assert [len(r.body.notices) for r in published] == [2, 1]  # type: ignore[attr-defined]
    assert [i.acked_after for _, i in handled] == [1, 1, 2]


async def test_a_retrieval_not_confirmed_still_acks_and_is_sent_again_on_a_redelivery(
) -> None:
    client, published = client_publishing(retrieval_seconds=0.01)

    async def broker_away(envelope: BaseModel) -> None:
        raise ConnectionError("the broker went away")

    client._publish_quietly = broker_away  # type: ignore[method-assign]
    ((notice, body),) = notices(1)
    incoming = Incoming(body, published)
    client._retrieved(notice, incoming)  # type: ignore[arg-type]
    await client._retrievals.drain()
    assert incoming.acked_after == 0  # the notice was handled: not handed out again
    assert client._retrievals.failed == {notice.message_id}  # a redelivery lists it again


async def test_no_retrieval_when_turned_off() -> None:
    client, published = client_publishing(acknowledge_retrievals=False)
    ((notice, body),) = notices(1)
    assert not client._retrieved(notice, Incoming(body, published))  # type: ignore[arg-type]
    await client.close()
    assert published == []


def message_json(kind: str) -> dict[str, object]:
    return {"message_id": "notice-0001-abcdef", "kind": kind, "request_id": "KZ-GPO-2026-1",
            "treaty_id": "sco-2010", "sender": "HUB", "recipient": "KZ-GPO",
            "sent_at": T0.isoformat(), "body": {"event": "request_accepted", "status": "sent",
                                                "requesting": "KZ-GPO", "requested": "RU-MIA"}}

"""Example messages about the hub's record (``schemas/record.py``), fixed sizes and times:
a checkpoint of 7 entries sent with its proof from 4, the answer to a request for the
proof from 2, and a retrieval of the example notice (examples.notice)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from treatyflow.agency.checkpoints import sign_checkpoint
from treatyflow.agency.merkle import MerkleTree
from treatyflow.agency.signing import SigningKey
from treatyflow.contract.examples import KZ, RU, message_id
from treatyflow.schemas.record import (
    ConsistencyBody,
    ConsistencyProofMessage,
    ConsistencyRequestBody,
    ConsistencyRequestMessage,
    RecordCheckpointMessage,
    RetrievalBody,
    RetrievalMessage,
    RetrievedNotice,
)

# The example log's leaves: "entry 0" … "entry 6" (a real leaf is an entry's encoding).
LEAVES = [f"entry {n}".encode() for n in range(7)]
SIGNED_AT = datetime(2026, 11, 23, 4, 1, tzinfo=UTC)
SENT_AT = datetime(2026, 11, 23, 4, 1, 1, tzinfo=UTC)


def hub_messages(hub: SigningKey) -> list[BaseModel]:
    """What the hub sends a witness: the checkpoint of 7 (proof from 4) and a proof from 2."""
    tree = MerkleTree.of_leaves(LEAVES)
    signed = sign_checkpoint(7, tree.root(), hub, SIGNED_AT)
    checkpoint = RecordCheckpointMessage(
        kind="record_checkpoint", message_id=message_id("record_checkpoint"), sender="HUB",
        sent_at=SENT_AT, body=ConsistencyBody(
            checkpoint=signed.jws, from_tree_size=4,
            consistency_proof=[h.hex() for h in tree.consistency_proof(4)]))
    proof = ConsistencyProofMessage(
        kind="consistency_proof", message_id=message_id("consistency_proof"), sender="HUB",
        recipient=KZ, in_reply_to=message_id("consistency_request"), sent_at=SENT_AT,
        body=ConsistencyBody(checkpoint=signed.jws, from_tree_size=2,
                             consistency_proof=[h.hex() for h in tree.consistency_proof(2)]))
    return [checkpoint, proof]


def party_messages(notice_digest: str) -> list[BaseModel]:
    """What a party's client sends the hub about the record: it asks for the proof from
    the size it holds (2) to 7, and acknowledges the example notice."""
    ask = ConsistencyRequestMessage(
        kind="consistency_request", message_id=message_id("consistency_request"), sender=KZ,
        recipient="HUB", sent_at=SENT_AT,
        body=ConsistencyRequestBody(from_tree_size=2, to_tree_size=7))
    retrieval = RetrievalMessage(
        kind="retrieval", message_id=message_id("retrieval"), sender=RU, recipient="HUB",
        sent_at=SENT_AT, body=RetrievalBody(notices=[RetrievedNotice(
            notice_message_id=message_id("notice"), request_id="KZ-GPO-2026-0042",
            treaty_id="sco-2010", digest=notice_digest)]))
    return [ask, retrieval]

"""The messages about the hub's record that pass between the hub and the parties' clients.

The hub sends every inbox each new checkpoint of its record (``record_checkpoint``) with
the RFC 9162 consistency proof from the checkpoint it sent before, and answers a party's
``consistency_request`` with a ``consistency_proof``: both carry a ``ConsistencyBody``,
which a witness checks alike (``treatyflow.agency.witness``). A party's client tells the
hub what it retrieved (``retrieval``, several notices at a time). ``consistency_request``
and ``retrieval`` are addressed to the hub itself (recipient ``HUB``, no request's
workflow): ``HUB_KINDS``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, TypeAdapter

from treatyflow.schemas.envelope import (
    WIRE,
    AuthorityId,
    MessageId,
    RequestId,
    Strict,
)
from treatyflow.schemas.limits import RETRIEVALS_PER_MESSAGE_MAX

Hash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
CompactJws = Annotated[str, StringConstraints(
    pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$", max_length=8192)]
TreatyId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{3,40}$")]
# A consistency proof holds at most one hash per level of the tree, and a level more.
MAX_PROOF = 64
MAX_TREE_SIZE = 2**62  # far past any log; bounds what a sender may name (a database integer)


class HubAddressed(Strict):
    """What a message to or from the hub about its record carries, whatever its kind: no
    request id, it is about no request."""

    schema_version: Literal["2"] = Field(
        "2", description="The envelope's version: 2, signed as sent (a JWS over these bytes).")
    message_id: MessageId
    sent_at: AwareDatetime


class ConsistencyBody(Strict):
    """A signed checkpoint of the record and the proof that it extends an earlier size."""

    checkpoint: CompactJws = Field(
        description="The checkpoint as the hub signed it: a JWS compact serialization whose "
        "payload is {log, tree_size, root_hash, time} (docs/reference/evidence.md).")
    from_tree_size: int = Field(
        ge=0, le=MAX_TREE_SIZE, description="The tree size the proof starts from: the "
        "previous checkpoint the hub sent (record_checkpoint), or the size asked for "
        "(consistency_proof); 0 when there is none.")
    consistency_proof: Annotated[list[Hash], Field(max_length=MAX_PROOF)] = Field(
        description="RFC 9162 §2.1.4 PROOF(from_tree_size, D[0:tree_size]), hex, in order; "
        "empty when from_tree_size is 0 or the checkpoint's own size.")


class RecordCheckpointMessage(HubAddressed):
    """Hub → every inbox: a new checkpoint of the hub's record, for the parties' witnesses."""

    kind: Literal["record_checkpoint"]
    sender: Literal["HUB"]
    body: ConsistencyBody


class ConsistencyProofMessage(HubAddressed):
    """Hub → authority: the consistency proof a consistency_request asked for."""

    kind: Literal["consistency_proof"]
    sender: Literal["HUB"]
    recipient: AuthorityId
    in_reply_to: MessageId = Field(description="The consistency_request answered.")
    body: ConsistencyBody


class ConsistencyRequestBody(Strict):
    """Which proof a witness asks for."""

    from_tree_size: int = Field(ge=0, le=MAX_TREE_SIZE, description="The tree size of "
                                "the checkpoint the witness holds.")
    to_tree_size: int | None = Field(
        None, ge=0, le=MAX_TREE_SIZE, description="The size of a checkpoint the hub signed "
        "(one the witness received); omitted: the hub's newest checkpoint.")


class ConsistencyRequestMessage(HubAddressed):
    """Authority → hub: asks for a consistency proof between the tree size its witness holds
    and a newer checkpoint; answered with a consistency_proof in the sender's inbox."""

    kind: Literal["consistency_request"]
    sender: AuthorityId
    recipient: Literal["HUB"]
    body: ConsistencyRequestBody


class RetrievedNotice(Strict):
    """One delivery the recipient's application handled."""

    notice_message_id: MessageId = Field(description="The message id of the notice.")
    request_id: RequestId = Field(description="The notice's request_id.")
    treaty_id: TreatyId = Field(description="The notice's treaty_id.")
    digest: Hash = Field(description="SHA-256 (hex) of the payload of the notice's JWS as "
                         "retrieved: what the record's delivered entry digests.")


class RetrievalBody(Strict):
    """The deliveries the recipient's application handled, as they came (the client sends
    one retrieval for several)."""

    notices: Annotated[list[RetrievedNotice], Field(
        min_length=1, max_length=RETRIEVALS_PER_MESSAGE_MAX)] = Field(
        description="Each notice acknowledged, once; every one is recorded as a retrieved "
        "entry of its own request.")


class RetrievalMessage(HubAddressed):
    """Authority → hub: the recipient's client acknowledges notices its application
    handled; the hub records each as a retrieved entry of the notice's request."""

    kind: Literal["retrieval"]
    sender: AuthorityId
    recipient: Literal["HUB"]
    body: RetrievalBody


ToHub = ConsistencyRequestMessage | RetrievalMessage
HubMessage = Annotated[ToHub, Field(discriminator="kind")]
"""Everything an authority may address to the hub itself (no request's workflow)."""
RecordMessage = Annotated[RecordCheckpointMessage | ConsistencyProofMessage,
                          Field(discriminator="kind")]
"""What the hub sends a party's witness."""

HUB_KINDS = frozenset({"consistency_request", "retrieval"})
RECORD_KINDS = frozenset({"record_checkpoint", "consistency_proof"})
HUB_MESSAGES: TypeAdapter[HubMessage] = TypeAdapter(HubMessage)
RECORD_MESSAGES: TypeAdapter[RecordMessage] = TypeAdapter(RecordMessage)


def parse_hub(raw: bytes | str) -> ToHub:
    """A message an authority addressed to the hub, strictly (as ``parse_inbound``)."""
    return HUB_MESSAGES.validate_json(raw, strict=True, context=WIRE)


def parse_record(raw: bytes | str) -> RecordCheckpointMessage | ConsistencyProofMessage:
    """A message of the hub to a witness; members this version does not know are ignored."""
    return RECORD_MESSAGES.validate_json(raw, strict=True, extra="ignore")

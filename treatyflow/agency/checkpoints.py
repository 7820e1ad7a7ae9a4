"""Checkpoints of the hub's record: (tree size, root hash, time) in a JWS the hub signs.

What a party keeps and checks (docs/reference/evidence.md); the hub signs them now and
then (``treatyflow.record.checkpoints.checkpoint_every``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from treatyflow.agency.entries import Digest, Time, record_time
from treatyflow.agency.signing import KeySource, SigningKey, sign, verify
from treatyflow.constants import HUB_SENDER

# Names the log a checkpoint is of (docs/reference/evidence.md).
LOG_ORIGIN: Literal["treatyflow-record"] = "treatyflow-record"


class Checkpoint(BaseModel):
    """The payload of a checkpoint's JWS: the log's size and root hash at a time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log: Literal["treatyflow-record"] = LOG_ORIGIN
    tree_size: int = Field(ge=0, description="How many entries the tree holds.")
    root_hash: Digest = Field(description="RFC 9162 MTH of the first tree_size leaves, hex.")
    time: Time = Field(description="When the hub signed it.")

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.root_hash)


class SignedCheckpoint(BaseModel):
    """A checkpoint and its JWS (compact, signed by a key of the hub)."""

    model_config = ConfigDict(frozen=True)

    checkpoint: Checkpoint
    jws: str


def sign_checkpoint(tree_size: int, root: bytes, key: SigningKey,
                    at: datetime | None = None) -> SignedCheckpoint:
    checkpoint = Checkpoint(tree_size=tree_size, root_hash=root.hex(),
                            time=record_time(at or datetime.now(UTC)))
    return SignedCheckpoint(checkpoint=checkpoint, jws=sign(checkpoint, key))


def read_checkpoint(jws: str, keys: KeySource) -> Checkpoint:
    """The checkpoint a JWS carries, if a key of the hub in ``keys`` signed it; raises
    ``SignatureError`` or pydantic's ``ValidationError`` otherwise."""
    checked = verify(jws, keys, signer=HUB_SENDER)
    return Checkpoint.model_validate_json(checked.payload)

"""Checkpoints of the record: (tree size, root hash, time) signed by the hub, now and then."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from treatyflow import logs
from treatyflow.agency.signing import KeySource, SigningKey, sign, verify
from treatyflow.constants import HUB_SENDER
from treatyflow.record.entries import Digest, Time, record_time

# Names the log a checkpoint is of (docs/reference/evidence.md).
LOG_ORIGIN: Literal["treatyflow-record"] = "treatyflow-record"

_log = logs.get("treatyflow.record")


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


async def checkpoint_every(make: Callable[[], Awaitable[SignedCheckpoint]],
                           interval: float) -> None:
    """Sign a checkpoint now and every ``interval`` seconds until cancelled (the gateway
    runs it as a task: ``checkpoint_every(lambda: record.checkpoint(hub_key()), 60)``).
    A failed checkpoint is logged and tried again at the next tick."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        try:
            made = await make()
        except Exception:  # noqa: BLE001 - the database away for a moment: next tick
            _log.exception("record_checkpoint_failed")
        else:
            _log.info("record_checkpoint", tree_size=made.checkpoint.tree_size,
                      root_hash=made.checkpoint.root_hash)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))

"""What the gateway sends every inbox of its own: the signed key directory (``Announcer``)
and each new checkpoint of the hub's record with its consistency proof (``Herald``), both
through the delivery exchange under a routing key every inbox is bound to
(treatyflow/topology.py). Each is a message whose id is fixed by what it carries, so one
sent again is dropped by the agencies as a duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel

from treatyflow import constants as c
from treatyflow import logs
from treatyflow.agency.checkpoints import Checkpoint, SignedCheckpoint
from treatyflow.agency.signing import KeyRing, SigningKey, sign
from treatyflow.agency.wire import to_amqp
from treatyflow.keys import RegistryFile, issued_at, signed_directory
from treatyflow.record import Record
from treatyflow.record.tree import LogTree
from treatyflow.schemas.record import ConsistencyBody, RecordCheckpointMessage
from treatyflow.workers.screen import Outbox, full

DIRECTORY_POLL_S = 2.0


class Announcer:
    """Sends the signed key directory to every inbox (RFC 7517 JWKS in a JWS) on each new
    broker connection and whenever the registry changes: a rotation or a revocation
    reaches every party within ``DIRECTORY_POLL_S``. A directory sent again is the same
    message (same id), which agencies drop."""

    def __init__(self, secrets_dir: Path, registry: RegistryFile) -> None:
        self._secrets_dir = secrets_dir
        self._registry = registry
        self._sent: KeyRing | None = None
        self._log = logs.get("treatyflow.gateway")

    async def announce(self, channel: AbstractChannel, *, again: bool = False) -> None:
        ring = self._registry.ring
        if ring == self._sent and not again:
            return
        text = signed_directory(self._secrets_dir, ring)
        exchange = await channel.get_exchange(c.EXCHANGE_DELIVER, ensure=False)
        try:
            await exchange.publish(aio_pika.Message(
                body=text.encode(), content_type=c.CONTENT_TYPE_JWS_JSON,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT, type=c.AMQP_TYPE_DIRECTORY,
                message_id=f"directory-{hashlib.sha256(text.encode()).hexdigest()[:32]}",
                user_id=c.HUB_USER, timestamp=issued_at(ring),
            ), routing_key=c.DIRECTORY_ROUTING_KEY)
        except Exception as err:
            if not full(err):
                raise
            # An inbox at its bound turned it away; every other inbox has it, and sending
            # it again would only repeat it there. The full one gets the next directory.
            self._log.warning("key directory refused by a full inbox; every other inbox "
                              "has it", error=repr(err))
        self._sent = ring
        self._log.info("key directory sent to every inbox", keys=len(ring.keys),
                       issued_at=issued_at(ring).isoformat())

    async def watch(self, channel: Callable[[], AbstractChannel | None],
                    stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), DIRECTORY_POLL_S)
            current = channel()
            if current is None or stop.is_set():
                continue
            try:
                await self.announce(current)
            except Exception as err:  # noqa: BLE001 - broker away: the next tick tries again
                self._log.warning("could not send the key directory; will retry",
                                  error=repr(err))


def checkpoint_message_id(signed: SignedCheckpoint) -> str:
    """The message id of a checkpoint's message: fixed by the checkpoint's JWS."""
    return f"checkpoint-{hashlib.sha256(signed.jws.encode()).hexdigest()[:32]}"


class Herald:
    """Signs a checkpoint of the record (``checkpoint_every`` calls it each interval) and,
    when the log's size or root changed since the checkpoint it sent last, sends it to
    every inbox with RFC 9162's consistency proof from that one: every party's witness
    checks it (treatyflow/agency/witness.py). The one sent last is at first the newest
    the record keeps, so a restarted gateway goes on from where the last one stopped.
    A failed send is tried again with the next checkpoint, its proof from the same one."""

    def __init__(self, record: Record, signing_key: Callable[[], SigningKey],
                 outbox: Outbox, tree: LogTree | None = None) -> None:
        self._record = record
        self._tree = tree or LogTree(record)  # the log's tree, held (record/tree.py)
        self._signing_key = signing_key
        self._outbox = outbox
        self._sent: Checkpoint | None = None
        self._started = False
        self._log = logs.get("treatyflow.gateway")

    async def __call__(self) -> SignedCheckpoint:
        if not self._started:
            latest = await self._record.latest_checkpoint()
            self._sent = None if latest is None else latest.checkpoint
            self._started = True
        tree = await self._tree.now()
        signed = await self._record.checkpoint(self._signing_key(), tree)
        made, sent = signed.checkpoint, self._sent
        if made.tree_size == 0 and sent is None:
            return signed  # an empty log: nothing to witness yet
        if sent is not None and (sent.tree_size, sent.root_hash) == (made.tree_size,
                                                                     made.root_hash):
            return signed  # nothing new for the witnesses
        # From the one sent last; from 0 (no proof) if the log is now shorter than it: a
        # witness holding it sees the log shrink.
        # To the size signed: the tree held may have grown since (a proof asked for).
        size = made.tree_size
        first = sent.tree_size if sent is not None and sent.tree_size <= size else 0
        proof = tree.consistency_proof(first, size)
        try:
            await self.send(signed, first, [h.hex() for h in proof])
        except Exception as err:  # noqa: BLE001 - the broker away: sent with the next one
            self._log.warning("record checkpoint signed but not sent to the inboxes; the "
                              "next one goes with its proof from the last sent",
                              tree_size=made.tree_size, error=repr(err))
            return signed
        self._sent = made
        return signed

    async def send(self, signed: SignedCheckpoint, first: int, proof: list[str]) -> None:
        message = RecordCheckpointMessage(
            kind="record_checkpoint", message_id=checkpoint_message_id(signed),
            sender="HUB", sent_at=datetime.now(UTC),
            body=ConsistencyBody(checkpoint=signed.jws, from_tree_size=first,
                                 consistency_proof=proof))
        token = sign(message, self._signing_key())
        try:
            await self._outbox.publish(c.EXCHANGE_DELIVER,
                                       to_amqp(token, message, user_id=c.HUB_USER),
                                       routing_key=c.CHECKPOINT_ROUTING_KEY)
        except Exception as err:
            if not full(err):
                raise
            self._log.warning("record checkpoint refused by a full inbox; every other inbox "
                              "has it", error=repr(err))
        self._log.info("record checkpoint sent to every inbox",
                       tree_size=signed.checkpoint.tree_size, from_tree_size=first)

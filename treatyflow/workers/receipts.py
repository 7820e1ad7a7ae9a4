"""The gateway's receipts task: every ``TREATYFLOW_RECORD_RECEIPT_SECONDS`` it reads the
entries appended to the record since the last batch (by any writer: the gateway, the
worker, the CLI), signs ONE checkpoint of the log covering them, and publishes to each
recipient (treatyflow.record.receipts.RECIPIENTS) ONE ``record_receipt`` message carrying
the checkpoint and its receipts of the batch (several when they pass the bounds of
treatyflow.schemas.limits), through the delivery exchange: one signature, one message
read and verified per recipient and batch, not one per receipt.

The tree is kept in memory as the log's frontier (treatyflow.record.compact), built from
the rows once at start and extended by each batch's new leaves only. How far the receipts
went is a row of the record (``record_receipts_sent``), moved on only once the broker
confirmed every message of the batch: after a crash the batch is sent again, each message
under its id fixed by its recipient and entries, and the agency's client keeps a receipt
of an entry it holds already once. Nothing is lost, nothing is kept twice.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Collection
from time import perf_counter

import aio_pika

from treatyflow import constants as c
from treatyflow import logs, metrics
from treatyflow.agency.checkpoints import SignedCheckpoint, sign_checkpoint
from treatyflow.agency.entries import DEADLINE, DELIVERED
from treatyflow.agency.merkle import leaf_hash
from treatyflow.agency.receipts import ReceiptItem
from treatyflow.agency.signing import SigningKey
from treatyflow.record.compact import Builder, Frontier
from treatyflow.record.receipts import (
    Owed,
    delivery_owed,
    owed,
    receipt,
    receipt_message,
    split,
)
from treatyflow.record.store import Record
from treatyflow.schemas.limits import RECEIPT_MESSAGE_MAX_BYTES, RECEIPTS_PER_MESSAGE_MAX
from treatyflow.workers.screen import Outbox, full

BATCH = 2_000  # entries under one checkpoint at most (a backlog is several batches)
_CONCURRENT = 200  # messages waiting for their confirm at once
_DELIVERIES_KEPT = 20_000  # recent notices' delivery receipts, for their retrievals

_log = logs.get("treatyflow.receipts")


class Receipts:
    """Sends the receipts of the record's new entries, a batch at a time."""

    def __init__(self, record: Record, outbox: Outbox, signing_key: Callable[[], SigningKey],
                 authorities: Collection[str], batch: int = BATCH) -> None:
        self._record = record
        self._outbox = outbox  # a connection of its own, with confirms
        self._key = signing_key
        self._authorities = set(authorities)  # who has an inbox
        self._batch = batch
        self._frontier: Frontier | None = None
        self._signed: SignedCheckpoint | None = None  # the last one, again for a retry
        # The delivery receipts of recent notices, for their retrievals' receipts (a
        # retrieval comes moments after its notice; an older one is read from the record).
        self._deliveries: OrderedDict[str, list[Owed]] = OrderedDict()

    def learn(self, authority: str) -> None:
        """An authority added while the gateway runs: its inbox gets receipts too."""
        self._authorities.add(authority)

    @property
    def sent(self) -> int | None:
        """The tree size below which every receipt went out (None before ``start``)."""
        return None if self._frontier is None else self._frontier.size

    async def start(self) -> None:
        """Resume from what the record says was sent: the frontier of that many rows."""
        size = await self._record.receipts_sent()
        began = perf_counter()
        builder = Builder()
        async for leaf in self._record.leaf_hashes(size):
            builder.push(leaf)
        self._frontier = builder.frontier()
        _log.info("receipts_resumed", tree_size=size,
                  seconds=round(perf_counter() - began, 3))

    async def once(self) -> int:
        """One batch: the entries after the frontier, one checkpoint, their receipts.
        Returns how many entries it covered (0: nothing new)."""
        if self._frontier is None:
            await self.start()
        assert self._frontier is not None
        entries = await self._record.since(self._frontier.size, self._batch)
        if not entries:
            return 0
        tree = self._frontier.extend([leaf_hash(e.leaf()) for e in entries])
        key = self._key()
        checkpoint = self._signed
        if checkpoint is None or (checkpoint.checkpoint.tree_size, checkpoint.checkpoint.root
                                  ) != (tree.size, tree.root()):
            # A batch sent again (the broker was away) keeps its checkpoint: one a batch.
            checkpoint = sign_checkpoint(tree.size, tree.root(), key)
            await self._record.keep(checkpoint)
            self._signed = checkpoint
        by_recipient: dict[str, list[ReceiptItem]] = {}
        for entry in entries:
            try:
                dues = await owed(entry, self._delivered)
                if entry.kind in (DELIVERED, DEADLINE):
                    self._deliveries[entry.entry_id] = dues
                    while len(self._deliveries) > _DELIVERIES_KEPT:
                        self._deliveries.popitem(last=False)
                wanted = [due for due in dues if due.recipient in self._authorities]
                proof = tree.inclusion_proof(entry.index) if wanted else []
                built = [(due, receipt(entry, due, proof)) for due in wanted]
            except Exception:  # noqa: BLE001 - one entry no receipt can be made of (its
                # stored message holds what a receipt cannot carry) must not stop the
                # receipts of every other entry: it stays in the record and its exports.
                _log.exception("receipt_unissuable", entry_id=entry.entry_id,
                               kind=entry.kind, index=entry.index)
                metrics.RECEIPTS_UNISSUABLE.inc()
                continue
            for due, item in built:
                by_recipient.setdefault(due.recipient, []).append(item)
        gate = asyncio.Semaphore(_CONCURRENT)

        async def send(recipient: str, items: list[ReceiptItem]) -> None:
            message_id, token = receipt_message(recipient, items, checkpoint, key)
            async with gate:
                await self._publish(message_id, token, recipient, items)

        sends = [send(recipient, part) for recipient, items in by_recipient.items()
                 for part in split(items, checkpoint, RECEIPTS_PER_MESSAGE_MAX,
                                   RECEIPT_MESSAGE_MAX_BYTES)]
        await asyncio.gather(*sends)
        await self._record.note_receipts_sent(tree.size)
        self._frontier = tree.frontier()
        _log.info("receipts_sent", entries=len(entries), messages=len(sends),
                  receipts=sum(len(i) for i in by_recipient.values()),
                  tree_size=tree.size, root_hash=checkpoint.checkpoint.root_hash)
        return len(entries)

    async def _delivered(self, delivered_id: str) -> list[Owed] | None:
        found = self._deliveries.get(delivered_id)
        if found is not None:
            return found
        return await delivery_owed(await self._record.entry(delivered_id))

    async def _publish(self, message_id: str, token: str, recipient: str,
                       items: list[ReceiptItem]) -> None:
        message = aio_pika.Message(
            body=token.encode(), content_type=c.CONTENT_TYPE_JWS,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, type=c.AMQP_TYPE_RECEIPT,
            message_id=message_id, user_id=c.HUB_USER)
        try:
            await self._outbox.publish(c.EXCHANGE_DELIVER, message, routing_key=recipient)
        except Exception as err:
            if not full(err):
                raise  # the broker away: the batch goes again at the next tick
            # A full inbox turns it away (its party reads nothing); the entries stay in
            # the record, in every export. The others' receipts are not held up by it.
            _log.warning("receipts refused by a full inbox", recipient=recipient,
                         message_id=message_id, receipts=len(items))
            return
        for item in items:
            metrics.MESSAGES_SENT.labels(kind=c.AMQP_TYPE_RECEIPT, event=item.receipt).inc()

    async def run(self, interval: float) -> None:
        """Send batches every ``interval`` seconds (at once while a backlog lasts) until
        cancelled; a failed batch is logged and sent again at the next tick."""
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            covered = 0
            try:
                covered = await self.once()
            except Exception:  # noqa: BLE001 - the broker or the database away: next tick
                _log.exception("receipts_failed")
            if covered < self._batch:
                await asyncio.sleep(max(0.0, began + interval - loop.time()))


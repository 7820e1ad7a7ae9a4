"""Connect as one authority, publish signed envelopes to the hub, read the authority's own
inbox, verify the hub's signature on everything in it and the original sender's on every
message a notice passes on (art. 5.5), follow the hub's key directory, witness the hub's
record (``witness.py``) and acknowledge each notice the application handled."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pydantic import BaseModel

from treatyflow.agency.checkpoints import Checkpoint
from treatyflow.agency.entries import digest_of
from treatyflow.agency.receipts import (
    Receipt,
    ReceiptBook,
    ReceiptError,
    ReceiptKind,
    verify_receipts,
)
from treatyflow.agency.signing import (
    KeyRing,
    KeySource,
    PublicKey,
    SignatureError,
    SigningKey,
    sign,
    verify_directory,
)
from treatyflow.agency.wire import Unverified, read_delivery, to_amqp
from treatyflow.agency.witness import Outcome, Witness
from treatyflow.constants import (
    AMQP_TYPE_CHECKPOINT,
    AMQP_TYPE_CONSISTENCY_PROOF,
    AMQP_TYPE_DIRECTORY,
    AMQP_TYPE_RECEIPT,
    EXCHANGE_HUB,
    HUB_SENDER,
    inbox_queue,
)
from treatyflow.schemas.limits import RETRIEVALS_PER_MESSAGE_MAX
from treatyflow.schemas.messages import NoticeMessage, OutboundMessage
from treatyflow.schemas.record import (
    ConsistencyRequestMessage,
    RetrievalBody,
    RetrievalMessage,
    RetrievedNotice,
)

Envelope = TypeVar("Envelope", bound=BaseModel)
_log = structlog.get_logger("treatyflow.agency")
_RETRIEVAL_IDS = uuid.UUID("5d0c3b7e-2a41-4c8e-9f61-0e7b2d4a9c53")
# A message the application handled and its delivery: True if the hook acks it (once the
# retrieval listing it is confirmed), False to have it acked now.
Handled = Callable[[OutboundMessage | Unverified, AbstractIncomingMessage], bool]


def _nothing(message: OutboundMessage | Unverified, incoming: AbstractIncomingMessage
             ) -> bool:
    return False


class Directory:
    """The key directory an agency holds: every key of the hub and of the authorities.

    It starts from a directory the agency trusts (exported by the hub's operator, or the
    last one it saved) and replaces itself with each newer directory the hub sends to the
    inbox, once one of that directory's signatures checks against a hub key it already
    holds: a rotation of the hub's key is learnt through the old key."""

    def __init__(self, ring: KeyRing, issued_at: datetime | None = None) -> None:
        self.ring = ring
        self.issued_at = issued_at

    @classmethod
    def from_signed(cls, text: str | bytes, trusted: KeySource) -> Directory:
        ring, issued_at = verify_directory(text, trusted)
        return cls(ring, issued_at)

    def lookup(self, key_id: str) -> PublicKey | None:
        return self.ring.lookup(key_id)

    def update(self, text: str | bytes) -> bool:
        """Take a directory the hub sent if it verifies and is newer; raises
        ``SignatureError`` if it does not verify. True if it replaced the held one."""
        ring, issued_at = verify_directory(text, self.ring)
        if self.issued_at is not None and issued_at <= self.issued_at:
            return False
        self.ring, self.issued_at = ring, issued_at
        return True


class RecentIds:
    """The last ``capacity`` message ids seen, oldest forgotten first: duplicates of a
    retried publish arrive within moments, and a long-running agency must not keep every
    id it ever saw."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class _Pending:
    """One delivery handed to the application, and the AMQP message to settle for it
    (None once settled: inboxes that ack on arrival)."""

    message: OutboundMessage | Unverified
    incoming: AbstractIncomingMessage | None = None


class Inbox:
    """What arrived in one authority's inbox: the hub's verified messages, duplicates
    (same message id) dropped, and ``Unverified`` for anything that failed verification.

    Two ways to read it. ``get()`` (inboxes opened with ``explicit_ack=False``): the broker
    forgets a message as soon as it is in this in-memory queue, so a crash loses what the
    application had not read yet. ``next()`` (``explicit_ack=True``): the message is acked
    only when the ``async with`` block ends without an exception; on an exception it is
    requeued, and if the process dies first the broker delivers it again. A notice handled
    so is acked once the hub confirmed the retrieval listing it (``AgencyClient``): within
    about ``retrieval_seconds``."""

    def __init__(self, queue: asyncio.Queue[_Pending], seen: RecentIds, explicit_ack: bool,
                 on_drop: Callable[[], None] = lambda: None,
                 lost: asyncio.Event | None = None, on_handled: Handled = _nothing) -> None:
        self._queue = queue
        self._on_handled = on_handled  # the client's retrieval, which then acks
        self._lost = lost or asyncio.Event()
        self._on_drop = on_drop
        self._seen = seen
        self.explicit_ack = explicit_ack
        self.dropped = 0  # duplicate deliveries (same message id) never handed out

    async def get(self, timeout: float | None = None) -> OutboundMessage | Unverified:
        """The next message: a verified envelope, or an ``Unverified`` naming the problem."""
        if self.explicit_ack:
            raise RuntimeError("this inbox acks explicitly: read it with `async with "
                               "inbox.next() as message:`")
        return (await self._take(timeout)).message

    async def _take(self, timeout: float | None) -> _Pending:
        """The next delivery; ``ConnectionError`` once the connection is lost (reconnect
        and open the inbox again: unacked messages come back)."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self._lost.is_set():
            raise ConnectionError("the connection to the broker was lost")
        getter = asyncio.ensure_future(self._queue.get())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({getter, lost}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        if self._lost.is_set():
            raise ConnectionError("the connection to the broker was lost")
        raise TimeoutError

    @asynccontextmanager
    async def next(self, timeout: float | None = None
                   ) -> AsyncIterator[OutboundMessage | Unverified]:
        """The next message, acked when the block ends normally, requeued if it raises."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            pending = await self._take(left)
            message_id = None if isinstance(pending.message, Unverified) else (
                pending.message.message_id)
            if message_id is not None and pending.incoming is not None and (
                    message_id in self._seen):
                self.dropped += 1  # handled while this copy waited in the queue
                self._on_drop()
                await _settle(pending.incoming, ack=True)
                continue
            break
        try:
            yield pending.message
        except BaseException:
            if pending.incoming is not None:
                await _settle(pending.incoming, ack=False)
            raise
        if pending.incoming is not None:
            if message_id is not None:
                self._seen.add(message_id)
            if not self._on_handled(pending.message, pending.incoming):
                await _settle(pending.incoming, ack=True)


async def _settle(incoming: AbstractIncomingMessage, *, ack: bool) -> None:
    """Ack (or requeue) one delivery. If its channel is gone (a broker restart, a lost
    connection) the broker has requeued it already and delivers it again: a handled
    message then comes back as a duplicate and is dropped by its id."""
    with contextlib.suppress(Exception):
        if ack:
            await incoming.ack()
        else:
            await incoming.nack(requeue=True)


class _Retrievals:
    """The notices the application handled, acknowledged to the hub a ``retrieval`` at a
    time: one lists what was handled within ``wait`` seconds, up to ``most`` notices. Each
    notice's delivery is acked once the broker confirmed the retrieval listing it, so a
    crash before loses no retrieval: the notice comes again, and is acknowledged then."""

    def __init__(self, client: AgencyClient, wait: float) -> None:
        self._client = client
        self.wait = wait
        self.most = RETRIEVALS_PER_MESSAGE_MAX
        self._held: list[tuple[RetrievedNotice, AbstractIncomingMessage]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.failed: set[str] = set()  # notices whose retrieval was not confirmed

    def add(self, notice: RetrievedNotice, incoming: AbstractIncomingMessage) -> None:
        self._held.append((notice, incoming))
        if len(self._held) >= self.most:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.wait, self.flush)

    def flush(self) -> None:
        """Send what is held now (in the background)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._held:
            return
        batch, self._held = self._held, []
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def drain(self, timeout: float = 5.0) -> None:
        """Send what is held and wait (briefly) for every retrieval under way."""
        self.flush()
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=timeout)

    async def _send(self, batch: list[tuple[RetrievedNotice, AbstractIncomingMessage]]
                    ) -> None:
        client = self._client
        ids = [n.notice_message_id for n, _ in batch]
        retrieval = RetrievalMessage(
            kind="retrieval", sender=client.authority_id, recipient=HUB_SENDER,
            message_id="rt-" + str(uuid.uuid5(_RETRIEVAL_IDS, "|".join(
                [client.authority_id, *ids]))),
            sent_at=datetime.now(UTC), body=RetrievalBody(notices=[n for n, _ in batch]))
        try:
            await client._publish_quietly(retrieval)
            self.failed.difference_update(ids)
        except Exception as err:  # noqa: BLE001 - the notices are handled; only the acks
            # are lost (a notice coming again is acknowledged again: ``failed``)
            self.failed.update(ids)
            _log.warning("could not acknowledge retrievals to the hub",
                         authority=client.authority_id, notices=ids, error=repr(err))
        for _, incoming in batch:
            await _settle(incoming, ack=True)


class AgencyClient:
    """One competent authority's connection to the hub.

    ``signing_key`` is the authority's private key (every published envelope is a JWS by
    it); ``keys`` is the key directory (a ``Directory``, or any ``KeySource``): the hub's
    keys verify every message in the inbox, the authorities' keys the originals a notice
    passes on. A ``Directory`` follows the directories the hub sends to the inbox.

    The hub's receipts (treatyflow.agency.receipts) never reach the inbox's reader: each
    is verified as it arrives and kept in ``receipts`` (a ``ReceiptBook``, on disk if
    given one with a path); one that does not verify is logged and kept in
    ``bad_receipts``.

    ``witness`` checks every checkpoint of the hub's record the inbox receives (in memory,
    or kept in ``witness_file``): read ``client.witness.fork`` for a detected rewrite.
    ``acknowledge_retrievals``: each notice the application handled (``Inbox.next``) is
    acknowledged to the hub, which records it as retrieved, one ``retrieval`` for what was
    handled within ``retrieval_seconds``; its delivery is acked once the hub's broker
    confirmed that retrieval. False sends none."""

    def __init__(
        self, authority_id: str, url: str, *, signing_key: SigningKey | None = None,
        keys: KeySource | None = None, hub_keys: KeySource | None = None,
        receipts: ReceiptBook | None = None,
        witness: Witness | None = None, witness_file: Path | str | None = None,
        acknowledge_retrievals: bool = True, retrieval_seconds: float = 1.0,
    ) -> None:
        self.authority_id = authority_id
        self._url = url
        self.signing_key = signing_key
        self.keys = keys if keys is not None else hub_keys
        self.witness = witness or Witness(witness_file, party=authority_id)
        if self.keys is not None:
            self.witness.load(self.keys)
        self.acknowledge_retrievals = acknowledge_retrievals
        self._retrievals = _Retrievals(self, retrieval_seconds)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lost = asyncio.Event()
        self._seen = RecentIds()
        self._dropped = 0
        self.last_sent: str | None = None  # the JWS of the last envelope published
        self.receipts = receipts if receipts is not None else ReceiptBook()
        self.bad_receipts: list[ReceiptError] = []
        self._sent: OrderedDict[str, set[str]] = OrderedDict()  # message id -> digests sent
        self._receipt_arrived = asyncio.Event()
        self._checkpoints: dict[str, Checkpoint] = {}  # verified, by JWS: a batch shares one

    async def connect(self) -> None:
        # A plain connection: aio-pika's robust one was measured not to come back after a
        # broker restart (treatyflow/amqp.py). A lost connection makes the inbox raise
        # ConnectionError and publish fail; connect a new client and carry on.
        self._connection = await aio_pika.connect(
            self._url, client_properties={"connection_name": f"agency:{self.authority_id}"}
        )
        self._lost = asyncio.Event()
        lost = self._lost
        self._connection.close_callbacks.add(lambda *_: lost.set())
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )

    async def close(self) -> None:
        await self._retrievals.drain()  # the retrievals under way, briefly
        if self._connection is not None:
            await self._connection.close()

    async def __aenter__(self) -> AgencyClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def channel(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError("not connected: call connect() first")
        return self._channel

    def sign(self, envelope: BaseModel | bytes) -> str:
        """``envelope`` (a model, or JSON bytes as written) as a compact JWS by this
        authority's key (art. 5.5)."""
        if self.signing_key is None:
            raise RuntimeError(f"{self.authority_id}: no signing key; pass signing_key=")
        return sign(envelope, self.signing_key)

    async def publish(self, envelope: Envelope) -> Envelope:
        """Sign ``envelope`` with this authority's key and publish it to the hub, waiting
        for the broker's confirm; returns it. The JWS sent is ``last_sent``."""
        token = self.sign(envelope)
        await self.publish_signed(token, envelope)
        return envelope

    async def publish_signed(self, token: str, envelope: BaseModel) -> None:
        """Publish a JWS signed elsewhere (``envelope`` is its payload, for the AMQP
        properties that mirror it). The routing key is this authority's id: the hub
        exchange routes it into this authority's own lane, and the broker refuses any
        other key from this login."""
        exchange = await self.channel.get_exchange(EXCHANGE_HUB, ensure=False)
        await exchange.publish(to_amqp(token, envelope, user_id=self.authority_id),
                               routing_key=self.authority_id)
        self.last_sent = token
        message_id = getattr(envelope, "message_id", None)
        if isinstance(message_id, str):  # what a receipt's digest must be (recent ones)
            self._sent.setdefault(message_id, set()).add(digest_of(token))
            while len(self._sent) > 100_000:
                self._sent.popitem(last=False)

    async def publish_raw(self, body: bytes, *, routing_key: str | None = None,
                          **properties: Any) -> None:
        """Publish bytes as they are (for testing what the hub does with bad input)."""
        exchange = await self.channel.get_exchange(EXCHANGE_HUB, ensure=False)
        properties.setdefault("user_id", self.authority_id)
        properties.setdefault("delivery_mode", aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(aio_pika.Message(body=body, **properties),
                               routing_key=self.authority_id if routing_key is None
                               else routing_key)

    def _take_directory(self, body: bytes) -> None:
        """A key directory the hub sent: taken if it verifies and is newer; one that does
        not verify is refused loudly and the held directory kept."""
        if not isinstance(self.keys, Directory):
            return
        try:
            if self.keys.update(body):
                _log.info("key directory updated", authority=self.authority_id,
                          issued_at=str(self.keys.issued_at), keys=len(self.keys.ring.keys))
        except SignatureError as err:
            _log.error("a key directory in the inbox does not verify; kept the one held",
                       authority=self.authority_id, problem=err.problem, reason=str(err))

    def _take_receipt(self, body: bytes) -> None:
        """A message of receipts from the hub's record: kept if it verifies (signed by the
        hub, for this authority, each entry in its checkpoint's tree, about what was
        sent); its checkpoint goes to the witness (``Witness.seen``)."""
        if self.keys is None:
            return
        try:
            receipts = verify_receipts(body, self.keys, recipient=self.authority_id,
                                       sent=lambda i: self._sent.get(i, ()),
                                       checkpoints=self._checkpoints)
        except ReceiptError as err:
            self.bad_receipts.append(err)
            _log.error("a receipt in the inbox does not verify", authority=self.authority_id,
                       problem=err.problem, reason=str(err))
            return
        self.witness.seen(receipts[0].signed_checkpoint, self.keys)
        if self.receipts.keep(receipts):
            self._receipt_arrived.set()
            self._receipt_arrived = asyncio.Event()

    async def receipt(self, message_id: str, kind: ReceiptKind,
                      timeout: float | None = None) -> Receipt:
        """The receipt of ``kind`` about our message ``message_id``, held already or
        received (with an inbox open) within ``timeout`` seconds; else ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while not (found := self.receipts.of(message_id, kind)):
                await self._receipt_arrived.wait()
        return found[0]
    async def _take_checkpoint(self, body: bytes, keys: KeySource) -> Outcome:
        """A checkpoint of the hub's record (or a proof asked for), checked by the witness;
        if its proof starts at another size than the one held, ask the hub for the right
        one (a proof never arriving leaves the held checkpoint as it is)."""
        outcome = self.witness.take(body, keys)
        wanted = self.witness.wanted
        if outcome is Outcome.ASK and wanted is not None and self.signing_key is not None:
            ask = ConsistencyRequestMessage(
                kind="consistency_request", message_id=f"cr-{uuid.uuid4()}",
                sender=self.authority_id, recipient=HUB_SENDER, sent_at=datetime.now(UTC),
                body=wanted)
            with contextlib.suppress(Exception):  # the next checkpoint asks again
                await self._publish_quietly(ask)
        return outcome

    def _retrieved(self, message: OutboundMessage | Unverified,
                   incoming: AbstractIncomingMessage) -> bool:
        """A notice the application handled: listed in the next ``retrieval`` to the hub,
        which acks its delivery once confirmed (True). False for anything else: acked now."""
        if not (self.acknowledge_retrievals and self.signing_key is not None
                and isinstance(message, NoticeMessage)):
            return False
        self._retrievals.add(RetrievedNotice(
            notice_message_id=message.message_id, request_id=message.request_id,
            treaty_id=message.treaty_id, digest=digest_of(incoming.body.decode())),
            incoming)
        return True

    async def _publish_quietly(self, envelope: BaseModel) -> None:
        """Sign and publish what the client sends of its own (``last_sent`` unchanged)."""
        exchange = await self.channel.get_exchange(EXCHANGE_HUB, ensure=False)
        await exchange.publish(to_amqp(self.sign(envelope), envelope,
                                       user_id=self.authority_id),
                               routing_key=self.authority_id)

    def _count_drop(self) -> None:
        self._dropped += 1

    @property
    def dropped(self) -> int:
        """Duplicate deliveries (a message id already handled) this client dropped."""
        return self._dropped

    @asynccontextmanager
    async def inbox(self, prefetch: int = 50, *, explicit_ack: bool = True
                    ) -> AsyncIterator[Inbox]:
        """Consume this authority's inbox for the duration of the block. By default a
        message is acked only once the application handled it (``Inbox.next()``): a crash
        loses nothing. ``explicit_ack=False`` acks each message as it arrives in memory
        (``Inbox.get()``), for tools that may lose what they did not read."""
        keys = self.keys
        if keys is None:
            raise RuntimeError(f"{self.authority_id}: cannot verify the hub's messages; "
                               "pass keys= (the key directory)")
        channel = await self._connection.channel()  # type: ignore[union-attr]
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(inbox_queue(self.authority_id), ensure=False)
        received: asyncio.Queue[_Pending] = asyncio.Queue()
        self.witness.load(keys)
        inbox = Inbox(received, self._seen, explicit_ack, self._count_drop, self._lost,
                      self._retrieved)

        async def on_message(message: AbstractIncomingMessage) -> None:
            if message.type == AMQP_TYPE_DIRECTORY:
                self._take_directory(message.body)
                await message.ack()
                return
            if message.type == AMQP_TYPE_RECEIPT:
                self._take_receipt(message.body)
                await message.ack()
                return
            if message.type in (AMQP_TYPE_CHECKPOINT, AMQP_TYPE_CONSISTENCY_PROOF):
                await self._take_checkpoint(message.body, keys)
                await message.ack()
                return
            read = read_delivery(message.body, keys)
            duplicate = not isinstance(read, Unverified) and read.message_id in self._seen
            if duplicate:
                self._dropped += 1  # a retried publish of a notice already handled
                if (isinstance(read, NoticeMessage)
                        and read.message_id in self._retrievals.failed
                        and self._retrieved(read, message)):
                    return  # handled, its retrieval lost: listed again, acked then
                await message.ack()
                return
            if explicit_ack:
                await received.put(_Pending(read, message))
                return
            await message.ack()
            if not isinstance(read, Unverified):
                # Only a verified message marks its id as seen: a forgery must not
                # make the genuine message with the same id look like a duplicate.
                self._seen.add(read.message_id)
            await received.put(_Pending(read))

        tag = await queue.consume(on_message)
        self._retrievals.most = max(1, min(RETRIEVALS_PER_MESSAGE_MAX, prefetch))
        try:
            yield inbox
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await queue.cancel(tag)
            await self._retrievals.drain()  # their acks on this channel, before it closes
            with contextlib.suppress(Exception):
                await channel.close()

"""Connect as one authority, publish signed envelopes to the hub, read the authority's own
inbox and verify the hub's signature on everything in it (art. 5.5)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from pydantic import BaseModel, ValidationError

from treatyflow.agency.signing import KeySource, SignatureError, SigningKey, sign, verify
from treatyflow.constants import EXCHANGE_HUB, HUB_SENDER, inbox_queue
from treatyflow.schemas.messages import OutboundMessage, parse_outbound

Envelope = TypeVar("Envelope", bound=BaseModel)


def to_amqp(envelope: BaseModel, *, user_id: str) -> aio_pika.Message:
    """One envelope as a persistent AMQP message whose properties mirror it."""
    data: dict[str, Any] = envelope.model_dump(mode="json")
    return aio_pika.Message(
        body=envelope.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=data["message_id"],
        correlation_id=data["request_id"],
        type=data["kind"],
        user_id=user_id,
        timestamp=getattr(envelope, "sent_at", None),
    )


@dataclass(frozen=True)
class Unverified:
    """Something in the inbox that is not a message signed by the hub: never act on it.

    ``problem`` is ``malformed`` (not a hub message at all), ``unsigned``, ``unknown_key``
    (a key the hub does not hold, or a sender other than the hub) or ``bad_signature``
    (altered after signing, or forged); ``message`` is the parsed envelope if it parsed."""

    problem: str
    reason: str
    body: bytes
    message: OutboundMessage | None = None


def read_delivery(body: bytes, hub_keys: KeySource) -> OutboundMessage | Unverified:
    """One delivery from the inbox: the hub's message if it parses and carries a valid
    signature of one of the hub's keys, else what is wrong with it."""
    try:
        message = parse_outbound(body)
    except ValueError as err:
        reason = "; ".join(e["msg"] for e in err.errors()[:5]) if isinstance(
            err, ValidationError) else str(err)
        return Unverified("malformed", reason, body)
    if message.sender != HUB_SENDER:
        return Unverified("unknown_key", f"sender {message.sender} is not the hub", body, message)
    try:
        verify(message, hub_keys)
    except SignatureError as err:
        return Unverified(err.problem, str(err), body, message)
    return message


class Inbox:
    """What arrived in one authority's inbox: the hub's verified messages, duplicates
    (same message id) dropped, and ``Unverified`` for anything that failed verification."""

    def __init__(self, queue: asyncio.Queue[OutboundMessage | Unverified]) -> None:
        self._queue = queue

    async def get(self, timeout: float | None = None) -> OutboundMessage | Unverified:
        """The next message: a verified envelope, or an ``Unverified`` naming the problem."""
        return await asyncio.wait_for(self._queue.get(), timeout)


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


class AgencyClient:
    """One competent authority's connection to the hub.

    ``signing_key`` is the authority's private key (every published envelope is signed
    with it); ``hub_keys`` are the hub's public keys (every message in the inbox is
    verified against them)."""

    def __init__(
        self, authority_id: str, url: str, *, signing_key: SigningKey | None = None,
        hub_keys: KeySource | None = None,
    ) -> None:
        self.authority_id = authority_id
        self._url = url
        self.signing_key = signing_key
        self._hub_keys = hub_keys
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._seen = RecentIds()

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": f"agency:{self.authority_id}"}
        )
        self._channel = await self._connection.channel(  # type: ignore[assignment]
            publisher_confirms=True, on_return_raises=True
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def __aenter__(self) -> AgencyClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise RuntimeError("not connected: call connect() first")
        return self._channel

    def sign(self, envelope: Envelope) -> Envelope:
        """``envelope`` signed with this authority's key (art. 5.5)."""
        if self.signing_key is None:
            raise RuntimeError(f"{self.authority_id}: no signing key; pass signing_key=")
        return sign(envelope, self.signing_key)

    async def publish(self, envelope: Envelope) -> Envelope:
        """Publish one envelope to the hub, waiting for the broker's confirm; returns it as
        sent. An unsigned envelope is signed with this authority's key; one that already
        carries a signature (signed elsewhere) is sent as it is."""
        if getattr(envelope, "signature", None) is None:
            envelope = self.sign(envelope)
        exchange = await self.channel.get_exchange(EXCHANGE_HUB, ensure=False)
        await exchange.publish(to_amqp(envelope, user_id=self.authority_id), routing_key="")
        return envelope

    async def publish_raw(self, body: bytes, **properties: Any) -> None:
        """Publish bytes as they are (for testing what the hub does with bad input)."""
        exchange = await self.channel.get_exchange(EXCHANGE_HUB, ensure=False)
        properties.setdefault("user_id", self.authority_id)
        properties.setdefault("delivery_mode", aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(aio_pika.Message(body=body, **properties), routing_key="")

    @asynccontextmanager
    async def inbox(self, prefetch: int = 50) -> AsyncIterator[Inbox]:
        """Consume this authority's inbox for the duration of the block."""
        hub_keys = self._hub_keys
        if hub_keys is None:
            raise RuntimeError(f"{self.authority_id}: cannot verify the hub's messages; "
                               "pass hub_keys=")
        channel = await self._connection.channel()  # type: ignore[union-attr]
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(inbox_queue(self.authority_id), ensure=False)
        received: asyncio.Queue[OutboundMessage | Unverified] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            async with message.process():
                read = read_delivery(message.body, hub_keys)
                if not isinstance(read, Unverified):
                    if read.message_id in self._seen:
                        return  # a retried publish of a notice already handled
                    # Only a verified message marks its id as seen: a forgery must not
                    # make the genuine message with the same id look like a duplicate.
                    self._seen.add(read.message_id)
                await received.put(read)

        tag = await queue.consume(on_message)
        try:
            yield Inbox(received)
        finally:
            await queue.cancel(tag)
            await channel.close()

"""Connect as one authority, publish to the hub, read the authority's own inbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from pydantic import BaseModel

from treatyflow.constants import EXCHANGE_HUB, inbox_queue
from treatyflow.schemas.messages import OutboundMessage, parse_outbound


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


class Inbox:
    """What arrived in one authority's inbox, parsed; duplicates (same message id) dropped."""

    def __init__(self, queue: asyncio.Queue[OutboundMessage | bytes]) -> None:
        self._queue = queue

    async def get(self, timeout: float | None = None) -> OutboundMessage | bytes:
        """The next message: a parsed envelope, or the raw body of one that did not parse."""
        return await asyncio.wait_for(self._queue.get(), timeout)


class AgencyClient:
    """One competent authority's connection to the hub."""

    def __init__(self, authority_id: str, url: str) -> None:
        self.authority_id = authority_id
        self._url = url
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._seen: set[str] = set()

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

    async def publish(self, envelope: BaseModel) -> None:
        """Publish one envelope to the hub, waiting for the broker's confirm."""
        exchange = await self.channel.get_exchange(EXCHANGE_HUB, ensure=False)
        await exchange.publish(to_amqp(envelope, user_id=self.authority_id), routing_key="")

    async def publish_raw(self, body: bytes, **properties: Any) -> None:
        """Publish bytes as they are (for testing what the hub does with bad input)."""
        exchange = await self.channel.get_exchange(EXCHANGE_HUB, ensure=False)
        properties.setdefault("user_id", self.authority_id)
        properties.setdefault("delivery_mode", aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(aio_pika.Message(body=body, **properties), routing_key="")

    @asynccontextmanager
    async def inbox(self, prefetch: int = 50) -> AsyncIterator[Inbox]:
        """Consume this authority's inbox for the duration of the block."""
        channel = await self._connection.channel()  # type: ignore[union-attr]
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(inbox_queue(self.authority_id), ensure=False)
        received: asyncio.Queue[OutboundMessage | bytes] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            async with message.process():
                if message.message_id and message.message_id in self._seen:
                    return  # a retried publish of a notice already handled
                try:
                    parsed: OutboundMessage | bytes = parse_outbound(message.body)
                except ValueError:
                    parsed = message.body
                if message.message_id:
                    self._seen.add(message.message_id)
                await received.put(parsed)

        tag = await queue.consume(on_message)
        try:
            yield Inbox(received)
        finally:
            await queue.cancel(tag)
            await channel.close()

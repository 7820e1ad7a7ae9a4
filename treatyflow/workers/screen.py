"""What the gateway checks of a delivery before anything else, and how it publishes its own
messages: the size of the AMQP properties, each sender's share (a token bucket), the
dead-letter copy (the hub's headers only), and the outbox, a connection of its own.

Measured before (issue 12): a message with 127 KB of headers made the gateway's copy of it
(its headers and the hub's) exceed the broker's frame size; the broker closed the
gateway's whole connection, four times, and messages of other senders whose acks rode on
it were redelivered until the broker dead-lettered them as ``delivery_limit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import DeliveryError, PublishError
from pamqp.header import ContentHeader

from treatyflow import constants as c
from treatyflow import logs, metrics
from treatyflow.hub import Refusal
from treatyflow.workers import dead_letter_queue as dlq


class TokenBuckets:
    """A token bucket per sender: ``rate`` tokens a second, at most ``burst`` held; each
    message takes one (senders are broker users, so the table stays small)."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._held: dict[str, tuple[float, float]] = {}  # sender -> (tokens, at)

    def take(self, sender: str) -> float:
        """0 if ``sender`` may go on now (a token taken), else the seconds until it may."""
        if math.isinf(self.rate):
            return 0.0
        now = self._clock()
        tokens, at = self._held.get(sender, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._held[sender] = (tokens - 1, now)
            return 0.0
        self._held[sender] = (tokens, now)
        return (1 - tokens) / self.rate if self.rate > 0 else math.inf


def properties_size(incoming: AbstractIncomingMessage) -> int:
    """The AMQP content header of ``incoming`` as encoded (its properties, the headers
    table among them): what a copy carrying them would put in one frame."""
    properties = incoming.properties  # type: ignore[attr-defined]
    return len(ContentHeader(0, len(incoming.body), properties).marshal())


def check_headers(incoming: AbstractIncomingMessage, limit: int = c.MAX_HEADER_BYTES) -> None:
    """Refuse AMQP properties past ``limit`` (issue: 127 KB of headers made the hub's own
    copy of the message exceed the broker's frame size, which closed the connection)."""
    try:
        size = properties_size(incoming)
    except Exception as err:  # noqa: BLE001 - a table the client cannot encode again
        raise Refusal("malformed", [f"the AMQP headers cannot be read ({type(err).__name__}); "
                                    "send no headers of your own"]) from err
    if size > limit:
        raise Refusal("oversize", [
            f"headers: the AMQP properties (headers included) are {size} bytes encoded; the "
            f"limit is {limit}; the hub reads no headers of yours, so send none"])


def check_namespace(incoming: AbstractIncomingMessage) -> None:
    """Refuse headers in the hub's namespace: a sender cannot speak for the hub (a forged
    ``x-treatyflow-reason`` or ``x-original-user-id``), even where nobody copies them."""
    names = sorted(str(k) for k in (incoming.headers or {})
                   if str(k).lower().startswith(c.HUB_HEADER_PREFIXES))
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise Refusal("malformed", [
            f"headers: {shown} belong to the hub's namespace "
            f"({', '.join(p + '*' for p in c.HUB_HEADER_PREFIXES)}); the hub reads no headers "
            "of yours, so send none"])


def text(value: object, limit: int = 255) -> str | None:
    """A property copied onto the hub's own message: text, at most ``limit`` characters."""
    if value is None:
        return None
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))[:limit]


class Outbox:
    """The gateway's own publishes (dead-letter copies, errors): a connection of their own
    with publisher confirms, opened again when lost. Whatever one publish makes the broker
    do (close the channel, or the connection), the channel the lanes are acked on stays."""

    def __init__(self, url: str, name: str = "treatyflow-gateway-outbox") -> None:
        self._url = url
        self._name = name
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def channel(self) -> AbstractChannel:
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect(
                    self._url, client_properties={"connection_name": self._name})
                self._channel = None
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True)
            return self._channel

    async def publish(self, exchange: str, message: aio_pika.Message, routing_key: str,
                      timeout: float = 10.0) -> None:
        """Publish and wait for the broker's confirm (raises on a nack or a return). A
        failure of the connection itself (a broker restarted under it, which aio-pika does
        not always mark closed) drops it, and the publish is tried once more on a new one."""
        for attempt in (1, 2):
            try:
                channel = await self.channel()
                target = await channel.get_exchange(exchange, ensure=False)
                await target.publish(message, routing_key=routing_key, mandatory=True,
                                     timeout=timeout)
                return
            except DeliveryError:
                raise  # the broker answered: a nack or a return, not a broken connection
            except Exception:
                await self._drop()
                if attempt == 2:
                    raise

    async def _drop(self) -> None:
        async with self._lock:
            connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def queue_count(self, queue: str) -> int:
        """A queue's message count, on a channel of its own (a missing queue closes it)."""
        await self.channel()
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            if not channel.is_closed:
                await channel.close()

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()


def full(err: BaseException) -> bool:
    """The broker nacked the publish (a queue at its bound refuses: ``reject-publish``)."""
    return isinstance(err, DeliveryError) and not isinstance(err, PublishError)


# The hub's headers a replay carries (published by the hub's own user): kept on its copy.
_REPLAY_HEADERS = (c.HEADER_REPLAY_SENDER, c.HEADER_REPLAY_OPERATOR, c.HEADER_REPLAY_REASON,
                   dlq.HEADER_REPLAY_OF)


def dead_letter_copy(incoming: AbstractIncomingMessage, refusal: Refusal) -> aio_pika.Message:
    """The copy kept in ``hub.dead-letter``: the body (past ``MAX_BODY_BYTES``, its first
    bytes with its size and SHA-256) and headers the hub sets alone: the problem, the
    reason, the sender from the broker-validated ``user_id``, the time. No header of the
    sender's is copied, so none can pass for the hub's (a forged ``x-treatyflow-reason``)
    or make the copy larger than the broker takes."""
    body = incoming.body
    headers: dict[str, Any] = {
        c.HEADER_PROBLEM: refusal.problem,
        c.HEADER_REASON: "; ".join(refusal.reasons)[:4000],
        c.HEADER_ORIGINAL_USER: text(incoming.user_id) or "",
        c.HEADER_REFUSED_AT: datetime.now(UTC).isoformat(),
    }
    if len(body) > c.MAX_BODY_BYTES:
        headers |= {c.HEADER_BODY_SIZE: len(body),
                    c.HEADER_BODY_SHA256: hashlib.sha256(body).hexdigest(),
                    c.HEADER_BODY_TRUNCATED: True}
        body = body[:c.MAX_BODY_BYTES]
    if isinstance(incoming, dlq.AsSender):  # the replay tool's headers are the hub's own
        sent = incoming.headers or {}
        headers |= {k: text(sent[k], 1000) for k in _REPLAY_HEADERS if k in sent}
    return aio_pika.Message(
        body=body, headers=headers, content_type=text(incoming.content_type),
        message_id=text(incoming.message_id), type=text(incoming.type),
        correlation_id=text(incoming.correlation_id), user_id=c.HUB_USER,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def settle(incoming: AbstractIncomingMessage, log: structlog.stdlib.BoundLogger, *,
                  requeue: bool = False) -> None:
    """Ack (or give back) one delivery; a channel gone meanwhile gives it back by itself."""
    try:
        if requeue:
            await incoming.nack(requeue=True)
        else:
            await incoming.ack()
    except Exception as err:  # noqa: BLE001 - the broker redelivers it; Temporal dedups
        log.warning("could not settle a delivery; the broker will deliver it again",
                    error=repr(err))


async def watch_dead_letter_fill(outbox: Outbox, stop: asyncio.Event,
                                 interval: float = 10.0) -> None:
    """Keep ``treatyflow_dead_letter_fill_ratio`` current (the queue's count over its
    bound) and warn past ``DEAD_LETTER_ALERT_RATIO``: at the bound the broker refuses
    further copies, and refused messages are then answered but not kept."""
    log = logs.get("treatyflow.gateway")
    while not stop.is_set():
        try:
            count = await outbox.queue_count(c.QUEUE_DEAD_LETTER)
            ratio = count / c.DEAD_LETTER_MAX_MESSAGES
            metrics.DEAD_LETTER_FILL.set(ratio)
            if ratio >= c.DEAD_LETTER_ALERT_RATIO:
                log.warning("dead-letter queue nearly full; read and clear it "
                            "(treatyflow dead-letters)", queue=c.QUEUE_DEAD_LETTER,
                            messages=count, bound=c.DEAD_LETTER_MAX_MESSAGES)
        except Exception as err:  # noqa: BLE001 - broker away: the next round tries again
            log.warning("could not count the dead-letter queue", error=repr(err))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)

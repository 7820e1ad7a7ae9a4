"""Reading ``hub.dead-letter`` without changing it: its records, the readers' lock, replays,
and the gauges the gateway exports.

``hub.dead-letter`` is a quorum queue (topology.py) and AMQP 0-9-1 has no peek: a reader
takes messages (``basic.get``, unacked) and gives them back (``basic.nack``, requeue).
Measured on RabbitMQ 3.10: a message given back goes to the tail of a quorum queue, and a
batch given back at once (``nack`` with ``multiple``, or a channel closing with messages
unacked) comes back in an arbitrary order. So a read takes every message, then gives them
back one at a time in the order taken, in small groups, each group confirmed by the
queue's message count before the next: after a read the queue holds the same messages in
the same order (a message dead-lettered while a read gives back lands before the ones not
yet given back). A reader that dies gives its messages back with the connection: nothing
is lost, only the order may change.

One reader at a time: each holds the exclusive queue ``hub.dead-letter.lock`` while it
reads; RabbitMQ refuses a second declaration, and drops the queue with the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from treatyflow import constants as c
from treatyflow import logs, metrics
from treatyflow.agency.signing import _unb64url

# Messages given back between two checks of the queue's count: few enough that the
# broker's client never batches them (a batch loses their order).
GIVE_BACK_GROUP = 8
SYNC_TIMEOUT_S = 2.0
# A read stops after the queue's depth at its start plus this many arrivals.
MAX_ARRIVALS = 10_000
HEADER_REPLAY_OF = "x-treatyflow-replay-of"


def to_hub(queue: str) -> bool:
    """Whether ``queue`` carries messages to the hub (the inbound queue or an authority's
    lane, or the replay queue), as opposed to an authority's inbox."""
    return queue in (c.QUEUE_INBOUND, c.QUEUE_REPLAY) or queue.startswith(
        f"{c.QUEUE_INBOUND}.")


class DeadLetterError(RuntimeError):
    """The queue cannot be read now; the message says why and what to do."""


class Busy(DeadLetterError):
    """Another reader holds ``hub.dead-letter.lock``."""


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = _text(value)
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def plain(value: object) -> object:
    """A header value as JSON can hold it (bytes as text, times in ISO 8601)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return _when(value).isoformat()  # type: ignore[union-attr]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@dataclass
class Letter:
    """One message in ``hub.dead-letter``, as the gateway or the broker put it there."""

    message_id: str
    at: datetime | None  # when it was dead-lettered
    sender: str  # the authority that sent it ('' if unknown)
    problem: str
    reason: str
    source: str  # the queue it was taken from
    size: int
    kind: str | None
    content_type: str | None
    correlation_id: str | None
    user_id: str | None
    headers: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def replayed_by(self) -> str | None:
        return _text(self.headers.get(c.HEADER_REPLAY_OPERATOR))

    def not_replayable(self, authorities: set[str]) -> str | None:
        """Why this message cannot be replayed to the gateway (None: it can)."""
        if self.headers.get(c.HEADER_BODY_TRUNCATED):
            return ("the gateway kept only the first bytes of this message (it was too "
                    "large): the bytes as signed are gone")
        if not to_hub(self.source):
            return (f"dead-lettered from {self.source}, not a message to the hub (a notice "
                    "the hub sent to an inbox): nothing to replay to the gateway")
        if self.sender not in authorities:
            return f"its sender {self.sender or '(unknown)'!r} is no registered authority"
        return None

    def summary(self) -> dict[str, object]:
        return {"dead_lettered_at": self.at.isoformat() if self.at else None,
                "sender": self.sender, "problem": self.problem, "reason": self.reason,
                "message_id": self.message_id, "size": self.size, "source": self.source,
                "kind": self.kind, "replayed_by": self.replayed_by}

    def envelope(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The JWS header and the envelope it carries, decoded but not verified (None:
        not a compact JWS of JSON)."""
        parts = self.body.strip().split(b".")
        if len(parts) != 3:
            return None, None
        decoded: list[dict[str, Any] | None] = []
        for part in parts[:2]:
            try:
                value = json.loads(_unb64url(part))
            except (ValueError, RecursionError):
                value = None
            decoded.append(value if isinstance(value, dict) else None)
        return decoded[0], decoded[1]


def read_letter(incoming: AbstractIncomingMessage) -> Letter:
    """What a dead-lettered message says of itself: the gateway's copy carries the problem,
    the reason, the sender and the time in its headers; a message the broker dead-lettered
    (the delivery limit on ``hub.inbound``, say) carries ``x-death`` and its own user id."""
    headers = dict(incoming.headers or {})
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) \
        else {}
    replay_sender = _text(headers.get(c.HEADER_REPLAY_SENDER)) or ""
    problem = _text(headers.get(c.HEADER_PROBLEM))
    if problem:  # refused by the gateway
        source = c.QUEUE_REPLAY if replay_sender else c.QUEUE_INBOUND
        sender = _text(headers.get(c.HEADER_ORIGINAL_USER)) or ""
        reason = _text(headers.get(c.HEADER_REASON)) or ""
        at = _when(headers.get(c.HEADER_REFUSED_AT))
    else:  # dead-lettered by the broker
        problem = _text(death.get("reason")) or _text(headers.get("x-first-death-reason")) \
            or "unknown"
        source = _text(death.get("queue")) or _text(headers.get("x-first-death-queue")) or "?"
        sender = replay_sender if source == c.QUEUE_REPLAY else (incoming.user_id or "")
        sender = c.HUB_SENDER if sender == c.HUB_USER else sender
        hub = to_hub(source)
        reason = (f"dead-lettered by the broker from {source} ({problem})"
                  + (f"; {'the gateway' if hub else 'the agency'} failed on it at every "
                     f"delivery{' (the gateway log says why)' if hub else ''}"
                     if problem == "delivery_limit" else ""))
        at = _when(death.get("time"))
    if at is None:
        at = _when(incoming.timestamp)
    return Letter(
        message_id=incoming.message_id or _text(headers.get("x-original-message-id")) or "",
        at=at, sender=sender, problem=problem, reason=reason, source=source,
        size=len(incoming.body), kind=incoming.type, content_type=incoming.content_type,
        correlation_id=incoming.correlation_id, user_id=incoming.user_id, headers=headers,
        body=incoming.body)


class Reading:
    """Every message of ``hub.dead-letter``, held while the reader holds the lock."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        self._connection = connection
        self._channel = channel
        self._held: list[tuple[AbstractIncomingMessage, Letter]] = []
        self._settled: set[int] = set()

    @property
    def letters(self) -> list[Letter]:
        """The messages still held, in queue order."""
        return [x for i, (_, x) in enumerate(self._held) if i not in self._settled]

    async def _count(self) -> int:
        queue = await self._channel.declare_queue(c.QUEUE_DEAD_LETTER, passive=True)
        return int(queue.declaration_result.message_count or 0)

    async def take(self) -> None:
        limit = await self._count() + MAX_ARRIVALS
        queue = await self._channel.get_queue(c.QUEUE_DEAD_LETTER, ensure=False)
        while len(self._held) < limit:
            incoming = await queue.get(no_ack=False, fail=False)
            if incoming is None:
                return
            self._held.append((incoming, read_letter(incoming)))

    def _index(self, letter: Letter) -> int:
        for i, (_, held) in enumerate(self._held):
            if held is letter and i not in self._settled:
                return i
        raise KeyError(letter.message_id)

    async def remove(self, letter: Letter) -> None:
        """Take ``letter`` out of the queue for good."""
        i = self._index(letter)
        await self._held[i][0].ack()
        self._settled.add(i)

    async def replay(self, letter: Letter, operator: str, reason: str) -> None:
        """Publish ``letter``'s bytes, unchanged, to the replay exchange (the broker's
        confirm awaited), naming its sender for the gateway; then drop it from here."""
        channel = await self._connection.channel(publisher_confirms=True,
                                                 on_return_raises=True)
        try:
            exchange = await channel.get_exchange(c.EXCHANGE_REPLAY, ensure=False)
            await exchange.publish(aio_pika.Message(
                body=letter.body, content_type=letter.content_type,
                message_id=letter.message_id or None, type=letter.kind,
                correlation_id=letter.correlation_id, user_id=c.HUB_USER,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={c.HEADER_REPLAY_SENDER: letter.sender,
                         c.HEADER_REPLAY_OPERATOR: operator,
                         c.HEADER_REPLAY_REASON: reason[:1000],
                         HEADER_REPLAY_OF: letter.problem}),
                routing_key="", mandatory=True)
        finally:
            await channel.close()
        await self.remove(letter)

    async def give_back(self) -> None:
        """Every message still held back into the queue, in the order taken."""
        pending = [i for i in range(len(self._held)) if i not in self._settled]
        if not pending:
            return
        base = await self._count()
        loop = asyncio.get_running_loop()
        for start in range(0, len(pending), GIVE_BACK_GROUP):
            group = pending[start:start + GIVE_BACK_GROUP]
            for i in group:
                await self._held[i][0].nack(requeue=True)
                self._settled.add(i)
            given = start + len(group)
            deadline = loop.time() + SYNC_TIMEOUT_S
            while (count := await self._count()) < base + given:
                if loop.time() >= deadline:
                    base = count - given  # someone else took one meanwhile: count anew
                    break
                await asyncio.sleep(0.005)


async def lock(connection: AbstractConnection, wait: float) -> None:
    """Hold the queue's reading lock (an exclusive queue) for the connection's life:
    every reader takes it, so none finds the queue emptied by another's read."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        channel = await connection.channel()
        try:
            await channel.declare_queue(c.QUEUE_DEAD_LETTER_LOCK, exclusive=True,
                                        durable=False, auto_delete=False,
                                        arguments={"x-queue-type": "classic"})
            return
        except aiormq.exceptions.ChannelLockedResource as err:
            if loop.time() >= deadline:
                raise Busy(f"another reader holds {c.QUEUE_DEAD_LETTER} (the gateway "
                           "counting it, or another operator); try again in a moment") from err
            await asyncio.sleep(0.2)
        except aiormq.exceptions.ChannelAccessRefused as err:
            raise DeadLetterError(
                f"the broker does not let {c.HUB_USER} declare {c.QUEUE_DEAD_LETTER_LOCK}: "
                "its definitions predate the dead-letter tools; restart the broker (make "
                "down; make up) to load the current ones") from err


@contextlib.asynccontextmanager
async def reading(url: str, *, wait: float = 10.0, name: str = "treatyflow-dead-letters"
                  ) -> AsyncIterator[Reading]:
    """Hold every message of ``hub.dead-letter`` for the block; what is neither removed nor
    replayed goes back in its order. ``wait``: how long to wait for another reader."""
    try:
        connection = await aio_pika.connect(url, client_properties={"connection_name": name})
    except (OSError, aiormq.exceptions.AMQPConnectionError) as err:
        raise DeadLetterError(f"cannot reach RabbitMQ ({err}); is the stack up (make up)?"
                              ) from err
    try:
        await lock(connection, wait)
        held = Reading(connection, await connection.channel())
        try:
            await held.take()
            yield held
        finally:
            await held.give_back()
    finally:
        await connection.close()


# --- the gateway's side -----------------------------------------------------------------


async def depth(url: str) -> int:
    """Messages ready in ``hub.dead-letter`` (a passive declaration: nothing is read)."""
    connection = await aio_pika.connect(url, client_properties={
        "connection_name": "treatyflow-gateway-dead-letters"})
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(c.QUEUE_DEAD_LETTER, passive=True)
        return int(queue.declaration_result.message_count or 0)


REREAD_S = 300.0


async def watch(url: str, stop: asyncio.Event, interval: float = 5.0, *,
                max_share: float = 0.05) -> None:
    """Keep ``treatyflow_dead_letter_depth`` and ``..._oldest_age_seconds`` current.

    The depth is the queue's count, every ``interval``. The oldest message is known only
    by reading the whole queue (a quorum queue shows no head timestamp), and every read
    counts as a delivery of each message: the queue is read again only when its count
    changed, or after ``REREAD_S``, and reading takes at most ``max_share`` of the time.
    Meanwhile the age grows from the last read; a round another reader holds the queue
    keeps the last figures."""
    log = logs.get("treatyflow.dead_letters")
    loop = asyncio.get_running_loop()
    known: int | None = None  # the count at the last read
    oldest: datetime | None = None
    read_at = next_read = float("-inf")
    while not stop.is_set():
        try:
            count = await depth(url)
            now = loop.time()
            if (count != known or now - read_at > REREAD_S) and now >= next_read:
                async with reading(url, wait=0, name="treatyflow-gateway-dead-letters"
                                   ) as held:
                    letters = held.letters
                took = loop.time() - now
                known, read_at = len(letters), now
                next_read = now + took / max_share
                times = [x.at for x in letters if x.at is not None]
                oldest = min(times) if times else None
                count = len(letters)
            metrics.DEAD_LETTER_DEPTH.set(count)
            metrics.DEAD_LETTER_OLDEST_AGE.set(
                max(0.0, (datetime.now(UTC) - oldest).total_seconds())
                if oldest is not None and count else 0.0)
        except Busy:
            pass
        except Exception as err:  # noqa: BLE001 - broker away: the next round tries again
            log.warning("could not read the dead-letter queue", error=repr(err))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def consume_replays(connection: AbstractConnection,
                          handle: Callable[[AbstractIncomingMessage], Awaitable[None]]
                          ) -> list[tuple[AbstractQueue, str]]:
    """Consume ``hub.replay`` on a channel of its own (a broker whose definitions predate
    it refuses: logged, and the gateway carries on with ``hub.inbound``)."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=8)
    queue = await channel.get_queue(c.QUEUE_REPLAY, ensure=False)
    try:
        return [(queue, await queue.consume(handle))]
    except (aiormq.exceptions.ChannelNotFoundEntity,
            aiormq.exceptions.ChannelAccessRefused) as err:
        logs.get("treatyflow.gateway").warning(
            "no replay queue on this broker; restart it to load the current definitions",
            queue=c.QUEUE_REPLAY, error=repr(err))
        return []


class AsSender:
    """A delivery from ``hub.replay`` seen as its original sender's: the gateway checks it
    exactly as a fresh message whose broker-validated user id is ``user_id``."""

    def __init__(self, incoming: AbstractIncomingMessage, user_id: str) -> None:
        self._incoming = incoming
        self.user_id = user_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._incoming, name)


def replay_sender(incoming: AbstractIncomingMessage, authorities: set[str]) -> str | None:
    """The sender a replay names, if the hub's own user published it (the broker checks
    user_id against the login) and the sender is a registered authority."""
    sender = _text((incoming.headers or {}).get(c.HEADER_REPLAY_SENDER))
    if incoming.user_id != c.HUB_USER or sender not in authorities:
        return None
    return sender

"""Several gateways side by side (docs/operators/scale-out.md), with nothing but what
RabbitMQ already offers: single active consumers and exclusive queues.

- **Lanes.** Every sender's lane is a quorum queue with a single active consumer: one
  gateway at a time applies it, in the order its sender published, the others stand by.
  Each gateway holds a slot (``hub.gateway.slot.<k>``) and consumes the lanes of its slot
  at once, the others only after ``STANDBY_DELAY_S``: N gateways started together share
  the lanes. A gateway killed, the broker gives each of its lanes, with the deliveries it
  held, in their order, to a standby at once (measured: 27 ms). One that comes back gets its
  slot's lanes handed back (``Lane.hand_over``).
- **Requests.** A request's messages come from both its parties (two lanes, maybe two
  gateways): a gateway applies one of them and records it holding the request's lock,
  an exclusive queue (``RequestLocks``), so that the record keeps the order Temporal
  applied them in, as one gateway's in-process lock did.
- **The lead.** What must run once (the record's receipts and checkpoints, replays, the
  old inbound queue) runs in the gateway holding the lease ``hub.gateway.lead`` (``Lease``);
  the others wait for it, and one takes over when the holder's connection is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any

import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from treatyflow import amqp, logs
from treatyflow import constants as c

LOCK_FIRST_WAIT_S = 0.01
LOCK_MAX_WAIT_S = 0.2
LOCK_TIMEOUT_S = 30.0  # a request locked this long by another gateway: requeued
LEASE_RETRY_S = 2.0
HAND_BACK_S = 5.0  # how often a gateway looks whether a lane's own slot is back
DRAIN_S = 30.0  # how long a lane handed back waits for the messages it is applying

_log = logs.get("treatyflow.gateway")
Handle = Callable[[AbstractIncomingMessage], Awaitable[None]]


async def hold(connection: AbstractConnection, name: str) -> AbstractChannel | None:
    """Declare the exclusive queue ``name`` (held until deleted or the connection closes);
    the channel it was declared on, or None if another connection holds it."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, exclusive=True, durable=False, auto_delete=False,
                                    arguments={"x-queue-type": "classic"})
    except aiormq.exceptions.ChannelLockedResource:
        return None  # the broker closed the channel
    return channel


async def held_elsewhere(connection: AbstractConnection, name: str) -> bool:
    """Whether another connection holds the exclusive queue ``name``."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelLockedResource:
        return True
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    await channel.close()
    return False  # our own


async def claim_slot(connection: AbstractConnection, count: int) -> int:
    """The first free slot, held for the connection's life. Past ``count`` (more gateways
    run than TREATYFLOW_GATEWAYS says) it still takes one, and says so."""
    for slot in itertools.count():
        if await hold(connection, c.gateway_slot(slot)) is not None:
            if slot >= count:
                _log.warning("more gateways run than TREATYFLOW_GATEWAYS says; this one "
                             "stands by on the lanes of the others", slot=slot,
                             gateways=count)
            return slot
    raise AssertionError("unreachable")


def slot_of(lane: str, count: int) -> int:
    """The slot that serves ``lane`` first: fixed by its name (a hash), so every gateway
    agrees whatever authorities were added while it ran."""
    return int.from_bytes(hashlib.sha256(lane.encode()).digest()[:8], "big") % max(1, count)


def preferred(lanes: Iterable[str], slot: int, count: int) -> list[str]:
    """The lanes slot ``slot`` of ``count`` consumes at once (every lane for one gateway;
    a slot past ``count``, the lanes of the slot it maps onto, where it stands by)."""
    return [lane for lane in lanes if slot_of(lane, count) == slot % max(1, count)]


class KeyedLock:
    """One FIFO lock per key, forgotten when nobody holds or waits for it: one gateway's
    messages of a request, in the order delivered (taken before the request's lock)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Lane:
    """One sender's lane on a channel of its own: closing that channel gives back what it
    held, in order, to the next consumer (RabbitMQ's single active consumer)."""

    def __init__(self, name: str, handle: Handle, prefetch: int = c.LANE_PREFETCH) -> None:
        self.name = name
        self._handle = handle
        self._prefetch = prefetch
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.releasing = False
        self.delivered = False  # since it last consumed: then it is the active consumer

    async def consume(self, connection: AbstractConnection) -> None:
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)
        self._queue = await self._channel.get_queue(self.name, ensure=False)
        self.delivered = False
        self._tag = await self._queue.consume(self._on)

    async def _on(self, incoming: AbstractIncomingMessage) -> None:
        if self.releasing:
            return  # not applied: the channel's close gives it back, before any later one
        self.delivered = True
        self._busy += 1
        self._idle.clear()
        try:
            await self._handle(incoming)
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def cancel(self) -> None:
        """Stop taking deliveries (stopping); a channel already gone has none to stop."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)

    async def hand_over(self, connection: AbstractConnection) -> None:
        """Give the lane to the gateway standing by on it: finish what is being applied,
        close the channel (the deliveries not begun go back in their order, ahead of the
        rest), then stand by on it again."""
        self.releasing = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), DRAIN_S)
            if self._channel is not None:
                with contextlib.suppress(Exception):
                    await self._channel.close()
        finally:
            self.releasing = False
        await self.consume(connection)
        _log.info("lane handed over to its own gateway", lane=self.name)


async def hand_back(connection: AbstractConnection, lanes: dict[str, Lane], count: int,
                    mine: int) -> None:
    """Every ``HAND_BACK_S``: a lane this gateway applies though another slot serves it
    first goes back to that slot's gateway once it has been seen holding its slot twice
    in a row (it consumes its own lanes right after taking the slot)."""
    seen: dict[int, int] = {}
    while not connection.is_closed:
        await asyncio.sleep(HAND_BACK_S)
        owners = {name: slot_of(name, count) for name in lanes}
        for slot in sorted(set(owners.values()) - {mine % count}):
            alive = await held_elsewhere(connection, c.gateway_slot(slot))
            seen[slot] = seen.get(slot, 0) + 1 if alive else 0
        for name, lane in list(lanes.items()):
            owner = owners[name]
            if owner != mine % count and lane.delivered and seen.get(owner, 0) >= 2:
                await lane.hand_over(connection)


class RequestLocks:
    """One lock per request across gateways: the exclusive queue ``request_lock(id)`` on a
    connection of its own, declared before a message of the request is applied and deleted
    once it is recorded. A gateway that dies drops its locks with its connection."""

    def __init__(self, url: str, name: str = "treatyflow-gateway-order") -> None:
        self._url = url
        self._name = name
        self._connection: AbstractConnection | None = None
        self._connecting = asyncio.Lock()
        self._idle: list[AbstractChannel] = []

    async def _connected(self) -> AbstractConnection:
        async with self._connecting:
            if self._connection is None or self._connection.is_closed:
                self._idle.clear()
                self._connection = await amqp.connect(self._url, self._name)
            assert self._connection is not None
            return self._connection

    async def _channel(self) -> AbstractChannel:
        while self._idle:
            channel = self._idle.pop()
            if not channel.is_closed:
                return channel
        return await (await self._connected()).channel()

    @contextlib.asynccontextmanager
    async def hold(self, workflow: str) -> AsyncIterator[None]:
        name = c.request_lock(workflow)
        channel = await self._acquire(name)
        try:
            yield
        finally:
            await self._release(channel, name)

    async def _acquire(self, name: str) -> AbstractChannel:
        wait, deadline = LOCK_FIRST_WAIT_S, time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                channel = await self._channel()
                await channel.declare_queue(name, exclusive=True, durable=False,
                                            auto_delete=False,
                                            arguments={"x-queue-type": "classic"})
                return channel
            except aiormq.exceptions.ChannelLockedResource:
                pass  # another gateway applies a message of this request
            except Exception as err:  # noqa: BLE001 - the broker away: a new connection
                _log.warning("request lock: broker unavailable; retrying", error=repr(err))
                await self._drop()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the request's lock {name} stayed held for "
                                   f"{LOCK_TIMEOUT_S:.0f} s by another gateway")
            await asyncio.sleep(wait)
            wait = min(wait * 2, LOCK_MAX_WAIT_S)

    async def _release(self, channel: AbstractChannel, name: str) -> None:
        try:
            await channel.queue_delete(name)
        except Exception as err:  # noqa: BLE001 - the lock must not outlive its use
            _log.warning("request lock not released; dropping the connection (its locks go "
                         "with it)", error=repr(err))
            await self._drop()
            return
        self._idle.append(channel)

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._idle.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        await self._drop()


class Lease:
    """The lead among the gateways: whoever holds the exclusive queue
    ``hub.gateway.lead`` runs ``duties(connection)`` (tasks, and consumers on that
    connection) until the connection is lost or ``stop``; the others try every
    ``LEASE_RETRY_S``."""

    def __init__(self, url: str,
                 duties: Callable[[AbstractConnection], Awaitable[Iterable[
                     Coroutine[Any, Any, Any]]]]) -> None:
        self._url = url
        self._duties = duties
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.leading = asyncio.Event()

    def _resign(self, *_: object) -> None:
        if self.leading.is_set() and not self._stopping:
            _log.warning("gateway no longer leads (its lease's connection is gone)")
        self.leading.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def run(self, stop: asyncio.Event) -> None:
        async def session(connection: AbstractConnection) -> None:
            while await hold(connection, c.QUEUE_GATEWAY_LEAD) is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LEASE_RETRY_S)
                if stop.is_set():
                    return
            connection.close_callbacks.add(self._resign)
            self._tasks = [asyncio.create_task(duty) for duty in await self._duties(connection)]
            self.leading.set()
            _log.info("gateway leads: receipts, checkpoints, replays",
                      lease=c.QUEUE_GATEWAY_LEAD)

        async def resign() -> None:
            self._stopping = True
            self._resign()

        try:
            await amqp.stay_connected(self._url, "treatyflow-gateway-lead", session, stop,
                                      resign)
        finally:
            self._resign()

"""A broker connection kept up by hand: connect, set up, and on loss start again.

Measured here (aio-pika 10.2, RabbitMQ 3.10, ``make chaos``): after a ``kill -9`` or a
graceful restart of the broker, ``connect_robust`` logged one failed reconnect attempt and
never came back: zero consumers on every queue for minutes. So the hub's processes use
plain connections and redo their whole setup (channels, consumers) on each new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection

from treatyflow import logs

RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0


async def connect(url: str, name: str, stop: asyncio.Event | None = None
                  ) -> AbstractConnection | None:
    """A new connection, retried with backoff until it succeeds (or ``stop`` is set: None)."""
    log = logs.get("treatyflow.amqp")
    delay = RECONNECT_FIRST_S
    while stop is None or not stop.is_set():
        try:
            return await aio_pika.connect(url, client_properties={"connection_name": name})
        except Exception as err:  # noqa: BLE001 - broker down: try again
            log.warning("broker unreachable; retrying", connection=name, error=repr(err))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)
    return None


def lost_event(connection: AbstractConnection) -> asyncio.Event:
    """Set when ``connection`` closes, for whatever reason."""
    lost = asyncio.Event()

    def on_close(*_: Any) -> None:
        lost.set()

    connection.close_callbacks.add(on_close)
    return lost


async def stay_connected(
    url: str, name: str, session: Callable[[AbstractConnection], Awaitable[None]],
    stop: asyncio.Event, on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run ``session(connection)`` (channels, consumers) on a fresh connection each time
    the last one is lost, until ``stop``; ``on_stop`` runs before the last one closes."""
    log = logs.get("treatyflow.amqp")
    while not stop.is_set():
        connection = await connect(url, name, stop)
        if connection is None:
            return
        lost = lost_event(connection)
        try:
            await session(connection)
            stopping = asyncio.ensure_future(stop.wait())
            dropped = asyncio.ensure_future(lost.wait())
            await asyncio.wait({stopping, dropped}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            dropped.cancel()
            if stop.is_set() and on_stop is not None and not lost.is_set():
                await on_stop()
        except Exception as err:  # noqa: BLE001 - lost during setup: start again
            log.warning("broker session failed; reconnecting", connection=name, error=repr(err))
            await asyncio.sleep(RECONNECT_FIRST_S)
        finally:
            with contextlib.suppress(Exception):
                await connection.close()
        if lost.is_set() and not stop.is_set():
            log.warning("broker connection lost; reconnecting", connection=name)

"""The hub signs checkpoints of its record now and then (the checkpoint itself, what a
party keeps and checks, is ``treatyflow.agency.checkpoints``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from treatyflow import logs
from treatyflow.agency.checkpoints import (
    LOG_ORIGIN,
    Checkpoint,
    SignedCheckpoint,
    read_checkpoint,
    sign_checkpoint,
)

__all__ = ["LOG_ORIGIN", "Checkpoint", "SignedCheckpoint", "checkpoint_every",
           "read_checkpoint", "sign_checkpoint"]

_log = logs.get("treatyflow.record")


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

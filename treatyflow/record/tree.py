"""The record's Merkle tree as the gateway holds it (RFC 9162, ``agency.merkle``): built
from the rows once, then extended by the rows appended since, for the checkpoints every
party witnesses (``workers.announce.Herald``) and the consistency proofs they ask for
(``workers.desk``).

Rebuilding it from every row at each checkpoint would cost time in proportion to the
whole log on the gateway's own loop (about 2 s of CPU per 100,000 entries, each minute),
and every party's messages would wait behind it. Held, a checkpoint costs the new rows.

What the rows say still decides the root: each checkpoint also recomputes one slice of
the rows already in the tree (``AUDIT_SLICE``, in turn from the first, back to the first
after the last) and the last row held (a log cut short and grown again since holds
another entry there), and a row found changed since it was appended (someone rewrote the
database), or rows gone, make the tree rebuilt from the rows. The next checkpoint then
signs the log as the rows now hold it, and every party's witness, holding the one before,
reports the fork. A whole log of N entries is checked every N / ``AUDIT_SLICE`` checkpoints.
"""

from __future__ import annotations

import asyncio

from treatyflow import logs
from treatyflow.agency.merkle import MerkleTree
from treatyflow.record.store import Record, RecordError

AUDIT_SLICE = 20_000  # rows recomputed at each checkpoint (about 0.4 s of CPU, in a thread)

_log = logs.get("treatyflow.record")


class LogTree:
    """One tree of the record's log, shared by what the gateway signs and proves."""

    def __init__(self, record: Record, audit_slice: int = AUDIT_SLICE) -> None:
        self._record = record
        self._tree = MerkleTree([])
        self._lock = asyncio.Lock()  # one extension (or rebuild) at a time
        self._slice = audit_slice
        self._audit_at = 0  # the next row to recompute

    async def of(self, size: int) -> MerkleTree:
        """The tree of at least ``size`` leaves (for a proof up to a checkpoint of that
        size)."""
        async with self._lock:
            await self._extend(size)
            return self._tree

    async def now(self) -> MerkleTree:
        """The tree of the whole log as the rows hold it now, after one audit slice."""
        async with self._lock:  # the size read under it: a proof may extend the tree
            size = await self._record.size()
            await self._audit(size)
            await self._extend(size)
            return self._tree

    async def _extend(self, size: int) -> None:
        if self._tree.size < size:
            self._tree.extend(await self._record.leaves_between(self._tree.size, size))

    async def _audit(self, size: int) -> None:
        """One slice of the rows held, and the last one held: a log cut short and grown
        again since changes that row (its index holds another entry now)."""
        held = self._tree.size
        if held == 0:
            return
        start = self._audit_at if self._audit_at < held else 0
        stop = min(held, start + self._slice)
        ranges = [(start, stop)] + ([(held - 1, held)] if stop < held else [])
        changed: int | None = None
        if size >= held:  # else rows are gone
            for first, last in ranges:
                try:
                    rows = await self._record.leaves_between(first, last)
                except RecordError:  # rows gone (a gap raises again below, as it should)
                    break
                changed = next((i for i, leaf in enumerate(rows, first)
                                if leaf != self._tree.leaf(i)), None)
                if changed is not None:
                    break
            else:
                self._audit_at = stop
                return
        _log.error("record_row_changed", index=changed, tree_size=held, rows=size,
                   why="the record's rows no longer hash to the leaves appended (a row "
                   "changed, or rows are gone); the tree is rebuilt from the rows, and the "
                   "next checkpoint signs them as they are: every party's witness will "
                   "report the fork")
        self._tree = MerkleTree(await self._record.leaves_between(0, size))  # every row
        self._audit_at = 0

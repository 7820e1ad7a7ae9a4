"""The record's Merkle tree as the gateway holds it (treatyflow/record/tree.py): the same
root as the rows give, each checkpoint reading only the new rows and one audit slice, and
a row rewritten in the database found within the slices that cover it, after which the
tree says what the rows say (so every party's witness sees the fork)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import RECORD_KEYS, record_entry
from treatyflow.record import Record
from treatyflow.record.tree import LogTree


@pytest_asyncio.fixture
async def record(tmp_path: Path) -> AsyncIterator[Record]:
    async with await Record.open(f"sqlite+aiosqlite:///{tmp_path / 'record.sqlite3'}",
                                 RECORD_KEYS) as opened:
        yield opened


def _reads(record: Record, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The row ranges the tree reads from the record, as it reads them."""
    ranges: list[tuple[int, int]] = []
    read = record.leaves_between

    async def counted(start: int, stop: int) -> list[bytes]:
        ranges.append((start, stop))
        return await read(start, stop)

    monkeypatch.setattr(record, "leaves_between", counted)
    return ranges


async def test_the_held_tree_has_the_roots_the_rows_give(record: Record) -> None:
    tree = LogTree(record)
    await record.append([record_entry("R-1", n) for n in range(5)])
    assert (await tree.now()).root() == (await record.tree()).root()
    await record.append([record_entry("R-1", n) for n in range(5, 12)])
    held = await tree.now()
    assert held.size == 12 and held.root() == (await record.tree()).root()
    assert held.consistency_proof(5) == (await record.tree()).consistency_proof(5)
    assert (await tree.of(12)) is held  # a proof's tree is the same one, not a rebuild


async def test_a_checkpoint_reads_the_new_rows_and_one_slice_not_the_whole_log(
    record: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = LogTree(record, audit_slice=4)
    await record.append([record_entry("R-1", n) for n in range(10)])
    await tree.now()
    reads = _reads(record, monkeypatch)
    await record.append([record_entry("R-1", n) for n in range(10, 13)])
    await tree.now()
    await tree.now()
    # the slice and the last row held, then the new rows; the next slice and last row
    assert reads == [(0, 4), (9, 10), (10, 13), (4, 8), (12, 13)]


async def test_a_rewritten_row_is_found_by_its_slice_and_the_tree_follows_the_rows(
    record: Record, tmp_path: Path
) -> None:
    tree = LogTree(record, audit_slice=3)
    await record.append([record_entry("R-1", n) for n in range(8)])
    before = (await tree.now()).root()  # audits nothing yet: the tree was empty
    with sqlite3.connect(tmp_path / "record.sqlite3") as db:  # the operator rewrites #4
        changed = db.execute("UPDATE record_entries SET actor = 'RU-MIA' WHERE log_index = 4"
                             ).rowcount
    assert changed == 1
    rows_root = (await record.tree()).root()
    assert rows_root != before
    seen = [(await tree.now()).root() for _ in range(2)]  # slices [0,3), then [3,6)
    assert seen == [before, rows_root]
    assert (await tree.now()).root() == rows_root  # and it stays with the rows


async def test_rows_gone_from_the_end_make_the_tree_shrink_as_the_rows_did(
    record: Record, tmp_path: Path
) -> None:
    tree = LogTree(record, audit_slice=3)
    await record.append([record_entry("R-1", n) for n in range(6)])
    await tree.now()
    with sqlite3.connect(tmp_path / "record.sqlite3") as db:  # the last two rows deleted
        db.execute("DELETE FROM record_entries WHERE log_index >= 4")
    shrunk = await tree.now()
    assert shrunk.size == 4 and shrunk.root() == (await record.tree()).root()


async def test_a_log_cut_short_and_grown_again_is_found_at_the_next_checkpoint(
    record: Record, tmp_path: Path
) -> None:
    """Rows deleted from the end (a backup restored), then new ones appended past the old
    size before the next checkpoint: the row at the old end differs, whatever the slice."""
    tree = LogTree(record, audit_slice=2)
    await record.append([record_entry("R-1", n) for n in range(12)])
    await tree.now()
    with sqlite3.connect(tmp_path / "record.sqlite3") as db:
        db.execute("DELETE FROM record_entries WHERE log_index >= 10")
    await record.append([record_entry("R-2", n) for n in range(3)])  # indexes 10 to 12
    assert (await tree.now()).root() == (await record.tree()).root()

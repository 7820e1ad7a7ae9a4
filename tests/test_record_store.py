"""The record's store, on SQLite and on PostgreSQL: each entry written once, in log order,
under concurrent writers; bodies sealed at rest; checkpoints signed by the hub; an altered
row caught against a checkpoint a party held."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import RECORD_KEYS, TEST_KEYS, record_entry
from treatyflow import constants as c
from treatyflow.agency.entries import signed_payload
from treatyflow.agency.merkle import MerkleTree, ProofError, leaf_hash, verify_consistency
from treatyflow.agency.signing import SignatureError
from treatyflow.record import (
    EntryConflict,
    Record,
    RecordCorrupt,
    checkpoint_every,
    read_checkpoint,
)
from treatyflow.settings import Settings

HUB = TEST_KEYS.private[c.HUB_SENDER]


async def test_a_retried_append_writes_nothing_again(record: Record) -> None:
    first = await record.append([record_entry("R-1", n) for n in range(3)])
    assert [e.index for e in first] == [0, 1, 2]
    again = await record.append([record_entry("R-1", n) for n in range(3)])  # a later clock
    assert [e.index for e in again] == [0, 1, 2]
    assert [e.time for e in again] == [e.time for e in first]
    mixed = await record.append([record_entry("R-1", 1), record_entry("R-1", 3),
                                 record_entry("R-1", 3)])
    assert [e.index for e in mixed] == [1, 3, 3]
    assert await record.size() == 4


async def test_an_entry_id_written_with_other_content_is_refused(record: Record) -> None:
    await record.append([record_entry("R-1", 0)])
    changed = record_entry("R-1", 0, body="other facts")
    with pytest.raises(EntryConflict, match="another digest"):
        await record.append([changed])
    assert await record.size() == 1


async def test_concurrent_appenders_never_share_an_index(record_url: str) -> None:
    """Six writers, each with its own engine (as the gateway and the workers have), append
    at once, two of them retrying the other's entries meanwhile: the log stays dense, each
    entry is in it once, and each request's entries keep the order they were written in."""
    writers = [await Record.open(record_url, RECORD_KEYS) for _ in range(6)]
    try:
        async def write(w: int) -> list[int]:
            indexes = []
            for n in range(12):
                [entry] = await writers[w].append([record_entry(f"R-{w}", n)])
                indexes.append(entry.index)
                if w >= 4:  # a retry racing the original writer
                    await writers[w].append([record_entry(f"R-{w - 4}", n)])
            return indexes

        written = await asyncio.gather(*(write(w) for w in range(6)))
    finally:
        for writer in writers:
            await writer.close()
    async with await Record.open(record_url, RECORD_KEYS) as record:
        assert await record.size() == 72
        every = sorted(i for indexes in written for i in indexes)
        assert every == list(range(72))
        for w, indexes in enumerate(written):
            assert indexes == sorted(indexes)
            assert [e.index for e in await record.entries(f"R-{w}")] == indexes


async def test_a_body_is_never_stored_in_clear(record: Record, record_url: str,
                                               tmp_path: Path) -> None:
    marker = "the witness lives at 12 Abai avenue"
    [entry] = await record.append([record_entry("R-1", 0, body=marker)])
    jws = record_entry("R-1", 0, body=marker).jws
    encoded = jws.split(".")[1]
    async with record.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM record_entries"))).all()
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in rows[0])
    assert marker.encode() not in stored and encoded.encode() not in stored
    if record_url.startswith("sqlite"):
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert marker.encode() not in on_disk and encoded.encode() not in on_disk
    [read] = await record.entries("R-1")
    assert read.jws == jws and marker.encode() in signed_payload(read.jws)
    assert read.digest == entry.digest


async def test_a_store_opened_again_keeps_its_entries_at_the_newest_schema(
        record: Record, record_url: str) -> None:
    await record.append([record_entry("R-1", n) for n in range(3)])
    async with await Record.open(record_url, RECORD_KEYS) as again:
        assert await again.size() == 3
        async with again.engine.connect() as connection:
            version = (await connection.execute(
                text("SELECT version_num FROM record_alembic_version"))).scalar_one()
    assert version == "r0002"  # the newest revision (r0002: record_receipts_sent)


async def test_the_tree_is_the_rfc_tree_of_the_entries_leaves(record: Record) -> None:
    entries = await record.append([record_entry(f"R-{n % 3}", n) for n in range(9)])
    tree = await record.tree()
    assert tree.root() == MerkleTree([leaf_hash(e.leaf()) for e in entries]).root()
    assert (await record.tree(5)).root() == tree.root(5)
    assert [e.index for e in await record.entries("R-1")] == [1, 4, 7]


async def test_a_checkpoint_is_signed_by_the_hub(record: Record) -> None:
    await record.append([record_entry("R-1", n) for n in range(4)])
    signed = await record.checkpoint(HUB)
    checkpoint = read_checkpoint(signed.jws, TEST_KEYS.ring)
    assert (checkpoint.tree_size, checkpoint.root) == (4, (await record.tree()).root())
    assert [s.jws for s in await record.checkpoints()] == [signed.jws]
    head, payload, signature = signed.jws.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}"
    with pytest.raises(SignatureError):
        read_checkpoint(forged, TEST_KEYS.ring)
    by_authority = await record.checkpoint(TEST_KEYS.private["KZ-GPO"])
    with pytest.raises(SignatureError, match="not a key of HUB"):
        read_checkpoint(by_authority.jws, TEST_KEYS.ring)


async def test_checkpoints_are_signed_at_a_fixed_interval(record: Record) -> None:
    await record.append([record_entry("R-1", 0)])
    task = asyncio.create_task(checkpoint_every(lambda: record.checkpoint(HUB), 0.1))
    await asyncio.sleep(0.45)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 4 <= len(await record.checkpoints()) <= 6


async def test_an_altered_row_fails_against_a_checkpoint_a_party_held(record: Record) -> None:
    await record.append([record_entry("R-1", n) for n in range(5)])
    held = (await record.checkpoint(HUB)).checkpoint
    await record.append([record_entry("R-2", n) for n in range(3)])
    assert await record.audit(held) == []
    async with record.engine.begin() as connection:
        await connection.execute(text(
            "UPDATE record_entries SET actor = 'RU-GPO' WHERE log_index = 2"))
    assert "altered" in " ".join(await record.audit(held))
    later = (await record.checkpoint(HUB)).checkpoint
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_consistency(held.tree_size, later.tree_size, await record.consistency(5),
                           held.root, later.root)


async def test_an_altered_ciphertext_is_reported_not_read(record: Record) -> None:
    await record.append([record_entry("R-1", 0)])
    async with record.engine.connect() as connection:
        sealed = (await connection.execute(text("SELECT sealed FROM record_entries"))
                  ).scalar_one()
    changed = bytes(sealed[:-1]) + bytes([sealed[-1] ^ 1])
    async with record.engine.begin() as connection:
        await connection.execute(text("UPDATE record_entries SET sealed = :s"), {"s": changed})
    with pytest.raises(RecordCorrupt, match="index 0"):
        await record.entries("R-1")


def test_the_store_is_the_state_folders_sqlite_file_unless_configured(tmp_path: Path) -> None:
    default = Settings.from_env({"TREATYFLOW_STATE_DIR": str(tmp_path)})
    assert default.record_database_url == f"sqlite+aiosqlite:///{tmp_path}/record.sqlite3"
    url = "postgresql+asyncpg://hub@db.example/record"
    configured = Settings.from_env({"TREATYFLOW_RECORD_URL": url})
    assert configured.record_database_url == url
    assert Settings.from_env(configured.to_env()).record_database_url == url
    assert url not in repr(configured)

"""The record's store: entries appended once each in log order, read back with their tree.

SQLite (the embedded default, a file under the state folder) or PostgreSQL (the
deployment store), through SQLAlchemy's async engine; the schema is brought to the
newest Alembic revision when the store is opened. One appender at a time takes the next
index: SQLite by ``BEGIN IMMEDIATE`` (its one writer), PostgreSQL by a transaction-scoped
advisory lock, so concurrent writers in any number of processes never share an index.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from cryptography.exceptions import InvalidTag
from sqlalchemy import bindparam, create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from temporalio.api.common.v1 import Payload

from treatyflow import logs
from treatyflow.agency.entries import Entry, NewEntry
from treatyflow.agency.merkle import MerkleTree, leaf_hash
from treatyflow.agency.signing import SigningKey
from treatyflow.codec import ENCODING, EncryptionCodec, PayloadDecodeError, PayloadKeys
from treatyflow.record.checkpoints import Checkpoint, SignedCheckpoint, sign_checkpoint
from treatyflow.record.tables import CheckpointRow, EntryRow, ReceiptsSentRow

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_SECONDS = 30.0  # how long a writer waits for SQLite's one write lock
_WRITE = "treatyflow_record_write"  # execution option: this transaction appends
_LOCK = "treatyflow.record"  # the PostgreSQL advisory lock's name (hashtext of it)
_FIELDS = (EntryRow.log_index, EntryRow.entry_id, EntryRow.request_id, EntryRow.procedure,
           EntryRow.treaty, EntryRow.actor, EntryRow.kind, EntryRow.at, EntryRow.digest)
# An append's statements, built once (building them anew cost more than running them).
_HELD = select(*_FIELDS).where(EntryRow.entry_id.in_(bindparam("ids", expanding=True)))
_NEXT_INDEX = select(func.coalesce(func.max(EntryRow.log_index) + 1, 0))
_INSERT = insert(EntryRow)
_BY_ID = select(*_FIELDS, EntryRow.sealed).where(EntryRow.entry_id == bindparam("id"))

_log = logs.get("treatyflow.record")


class RecordError(RuntimeError):
    """The record cannot do what was asked; the message says why."""


class EntryConflict(RecordError):
    """An entry id written before with other content: a writer's bug, never a retry."""


class RecordCorrupt(RecordError):
    """What the store holds is not what the record wrote (a gap, an altered ciphertext)."""


def _engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_pre_ping=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
    if engine.url.database and engine.url.database != ":memory:":
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    _sqlite_rules(engine.sync_engine)
    return engine


def _appender(engine: AsyncEngine) -> Engine | None:
    """For SQLite, a synchronous engine on the same file that appends in a thread of its
    own: aiosqlite hops to its thread and back for every statement, and an append's five
    statements (begin, two selects, insert, commit) in one hop cost a third of the CPU
    (docs/design.md, "The record's cost"). PostgreSQL (asyncpg) needs none."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    sync = create_engine(engine.url.set(drivername="sqlite"),
                         connect_args={"timeout": SQLITE_BUSY_SECONDS,
                                       "check_same_thread": False})
    _sqlite_rules(sync)
    return sync


def _sqlite_rules(engine: Engine) -> None:
    """WAL (readers never wait for the writer) and ``BEGIN IMMEDIATE`` for a transaction
    that appends (the one write lock taken before the next index is read)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, says BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        writes = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _leaf_hashes(rows: list[Any], start: int, stop: int) -> list[bytes]:
    """The leaf hashes of the rows at ``start`` to ``stop - 1``, each recomputed from its
    stored fields; a gap or a short log raises."""
    hashes = []
    for at, row in enumerate(rows, start):
        if row.log_index != at:
            raise RecordCorrupt(f"the log has no entry at index {at} (next is "
                                f"{row.log_index})")
        hashes.append(leaf_hash(_entry(row).leaf()))
    if len(hashes) != stop - start:
        raise RecordError(f"the log holds {start + len(hashes)} entries, not {stop}")
    return hashes


def _entry(row: Any) -> Entry:
    return Entry(index=row.log_index, entry_id=row.entry_id, request_id=row.request_id,
                 procedure=row.procedure, treaty=row.treaty, actor=row.actor, kind=row.kind,
                 time=row.at, digest=row.digest)


class Record:
    """The hub's record on one database (``Record.open(settings.record_database_url, keys)``)."""

    def __init__(self, engine: AsyncEngine, keys: PayloadKeys) -> None:
        self._engine = engine
        self._appends = _appender(engine)
        self._codec = EncryptionCodec(keys)

    @classmethod
    async def open(cls, url: str, keys: PayloadKeys) -> Record:
        """The record at ``url``, its schema migrated to the newest revision."""
        record = cls(_engine(url), keys)
        try:
            async with record._writing() as connection:
                await connection.run_sync(_upgrade)
        except BaseException:
            await record.close()
            raise
        return record

    async def close(self) -> None:
        if self._appends is not None:
            self._appends.dispose()
        await self._engine.dispose()

    async def __aenter__(self) -> Record:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that holds the record's one write lock until it ends."""
        async with self._engine.connect() as connection:
            await connection.execution_options(**{_WRITE: True})
            async with connection.begin():
                if self._engine.dialect.name == "postgresql":
                    await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"),
                                             {"n": _LOCK})
                yield connection

    # --- writing -----------------------------------------------------------------------

    async def append(self, entries: Sequence[NewEntry]) -> list[Entry]:
        """Append ``entries`` in their order, each at the next index; an entry whose id is
        already in the record is not written again and its stored form is returned (a
        retried write). Returns one entry per given entry, in the same order."""
        if not entries:
            return []
        by_id: dict[str, NewEntry] = {}
        for new in entries:
            by_id.setdefault(new.entry_id, new)
        sealed = {entry_id: self._seal(new.jws) for entry_id, new in by_id.items()}
        if self._appends is not None:
            written = await asyncio.to_thread(self._append_sqlite, by_id, sealed)
        else:
            async with self._writing() as connection:
                written = await connection.run_sync(self._append_rows, by_id, sealed)
        return [written[new.entry_id] for new in entries]

    def _append_sqlite(self, by_id: dict[str, NewEntry], sealed: dict[str, bytes]
                       ) -> dict[str, Entry]:
        assert self._appends is not None
        with self._appends.connect() as connection:
            connection = connection.execution_options(**{_WRITE: True})
            with connection.begin():
                return self._append_rows(connection, by_id, sealed)

    def _entry_sqlite(self, entry_id: str) -> Any:
        assert self._appends is not None
        with self._appends.connect() as connection:
            return connection.execute(_BY_ID, {"id": entry_id}).first()

    def _append_rows(self, connection: Connection, by_id: dict[str, NewEntry],
                     sealed: dict[str, bytes]) -> dict[str, Entry]:
        """The append itself, inside the transaction that holds the write lock."""
        held = {row.entry_id: _entry(row)
                for row in connection.execute(_HELD, {"ids": list(by_id)})}
        at = connection.execute(_NEXT_INDEX).scalar_one()
        written: dict[str, Entry] = {}
        rows = []
        for new in by_id.values():
            digest = new.digest()
            if new.entry_id in held:
                written[new.entry_id] = self._same(held[new.entry_id], new, digest)
                continue
            written[new.entry_id] = Entry(index=at, digest=digest, jws=new.jws,
                                          **new.model_dump(exclude={"jws"}))
            rows.append({"log_index": at, "entry_id": new.entry_id,
                         "request_id": new.request_id, "procedure": new.procedure,
                         "treaty": new.treaty, "actor": new.actor, "kind": new.kind,
                         "at": new.time, "digest": digest, "sealed": sealed[new.entry_id]})
            at += 1
        if rows:
            connection.execute(_INSERT, rows)
        _log.debug("record_appended", written=len(rows), again=len(by_id) - len(rows),
                   tree_size=at)
        return written

    @staticmethod
    def _same(stored: Entry, new: NewEntry, digest: str) -> Entry:
        """The stored entry, if ``new`` is the same event written again (its time may be
        later: a retry re-reads the clock); else EntryConflict."""
        fields = ("request_id", "procedure", "treaty", "actor", "kind")
        differs = [f for f in fields if getattr(stored, f) != getattr(new, f)]
        if stored.digest != digest:
            differs.append("digest")
        if differs:
            raise EntryConflict(f"entry {new.entry_id} is in the record (index {stored.index}) "
                                f"with another {', '.join(differs)}")
        return stored.model_copy(update={"jws": new.jws})

    def _seal(self, jws: str) -> bytes:
        return self._codec.encrypt(Payload(data=jws.encode())).SerializeToString()

    def _unseal(self, entry: Entry, sealed: bytes) -> str:
        try:
            payload = Payload.FromString(sealed)
            if payload.metadata.get("encoding") != ENCODING:
                raise PayloadDecodeError("stored in clear")
            return self._codec.decrypt(payload).data.decode()
        except (PayloadDecodeError, InvalidTag, ValueError) as err:
            raise RecordCorrupt(f"entry {entry.entry_id} (index {entry.index}): its sealed "
                                f"JWS cannot be read: {err}") from err

    # --- reading -----------------------------------------------------------------------

    async def entries(self, request_id: str) -> list[Entry]:
        """The request's entries in log order, each with its JWS decrypted."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(*_FIELDS, EntryRow.sealed).where(EntryRow.request_id == request_id)
                .order_by(EntryRow.log_index))
            out = []
            for row in rows:
                entry = _entry(row)
                out.append(entry.model_copy(update={"jws": self._unseal(entry, row.sealed)}))
            return out

    async def entry(self, entry_id: str, *, jws: bool = True) -> Entry | None:
        """One entry by its id (the gateway asks for one a message at a time: a retrieval's
        notice), read in one hop as appends are; ``jws=False``: without its JWS (nothing
        decrypted)."""
        if self._appends is not None:
            row = await asyncio.to_thread(self._entry_sqlite, entry_id)
        else:
            async with self._engine.connect() as connection:
                row = (await connection.execute(_BY_ID, {"id": entry_id})).first()
        if row is None:
            return None
        entry = _entry(row)
        if not jws:
            return entry
        return entry.model_copy(update={"jws": self._unseal(entry, row.sealed)})

    async def log(self) -> list[Entry]:
        """Every entry in log order, without its JWS (what an auditor rebuilds the tree from)."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(select(*_FIELDS).order_by(EntryRow.log_index))
            return [_entry(row) for row in rows]

    async def size(self) -> int:
        async with self._engine.connect() as connection:
            return int((await connection.execute(
                select(func.count()).select_from(EntryRow))).scalar_one())

    async def tree(self, size: int | None = None) -> MerkleTree:
        """The Merkle tree of the first ``size`` entries (all by default), each leaf
        recomputed from the entry's stored fields: an altered row changes the root."""
        return MerkleTree(await self.leaves_between(0, await self.size() if size is None
                                                   else size))

    async def leaves_between(self, start: int, stop: int) -> list[bytes]:
        """The RFC 9162 leaf hashes of the entries at ``start`` to ``stop - 1``, recomputed
        from their stored fields (what extends a tree kept in memory)."""
        query = (select(*_FIELDS).where(EntryRow.log_index >= start, EntryRow.log_index < stop)
                 .order_by(EntryRow.log_index))
        if self._appends is not None:  # read and hashed in a thread, off the event loop
            return await asyncio.to_thread(
                lambda: _leaf_hashes(self._rows_sync(query), start, stop))
        async with self._engine.connect() as connection:
            rows = list(await connection.execute(query))
        return await asyncio.to_thread(_leaf_hashes, rows, start, stop)

    def _rows_sync(self, query: Any) -> list[Any]:
        assert self._appends is not None
        with self._appends.connect() as connection:
            return list(connection.execute(query))

    async def consistency(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 9162's consistency proof from the tree of ``first`` entries to that of
        ``second`` (the whole log by default)."""
        return (await self.tree(second)).consistency_proof(first)

    # --- checkpoints -------------------------------------------------------------------

    async def checkpoint(self, key: SigningKey, tree: MerkleTree | None = None
                         ) -> SignedCheckpoint:
        """Sign a checkpoint of ``tree`` (the log as it is now by default) with the hub's
        ``key`` and keep it."""
        tree = tree or await self.tree()
        signed = sign_checkpoint(tree.size, tree.root(), key)
        await self.keep(signed)
        return signed

    async def keep(self, signed: SignedCheckpoint) -> None:
        """Keep a checkpoint the hub signed (one the receipts task signed of its batch)."""
        async with self._engine.begin() as connection:
            await connection.execute(insert(CheckpointRow).values(
                tree_size=signed.checkpoint.tree_size, root_hash=signed.checkpoint.root_hash,
                at=signed.checkpoint.time, jws=signed.jws))

    async def checkpoints(self) -> list[SignedCheckpoint]:
        """Every checkpoint the hub signed, oldest first."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(select(CheckpointRow).order_by(CheckpointRow.id))
            return [SignedCheckpoint(
                checkpoint=Checkpoint(tree_size=row.tree_size, root_hash=row.root_hash,
                                      time=row.at), jws=row.jws) for row in rows]

    async def latest_checkpoint(self, tree_size: int | None = None
                                ) -> SignedCheckpoint | None:
        """The newest checkpoint the hub signed (of ``tree_size`` entries, if given)."""
        query = select(CheckpointRow).order_by(CheckpointRow.id.desc()).limit(1)
        if tree_size is not None:
            query = query.where(CheckpointRow.tree_size == tree_size)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            return None
        return SignedCheckpoint(checkpoint=Checkpoint(
            tree_size=row.tree_size, root_hash=row.root_hash, time=row.at), jws=row.jws)

    async def audit(self, held: Checkpoint) -> list[str]:
        """What is wrong with the log as it is now, seen from a checkpoint a party held:
        shorter than it, or its first entries no longer hashing to its root."""
        tree = await self.tree()
        if tree.size < held.tree_size:
            return [f"the log holds {tree.size} entries, fewer than the {held.tree_size} of "
                    f"the checkpoint of {held.time}: entries were removed"]
        if tree.root(held.tree_size) != held.root:
            return [f"the log's first {held.tree_size} entries no longer hash to the root of "
                    f"the checkpoint of {held.time}: an entry before it was altered"]
        return []


    # --- receipts (treatyflow.workers.receipts) ----------------------------------------

    async def since(self, start: int, limit: int, max_bytes: int = 32 * 1024 * 1024
                    ) -> list[Entry]:
        """Up to ``limit`` entries from index ``start`` on, in log order, each with its
        JWS decrypted: what the receipts task reads each tick. Ends before a gap, and once
        the sealed bytes read pass ``max_bytes`` (at least one entry: a backlog of large
        messages is read a bounded slice at a time). On SQLite in one hop to a thread, as
        an append is (aiosqlite would hop for every slice of rows)."""
        query = (select(*_FIELDS, EntryRow.sealed).where(EntryRow.log_index >= start)
                 .order_by(EntryRow.log_index).limit(limit).execution_options(yield_per=200))
        if self._appends is not None:
            return await asyncio.to_thread(self._since_sync, query, start, max_bytes)
        batch = _Slice(self, start, max_bytes)
        async with self._engine.connect() as connection:
            rows = await connection.stream(query)
            async for row in rows:  # streamed: stops reading at the bound
                if not batch.take(row):
                    break
        return batch.entries

    def _since_sync(self, query: Any, start: int, max_bytes: int) -> list[Entry]:
        assert self._appends is not None
        batch = _Slice(self, start, max_bytes)
        with self._appends.connect() as connection:
            for row in connection.execute(query):
                if not batch.take(row):
                    break
        return batch.entries

    async def leaf_hashes(self, size: int) -> AsyncIterator[bytes]:
        """The leaf hashes of the first ``size`` entries, streamed from the rows (each
        leaf recomputed from the row's fields, as ``tree`` does)."""
        async with self._engine.connect() as connection:
            rows = await connection.stream(
                select(*_FIELDS).where(EntryRow.log_index < size)
                .order_by(EntryRow.log_index).execution_options(yield_per=2000))
            at = 0
            async for row in rows:
                if row.log_index != at:
                    raise RecordCorrupt(f"the log has no entry at index {at}")
                yield leaf_hash(_entry(row).leaf())
                at += 1
            if at < size:
                raise RecordError(f"the log holds {at} entries, not {size}")

    async def receipts_sent(self) -> int:
        """The tree size below which every entry's receipts were published (0 at first)."""
        async with self._engine.connect() as connection:
            found = (await connection.execute(select(ReceiptsSentRow.tree_size).where(
                ReceiptsSentRow.name == "receipts"))).scalar_one_or_none()
        return 0 if found is None else int(found)

    async def note_receipts_sent(self, size: int) -> None:
        """Every entry below ``size`` had its receipts published (never goes back)."""
        async with self._writing() as connection:
            done = await connection.execute(
                update(ReceiptsSentRow).where(ReceiptsSentRow.name == "receipts",
                                              ReceiptsSentRow.tree_size < size)
                .values(tree_size=size))
            if done.rowcount == 0 and (await connection.execute(
                    select(ReceiptsSentRow.tree_size).where(
                        ReceiptsSentRow.name == "receipts"))).first() is None:
                await connection.execute(insert(ReceiptsSentRow).values(
                    name="receipts", tree_size=size))


class _Slice:
    """The entries ``Record.since`` reads: dense from ``start``, up to ``max_bytes``."""

    def __init__(self, record: Record, start: int, max_bytes: int) -> None:
        self._record, self._start, self._max = record, start, max_bytes
        self.entries: list[Entry] = []
        self._read = 0

    def take(self, row: Any) -> bool:
        """Add ``row`` unless it is past a gap or the bound (then False: stop reading)."""
        if row.log_index != self._start + len(self.entries) or (
                self.entries and self._read >= self._max):
            return False
        self._read += len(row.sealed)
        entry = _entry(row)
        self.entries.append(entry.model_copy(
            update={"jws": self._record._unseal(entry, row.sealed)}))
        return True

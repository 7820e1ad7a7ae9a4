"""What an append to the hub's record costs its writer, in CPU per entry.

    python -m treatyflow.bench.record [--entries N] [--url URL]

Appends N entries (a signed notice's size) to a fresh record, one at a time as a quiet
hub writes them and in batches of 10 as the group commit writes them under load, and
prints the writer process's CPU milliseconds per entry (every thread's: the event loop's
and the one SQLite appends in), beside the floor of the same rows inserted with the
sqlite3 module alone. CPU time, not wall time: it does not depend on what else the
machine does. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from treatyflow import logs
from treatyflow.agency.entries import NewEntry, entry_id, record_time
from treatyflow.codec import generate_keys
from treatyflow.record.store import Record

# A compact JWS of a notice's size (its bytes are sealed, not verified, by an append).
_JWS = "eyJhbGciOiJFZERTQSIsImtpZCI6Imh1Yi0xIn0." + "eyJ4IjoiYWJjIn0" * 60 + ".c2ln"


def _entries(n: int, tag: str) -> list[NewEntry]:
    now = record_time(datetime.now(UTC))
    return [NewEntry(entry_id=entry_id(tag, str(i)), request_id=f"KZ-GPO-BENCH-{i % 50}",
                     procedure="assistance", treaty="sco-2002", actor="RU-MIA",
                     kind="delivered", time=now, jws=_JWS) for i in range(n)]


async def _appends(url: str, n: int, batch: int) -> float:
    record = await Record.open(url, generate_keys())
    try:
        entries = _entries(n, f"b{batch}")
        start = time.process_time()
        for at in range(0, n, batch):
            await record.append(entries[at:at + batch])
        return (time.process_time() - start) * 1000 / n
    finally:
        await record.close()


def _floor(path: Path, n: int) -> float:
    """The same rows with the sqlite3 module alone: one transaction each, WAL."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, entry_id TEXT UNIQUE, request_id TEXT,"
               " kind TEXT, at TEXT, digest TEXT, sealed BLOB)")
    blob = _JWS.encode()
    start = time.process_time()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("SELECT i FROM t WHERE entry_id = ?", (f"e{i}",)).fetchall()
        at = db.execute("SELECT coalesce(max(i) + 1, 0) FROM t").fetchone()[0]
        db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (at, f"e{i}", "r", "delivered", "t", "0" * 64, blob))
        db.execute("COMMIT")
    db.close()
    return (time.process_time() - start) * 1000 / n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--url", help="a record database (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    logs.configure("warning")
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite+aiosqlite:///{folder}/record.db"
        one = asyncio.run(_appends(url, args.entries, 1))
        ten = asyncio.run(_appends(url, args.entries, 10))
        floor = _floor(Path(folder) / "floor.db", args.entries)
    figures = {"cpu_ms_per_entry_one_at_a_time": round(one, 3),
               "cpu_ms_per_entry_batches_of_10": round(ten, 3),
               "cpu_ms_per_entry_sqlite3_floor": round(floor, 3),
               "ratio_floor_to_one_at_a_time": round(floor / one, 3)}
    print(f"one at a time: {one:.2f} ms CPU per entry; in batches of 10: {ten:.2f}; "
          f"sqlite3 alone: {floor:.2f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""What the receipts task costs the gateway in CPU, per receipt and per batch.

    python -m treatyflow.bench.receipts [--log N] [--batch B] [--batches K]

A log of N entries already sent, then K batches of B new entries (each a message accepted,
one acceptance receipt): per batch, the frontier extended by the new leaves (root, every
new leaf's inclusion proof, the next frontier), one checkpoint signed, and each receipt
built and signed. Printed as CPU microseconds per receipt (process time, whatever else
the machine does), beside what rebuilding the whole tree from every leaf for each batch
would cost instead (what ``Record.tree()`` does), and the one-off start (the frontier of
N rows' leaves). Database reads and the broker's publishes are not in it: they are the
same with either tree.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime

from treatyflow.agency.checkpoints import sign_checkpoint
from treatyflow.agency.entries import Entry, entry_id, record_time
from treatyflow.agency.merkle import MerkleTree, leaf_hash
from treatyflow.agency.receipts import About
from treatyflow.agency.signing import SigningKey
from treatyflow.record.compact import Frontier
from treatyflow.record.receipts import Owed, receipt, receipt_message, split
from treatyflow.schemas.limits import RECEIPT_MESSAGE_MAX_BYTES, RECEIPTS_PER_MESSAGE_MAX


def _entry(index: int) -> Entry:
    return Entry(index=index, entry_id=entry_id("sco-2010", f"R-{index // 4}", str(index)),
                 request_id=f"KZ-GPO-{index // 4:010d}", procedure="assistance",
                 treaty="sco-2010", actor="KZ-GPO", kind="execution_report",
                 time=record_time(datetime.now(UTC)), digest=os.urandom(32).hex())


def measure(log: int, batch: int, batches: int) -> dict[str, float]:
    key = SigningKey.generate("HUB-bench-1")
    leaves = [leaf_hash(os.urandom(60)) for _ in range(log)]
    began = time.process_time()
    frontier = Frontier.of(leaves)
    start_s = time.process_time() - began
    tree_s = sign_s = rebuild_s = 0.0
    for k in range(batches):
        entries = [_entry(log + k * batch + n) for n in range(batch)]
        new = [leaf_hash(e.leaf()) for e in entries]
        began = time.process_time()
        extended = frontier.extend(new)
        checkpoint = sign_checkpoint(extended.size, extended.root(), key)
        proofs = [extended.inclusion_proof(e.index) for e in entries]
        frontier = extended.frontier()
        tree_s += time.process_time() - began
        began = time.process_time()
        items = [receipt(e, Owed("acceptance", e.actor, [About(message_id=str(e.index),
                                                               digest=e.digest)]), proof)
                 for e, proof in zip(entries, proofs, strict=True)]
        for part in split(items, checkpoint, RECEIPTS_PER_MESSAGE_MAX,
                          RECEIPT_MESSAGE_MAX_BYTES):
            receipt_message("KZ-GPO", part, checkpoint, key)
        sign_s += time.process_time() - began
        leaves += new
        began = time.process_time()
        whole = MerkleTree(leaves)
        whole.root()
        for e in entries:
            whole.inclusion_proof(e.index)
        rebuild_s += time.process_time() - began
    receipts = batch * batches
    return {"log": log, "batch": batch, "batches": batches,
            "start_ms": round(start_s * 1e3, 1),
            "tree_us_per_receipt": round(tree_s / receipts * 1e6, 1),
            "receipt_us_per_receipt": round(sign_s / receipts * 1e6, 1),
            "total_us_per_receipt": round((tree_s + sign_s) / receipts * 1e6, 1),
            "rebuild_us_per_receipt": round(rebuild_s / receipts * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=int, default=100_000, help="entries already sent")
    parser.add_argument("--batch", type=int, default=500, help="new entries per batch")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.log, args.batch, args.batches)))


if __name__ == "__main__":
    main()

"""The record's side of ``make chaos``: every accepted message and every delivered notice has
exactly one entry, and the whole Merkle log verifies against the checkpoints the hub signed.

Pure checks over what the record holds (``tally``, ``log_problems``), and ``check`` that
reads the chaos stack's record once the faults are over.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from treatyflow.agency.entries import DEADLINE, DELIVERED, ENTRY_KINDS
from treatyflow.agency.merkle import MerkleTree, ProofError, leaf_hash, verify_consistency
from treatyflow.agency.signing import KeySource, SignatureError
from treatyflow.codec import load_keys
from treatyflow.record import Entry, Record, SignedCheckpoint, entry_id, read_checkpoint
from treatyflow.record.checkpoints import Checkpoint
from treatyflow.schemas.messages import InboundMessage, NoticeMessage
from treatyflow.settings import Settings

NOTICE_KINDS = frozenset({DELIVERED, DEADLINE})


@dataclass(frozen=True)
class Owed:
    """An entry the record owes once: its id (as the writers derive it), the kinds and the
    actor it must have, and what it stands for (named in a finding)."""

    entry_id: str
    kinds: frozenset[str]
    actor: str
    what: str


def accepted(message: InboundMessage) -> Owed:
    """The entry of a message a workflow applied: its kind, its sender as the actor."""
    return Owed(entry_id(message.treaty_id, message.request_id, message.message_id),
                frozenset({message.kind}), message.sender,
                f"{message.kind} {message.message_id} of {message.request_id}")


def delivered(notice: NoticeMessage) -> Owed:
    """The entry of a notice its recipient received: delivered (or a deadline reached),
    the recipient as the actor."""
    return Owed(entry_id(notice.treaty_id, notice.request_id, notice.message_id),
                NOTICE_KINDS, notice.recipient,
                f"notice {notice.body.event} {notice.message_id} to {notice.recipient}")


@dataclass
class Tally:
    """What the record lacks and what it holds more than once."""

    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)


def tally(entries: Sequence[Entry], owed: Iterable[Owed]) -> Tally:
    """Each owed entry found exactly once (its id, kind and actor), and no message written
    twice under two entry ids (the same request, kind, actor and digest)."""
    by_id: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_id[entry.entry_id].append(entry)
    out = Tally()
    for owe in {o.entry_id: o for o in owed}.values():
        found = [e for e in by_id.get(owe.entry_id, ())
                 if e.kind in owe.kinds and e.actor == owe.actor]
        if not found:
            other = [f"{e.kind} by {e.actor}" for e in by_id.get(owe.entry_id, ())]
            out.lost.append(f"{owe.what}: no entry" + (f" (only {', '.join(other)})"
                                                       if other else ""))
        elif len(found) > 1:
            out.duplicated.append(f"{owe.what}: {len(found)} entries, at "
                                  f"{', '.join(str(e.index) for e in found)}")
    same: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for entry in entries:
        if entry.kind not in ENTRY_KINDS:  # a message as its sender signed it
            same[(entry.request_id, entry.kind, entry.actor, entry.digest)].add(entry.entry_id)
    out.duplicated += [f"{kind} of {rid} by {actor} under {len(ids)} entry ids"
                       for (rid, kind, actor, _), ids in same.items() if len(ids) > 1]
    return out


def log_problems(entries: Sequence[Entry], checkpoints: Sequence[SignedCheckpoint],
                 keys: KeySource, since: str = "") -> list[str]:
    """What is wrong with the log rebuilt from ``entries`` (its rows, in index order):
    a gap, a checkpoint (signed at or after ``since``) whose signature is not the hub's
    or whose root the rows no longer hash to, or a consistency proof from the first
    non-empty checkpoint to each later one, or to the log as it is now, that does not
    verify."""
    for at, entry in enumerate(entries):
        if entry.index != at:
            return [f"the log has no entry at index {at} (next is {entry.index})"]
    tree = MerkleTree([leaf_hash(entry.leaf()) for entry in entries])
    problems: list[str] = []
    signed: list[Checkpoint] = []
    for stored in checkpoints:
        try:
            checkpoint = read_checkpoint(stored.jws, keys)
        except (SignatureError, ValidationError) as err:
            problems.append(f"the checkpoint of {stored.checkpoint.time} is not the hub's: "
                            f"{err}")
            continue
        if checkpoint != stored.checkpoint:
            problems.append(f"the checkpoint row of {stored.checkpoint.time} differs from "
                            "what its JWS signs")
        if checkpoint.time >= since and checkpoint.tree_size > 0:
            signed.append(checkpoint)
    if not signed:
        return [*problems, "no checkpoint of a non-empty log was signed during the run"]
    # The rows against each signed root; then the signed history as a witness sees it.
    problems += [f"the rows no longer hash to the root of the checkpoint of {cp.time} "
                 f"({cp.tree_size} entries): a row before it was rewritten"
                 for cp in signed if cp.tree_size <= tree.size and tree.root(cp.tree_size)
                 != cp.root]
    first = signed[0]
    for later in signed[1:]:
        problems += _consistent(tree, first, later.tree_size, later.root, later.time)
    problems += _consistent(tree, first, tree.size, tree.root(), "now")
    return problems


def _consistent(tree: MerkleTree, first: Checkpoint, size: int, root: bytes,
                when: str) -> list[str]:
    if size < first.tree_size:
        return [f"the checkpoint of {when} counts {size} entries, fewer than the "
                f"{first.tree_size} of the checkpoint of {first.time}: the log shrank"]
    if size > tree.size:
        return [f"the checkpoint of {when} counts {size} entries; the log holds "
                f"{tree.size}: entries were removed"]
    try:
        verify_consistency(first.tree_size, size, tree.consistency_proof(first.tree_size, size),
                           first.root, root)
    except ProofError as err:
        return [f"from the checkpoint of {first.time} ({first.tree_size}) to {when} "
                f"({size}): {err}"]
    return []


@dataclass
class Findings:
    """The record's figures of a chaos run."""

    tally: Tally
    log: list[str]
    entries: int
    checkpoints: int
    uncovered: int  # entries after the newest checkpoint

    @property
    def verified(self) -> bool:
        return not self.log


async def check(settings: Settings, owed: Sequence[Owed], keys: KeySource, since: str,
                patience: float = 30) -> Findings:
    """Read the stack's record and check it: ``owed`` entries once each, the log whole.
    Read again for up to ``patience`` seconds while an owed entry is missing or the newest
    checkpoint does not cover the log yet (a write retried after a kill, the next tick)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    async with await Record.open(settings.record_database_url, load_keys(settings)) as record:
        while True:
            checkpoints = await record.checkpoints()  # before the entries: never longer
            entries = await record.log()
            found = tally(entries, owed)
            covered = checkpoints[-1].checkpoint.tree_size if checkpoints else 0
            if (not found.lost and covered >= len(entries)) or loop.time() > deadline:
                break
            await asyncio.sleep(2)
    return Findings(found, log_problems(entries, checkpoints, keys, since), len(entries),
                    len(checkpoints), len(entries) - covered)

"""A party's witness of the hub's record: it keeps the last checkpoint it has seen and
takes a newer one only with a consistency proof from it, so a hub that rewrites its
history (or shows one party another log) is caught (docs/reference/evidence.md, "How a
witness checks").

Each ``record_checkpoint`` the hub sends every inbox, and each ``consistency_proof`` it
answers a ``consistency_request`` with, is checked: the hub's signature on the message and
on the checkpoint (key directory), sizes that never shrink, one root per size, and RFC
9162's consistency proof from the held size. A proof from another size than the held one
makes the witness ask for the right one. A failed check is reported loudly (an error log,
``Witness.fork`` with both signed checkpoints and the proof) and the held checkpoint stays.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import structlog
from pydantic import ValidationError

from treatyflow.agency.checkpoints import Checkpoint, SignedCheckpoint, read_checkpoint
from treatyflow.agency.entries import parse_time, record_time
from treatyflow.agency.files import replace_private
from treatyflow.agency.merkle import ProofError, verify_consistency
from treatyflow.agency.signing import KeySource, SignatureError, verify
from treatyflow.constants import HUB_SENDER
from treatyflow.schemas.record import ConsistencyBody, ConsistencyRequestBody, parse_record

__all__ = ["Fork", "Outcome", "Witness", "WitnessError"]

_log = structlog.get_logger("treatyflow.agency.witness")


class WitnessError(RuntimeError):
    """The witness's own file cannot be trusted (not a checkpoint the hub signed)."""


class Outcome(StrEnum):
    """What the witness made of one message."""

    ACCEPTED = "accepted"  # consistent with the held checkpoint (or the first one): now held
    SAME = "same"  # the held size and root again
    STALE = "stale"  # an older checkpoint than the held one (a late answer): ignored
    ASK = "ask"  # newer, but its proof starts at another size: ask for one (``wanted``)
    WAITING = "waiting"  # as ASK, already asked
    FORK = "fork"  # the log was rewritten or forked: ``Witness.fork`` has the evidence
    REJECTED = "rejected"  # not signed by the hub, or not a checkpoint message: ignored


@dataclass(frozen=True)
class Fork:
    """Evidence that the hub's record is not one append-only log: the checkpoint held and
    the one offered (each a JWS the hub signed), and the proof that failed."""

    reason: str
    held: str
    offered: str
    from_tree_size: int
    consistency_proof: list[str] = field(default_factory=list)
    detected_at: str = field(default_factory=lambda: record_time(datetime.now(UTC)))

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _write_private(path: Path, data: dict[str, object]) -> None:
    """``data`` as JSON, owner-only (0600), replacing the file at once."""
    replace_private(path, json.dumps(data, indent=2))


class Witness:
    """The last checkpoint of the hub's record this party has seen, and every check of the
    next. ``path``: a file that keeps it across restarts (written 0600; a detected fork is
    kept beside it as ``<path>.fork.json``)."""

    def __init__(self, path: Path | str | None = None, *, party: str = "") -> None:
        self.path = None if path is None else Path(path)
        self.party = party
        self.held: SignedCheckpoint | None = None
        self.fork: Fork | None = None  # the first fork detected
        self.rejected: str | None = None  # why the last message was not a hub's checkpoint
        self.wanted: ConsistencyRequestBody | None = None  # the proof to ask for
        self._asked: set[tuple[int, int]] = set()
        self._loaded = False

    def load(self, keys: KeySource) -> None:
        """Read the held checkpoint (and a fork) from ``path``, once; raises WitnessError if
        the file holds no checkpoint the hub signed."""
        if self._loaded:
            return
        self._loaded = True
        if self.path is None or not self.path.exists():
            return
        try:
            jws = json.loads(self.path.read_text())["checkpoint"]
            self.held = SignedCheckpoint(checkpoint=read_checkpoint(jws, keys), jws=jws)
        except (OSError, ValueError, KeyError, TypeError, SignatureError) as err:
            raise WitnessError(f"{self.path}: not a checkpoint the hub signed: {err}") from err
        fork = self.path.with_name(self.path.name + ".fork.json")
        if fork.exists():
            self.fork = Fork(**json.loads(fork.read_text()))

    def take(self, body: bytes, keys: KeySource) -> Outcome:
        """One ``record_checkpoint`` or ``consistency_proof`` delivery, checked."""
        self.load(keys)
        try:
            checked = verify(body, keys, signer=HUB_SENDER)
            message = parse_record(checked.payload)
        except (SignatureError, ValueError) as err:
            return self._reject(f"not a record message signed by the hub: {err}")
        return self.check(message.body, keys)

    def check(self, body: ConsistencyBody, keys: KeySource) -> Outcome:
        """A signed checkpoint and its consistency proof from ``body.from_tree_size``."""
        self.load(keys)
        try:
            offered = read_checkpoint(body.checkpoint, keys)
        except (SignatureError, ValidationError) as err:
            return self._reject(f"the checkpoint is not signed by the hub: {err}")
        new = SignedCheckpoint(checkpoint=offered, jws=body.checkpoint)
        held = self.held
        if held is None:  # the first checkpoint this party sees: nothing to check it against
            return self._hold(new)
        old = held.checkpoint
        if offered.tree_size < old.tree_size:
            if parse_time(offered.time) <= parse_time(old.time):
                return Outcome.STALE
            return self._fork(f"the log shrank: a checkpoint of {offered.tree_size} entries "
                              f"signed at {offered.time}, after the one of {old.tree_size} "
                              f"held (signed at {old.time})", new, body)
        if offered.tree_size == old.tree_size:
            if offered.root_hash != old.root_hash:
                return self._fork(f"two roots for the same tree size {old.tree_size}: the "
                                  "log was rewritten", new, body)
            if parse_time(offered.time) > parse_time(old.time):
                self._hold(new)
            return Outcome.SAME
        if body.from_tree_size != old.tree_size:
            return self._ask(old, offered)
        try:
            verify_consistency(old.tree_size, offered.tree_size,
                               [bytes.fromhex(h) for h in body.consistency_proof],
                               old.root, offered.root)
        except ProofError as err:
            return self._fork(f"no consistency from the held checkpoint of {old.tree_size} "
                              f"entries to the one of {offered.tree_size}: {err}", new, body)
        return self._hold(new)

    def seen(self, new: SignedCheckpoint, keys: KeySource) -> Outcome:
        """A checkpoint the hub signed (verified already) that came without a consistency
        proof, a receipt's: held if nothing is, checked against the held one for one root
        per size; a larger one is left to the next ``record_checkpoint`` and its proof
        (asking for a proof at every receipt would double the messages). A smaller one
        is no shrunk log, whenever it was signed: the receipts task signs checkpoints of
        the entries it reached, behind the whole log's while a backlog lasts."""
        self.load(keys)
        held = self.held
        if held is None:
            return self._hold(new)
        old, offered = held.checkpoint, new.checkpoint
        if offered.tree_size != old.tree_size:
            return Outcome.STALE
        body = ConsistencyBody(checkpoint=new.jws, from_tree_size=0, consistency_proof=[])
        if offered.root_hash != old.root_hash:
            return self._fork(f"two roots for the same tree size {old.tree_size}: the log "
                              "was rewritten (a receipt's checkpoint)", new, body)
        return Outcome.SAME

    def _hold(self, new: SignedCheckpoint) -> Outcome:
        self.held = new
        self.wanted = None
        if self.path is not None:
            _write_private(self.path, {"checkpoint": new.jws})
        _log.info("record checkpoint held", party=self.party,
                  tree_size=new.checkpoint.tree_size, root_hash=new.checkpoint.root_hash)
        return Outcome.ACCEPTED

    def _ask(self, old: Checkpoint, offered: Checkpoint) -> Outcome:
        pair = (old.tree_size, offered.tree_size)
        self.wanted = ConsistencyRequestBody(from_tree_size=pair[0], to_tree_size=pair[1])
        if pair in self._asked:
            return Outcome.WAITING
        self._asked.add(pair)
        return Outcome.ASK

    def _reject(self, reason: str) -> Outcome:
        self.rejected = reason
        _log.error("a record message in the inbox does not verify; kept the checkpoint held",
                   party=self.party, reason=reason)
        return Outcome.REJECTED

    def _fork(self, reason: str, new: SignedCheckpoint, body: ConsistencyBody) -> Outcome:
        assert self.held is not None
        evidence = Fork(reason=reason, held=self.held.jws, offered=new.jws,
                        from_tree_size=body.from_tree_size,
                        consistency_proof=list(body.consistency_proof))
        _log.error("THE HUB'S RECORD WAS REWRITTEN OR FORKED: the checkpoint offered is not "
                   "consistent with the one held; kept the one held", party=self.party,
                   reason=reason, held_size=self.held.checkpoint.tree_size,
                   offered_size=new.checkpoint.tree_size)
        if self.fork is None:
            self.fork = evidence
            if self.path is not None:
                _write_private(self.path.with_name(self.path.name + ".fork.json"),
                               evidence.to_json())
        return Outcome.FORK

"""Evidence bundles: one request's entries with proofs against a signed checkpoint, checked offline.

``export`` gathers what a party needs to prove what the hub recorded of a request; ``verify``
checks a bundle with nothing but the bundle (and, optionally, a checkpoint the party held
before, which the log must extend). A party's export (``party``) withholds the JWS of
what that party may not read (treatyflow.record.disclosure): such an entry is checked by
its leaf's inclusion alone. The format and the algorithm are in
docs/reference/evidence.md, for verifiers written without treatyflow.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from treatyflow.agency.entries import REFUSED, Digest, Entry, parse_time
from treatyflow.agency.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from treatyflow.agency.signing import (
    KeyRing,
    SignatureError,
    SigningKey,
    verify_directory_self_signed,
)
from treatyflow.agency.signing import verify as verify_jws
from treatyflow.record import disclosure
from treatyflow.record.checkpoints import Checkpoint, read_checkpoint
from treatyflow.record.disclosure import Withheld
from treatyflow.record.store import Record, RecordError

FORMAT: Literal["treatyflow-evidence/1"] = "treatyflow-evidence/1"


class EvidenceEntry(Entry):
    """An entry as a bundle carries it: its fields, the JWS (unless withheld from the party
    the bundle is for), and its inclusion proof."""

    jws: str | None = Field(description="The sender's JWS exactly as received, or the hub's "
                                        "notice; null when withheld.")
    withheld: Withheld | None = Field(
        None, description="Why the JWS is not here (a party's export, treatyflow.record."
                          "disclosure); absent when it is.")
    inclusion: list[Digest] = Field(
        description="RFC 9162 inclusion proof (PATH) of the entry's leaf in the checkpoint's "
                    "tree, hex, from the leaf's sibling up.")


class ConsistencyProof(BaseModel):
    """RFC 9162 consistency proof from an earlier tree size to the checkpoint's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_size: int = Field(ge=0)
    proof: list[Digest]


class Bundle(BaseModel):
    """The evidence of one request (docs/reference/evidence.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["treatyflow-evidence/1"] = FORMAT
    request_id: str
    party: str | None = Field(None, min_length=1, description="The party the export is "
                              "for (absent: the hub's whole export, nothing withheld).")
    checkpoint: str = Field(description="The checkpoint's JWS (compact), signed by the hub.")
    directory: str = Field(
        description="The hub's signed key directory: a JWS in general JSON serialization "
                    "whose payload is a JWKS of every key, with owner and validity.")
    entries: list[EvidenceEntry]
    consistency: list[ConsistencyProof] = Field(default_factory=list)


async def export(record: Record, request_id: str, *, hub_key: SigningKey, directory: str,
                 since: Sequence[int] = (), party: str | None = None,
                 treaty: str | None = None) -> Bundle:
    """The request's bundle against a checkpoint signed now; ``since``: sizes of
    checkpoints the party holds, each given a consistency proof to the new one.
    ``party``: an export for that party of the request, the JWS of what it may not read
    withheld (treatyflow.record.disclosure); NotAParty if it is none. ``treaty``: the
    treaty it is under, needed when the id is in the record under several (a request id
    is unique within its treaty only)."""
    tree = await record.tree()
    entries = [e for e in await record.entries(request_id)
               if e.index < tree.size and treaty in (None, e.treaty)]
    if not entries:
        under = f" under {treaty}" if treaty else ""
        raise RecordError(f"the record holds no entry of request {request_id}{under}")
    treaties = sorted({e.treaty for e in entries})
    if len(treaties) > 1:
        raise RecordError(f"request id {request_id} is in the record under several treaties "
                          f"({', '.join(treaties)}): name one with --treaty")
    hidden = disclosure.withheld(entries, party) if party is not None else {}
    if party is not None:
        # A refusal addressed to somebody else is none of the party's business, not even
        # that it happened (an unparsed message's refusal is filed under the id it named).
        entries = [e for e in entries if not (e.kind == REFUSED and e.index in hidden)]
    proofs = []
    for size in sorted(set(since)):
        if size > tree.size:
            raise RecordError(f"no checkpoint of size {size}: the log holds {tree.size}")
        proofs.append(ConsistencyProof(
            from_size=size, proof=[h.hex() for h in tree.consistency_proof(size)]))
    signed = await record.checkpoint(hub_key, tree)
    return Bundle(
        request_id=request_id, party=party, checkpoint=signed.jws, directory=directory,
        entries=[EvidenceEntry(**e.model_dump(exclude={"jws"}),
                               jws=None if e.index in hidden else e.jws or "",
                               withheld=hidden.get(e.index),
                               inclusion=[h.hex() for h in tree.inclusion_proof(e.index)])
                 for e in entries],
        consistency=proofs)


def _canonical(jws: str) -> bool:
    """Each segment is base64url without padding that re-encodes to itself (a changed
    unused trailing bit decodes to the same bytes: it must not pass unnoticed)."""
    parts = jws.split(".")
    for part in parts:
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except ValueError:
            return False
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != part:
            return False
    return len(parts) == 3


@dataclass(frozen=True)
class Verdict:
    """What checking a bundle found: every problem (none: it verifies), and what it holds."""

    problems: list[str]
    entries: int = 0
    withheld: int = 0
    party: str | None = None


def verify(data: str | bytes, held: str | None = None) -> list[str]:
    """Every problem of the bundle ``data`` (empty: it verifies). ``held``: the JWS of a
    checkpoint the party held before; the bundle's checkpoint must extend it."""
    return check(data, held).problems


def check(data: str | bytes, held: str | None = None) -> Verdict:
    """``verify``, with how many entries the bundle holds and how many are withheld."""
    try:
        bundle = Bundle.model_validate_json(data)
    except ValidationError as err:
        return Verdict([f"not an evidence bundle: {_first(err)}"])
    try:
        ring, _ = verify_directory_self_signed(bundle.directory)
    except (SignatureError, ValidationError, ValueError) as err:
        return Verdict([f"the key directory does not verify: {err}"])
    except (KeyError, TypeError) as err:  # a key listed without a member every key has
        return Verdict([f"the key directory does not verify: a key lacks {err}"])
    try:
        checkpoint = read_checkpoint(bundle.checkpoint, ring)
        if not _canonical(bundle.checkpoint):
            raise SignatureError("its JWS is not canonical base64url")
    except (SignatureError, ValidationError) as err:
        return Verdict([f"the checkpoint does not verify: {err}"])
    problems = _entries(bundle, ring, checkpoint)
    if held is not None:
        problems += _extends(bundle, ring, checkpoint, held)
    return Verdict(problems, len(bundle.entries),
                   sum(e.withheld is not None for e in bundle.entries), bundle.party)


def _entries(bundle: Bundle, ring: KeyRing, checkpoint: Checkpoint) -> list[str]:
    if not bundle.entries:
        return ["the bundle holds no entry"]
    # A key revoked after an entry was signed still proves that entry: the signature is
    # checked without the revocation, then the revocation's time against the entry's.
    unrevoked = KeyRing(keys=[k.model_copy(update={"revoked_at": None}) for k in ring.keys])
    problems = []
    last = -1
    named = False  # the party the export is for is the sender or recipient of one of them
    for n, entry in enumerate(bundle.entries):
        where = f"entry {n} (index {entry.index}, {entry.kind})"
        if entry.request_id != bundle.request_id:
            problems.append(f"{where}: it is of request {entry.request_id}, not "
                            f"{bundle.request_id}")
        if entry.index <= last:
            problems.append(f"{where}: the entries are not in log order")
        last = entry.index
        if entry.withheld is not None or entry.jws is None:
            problems += [f"{where}: {p}" for p in _withheld(bundle, entry)]
        else:
            found, party_named = _signed(entry, entry.jws, unrevoked, ring, bundle.party)
            problems += [f"{where}: {p}" for p in found]
            named = named or party_named
        try:
            verify_inclusion(entry.index, checkpoint.tree_size, leaf_hash(entry.leaf()),
                             [bytes.fromhex(h) for h in entry.inclusion], checkpoint.root)
        except ProofError as err:
            problems.append(f"{where}: not included in the checkpoint of size "
                            f"{checkpoint.tree_size}: {err}")
    if bundle.party is not None and not named:
        problems.append(f"the bundle is exported for {bundle.party}, whom none of the messages "
                        "it carries names as sender or recipient")
    return problems


def _withheld(bundle: Bundle, entry: EvidenceEntry) -> list[str]:
    """A withheld entry: no JWS, a reason, in a party's export (its leaf is checked by
    its inclusion alone)."""
    if entry.jws is not None:
        return ["it is marked withheld, yet carries its JWS"]
    if entry.withheld is None:
        return ["it carries no JWS and is not marked withheld"]
    if bundle.party is None:
        return ["it is withheld, in a bundle exported for no party"]
    return []


def _signed(entry: EvidenceEntry, jws: str, unrevoked: KeyRing, ring: KeyRing,
            party: str | None) -> tuple[list[str], bool]:
    """The problems of an entry's JWS, and whether its payload names ``party`` as sender
    or recipient."""
    try:
        if not _canonical(jws):
            raise SignatureError("its JWS is not canonical base64url")
        checked = verify_jws(jws, unrevoked)
    except SignatureError as err:
        return [f"the signature does not verify: {err}"], False
    problems = []
    if hashlib.sha256(checked.payload).hexdigest() != entry.digest:
        problems.append("the digest is not the SHA-256 of the JWS's payload")
    revoked = (ring.lookup(checked.key.key_id) or checked.key).revoked_at
    if revoked is not None and revoked <= parse_time(entry.time):
        problems.append(f"signed with key {checked.key.key_id}, revoked "
                        f"{revoked.isoformat()} before the entry's time")
    return problems, party is not None and _names(checked.payload, party)


def _names(payload: bytes, party: str) -> bool:
    try:
        found = json.loads(payload)
    except ValueError:
        return False
    return isinstance(found, dict) and party in (found.get("sender"), found.get("recipient"))


def _extends(bundle: Bundle, ring: KeyRing, checkpoint: Checkpoint, held: str) -> list[str]:
    """The checkpoint the party held is a prefix of the bundle's (RFC 9162 §2.1.4.2)."""
    try:
        before = read_checkpoint(held, ring)
    except (SignatureError, ValidationError) as err:
        return [f"the checkpoint you held does not verify with the bundle's keys: {err}"]
    if before.tree_size > checkpoint.tree_size:
        return [f"the checkpoint you held (size {before.tree_size}) is later than the "
                f"bundle's (size {checkpoint.tree_size}): export the bundle again"]
    proof = next((p for p in bundle.consistency if p.from_size == before.tree_size), None)
    if proof is None and before.tree_size not in (0, checkpoint.tree_size):
        return [f"the bundle carries no consistency proof from size {before.tree_size}: "
                f"export it with --since {before.tree_size}"]
    try:
        verify_consistency(before.tree_size, checkpoint.tree_size,
                           [bytes.fromhex(h) for h in (proof.proof if proof else [])],
                           before.root, checkpoint.root)
    except ProofError as err:
        return [f"the log is not consistent with the checkpoint you held (size "
                f"{before.tree_size}, {before.time}): {err}"]
    return []


def _first(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def dumps(bundle: Bundle) -> str:
    """The bundle as its file holds it: compact JSON, one line (every byte is significant)."""
    data = bundle.model_dump(mode="json")
    if data["party"] is None:  # the hub's whole export: as it was before party exports
        del data["party"]
    for entry in data["entries"]:
        if entry["withheld"] is None:
            del entry["withheld"]
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"

"""Receipts from the hub's record: what a party keeps to prove, later, what the hub
recorded of its messages (e-CODEX's evidences: submission accepted or rejected, delivered,
retrieved), and checks with this distribution alone.

A ``record_receipt`` message is a JWS (compact) by a key of the hub, for one recipient,
whose payload carries a checkpoint the hub signed and one receipt per entry: the entry
(its fields, index and digest), the RFC 9162 inclusion proof of its leaf in the
checkpoint's tree and the recipient's messages it is about (docs/reference/evidence.md,
"Receipts"). ``verify_receipts`` checks all of it, and that each entry is about what the
party sent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from treatyflow.agency.checkpoints import Checkpoint, SignedCheckpoint, read_checkpoint
from treatyflow.agency.entries import (
    DEADLINE,
    DELIVERED,
    ENTRY_KINDS,
    REFUSED,
    RETRIEVED,
    Digest,
    Entry,
    Time,
    digest_of,
    entry_id,
    signed_payload,
)
from treatyflow.agency.merkle import ProofError, leaf_hash, verify_inclusion
from treatyflow.agency.signing import KeySource, SignatureError, verify
from treatyflow.constants import AMQP_TYPE_RECEIPT, HUB_SENDER
from treatyflow.schemas.limits import RECEIPTS_PER_MESSAGE_MAX

__all__ = ["RECEIPT_KINDS", "Receipt", "ReceiptBook", "ReceiptError", "ReceiptItem",
           "ReceiptPayload", "receipt_id", "verify_receipts"]

ReceiptKind = Literal["acceptance", "rejection", "delivery", "retrieval"]
RECEIPT_KINDS: tuple[ReceiptKind, ...] = ("acceptance", "rejection", "delivery", "retrieval")
# The entry kinds each receipt may be about (acceptance: any message kind as sent).
_ENTRY_KINDS: dict[str, frozenset[str]] = {
    "rejection": frozenset({REFUSED}),
    "delivery": frozenset({DELIVERED, DEADLINE}),
    "retrieval": frozenset({RETRIEVED}),
}


def receipt_id(recipient: str, entries: Iterable[str]) -> str:
    """The message id of ``recipient``'s receipts of these entries (ids, in order), fixed
    by them: a message sent again (the hub restarted before it noted it sent) is the same
    message, dropped by its id."""
    text = "\x1f".join([recipient, *entries])
    return "receipt-" + hashlib.sha256(text.encode()).hexdigest()[:40]


MAX_ABOUT_ID = 200  # the longest message id a receipt names (an AMQP id may be longer)


class About(BaseModel):
    """One message of the receipt's recipient the entry is about: its id and, when known,
    the SHA-256 of the payload it signed (null for a refused message: the hub's error
    names it by id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: str = Field(min_length=1, max_length=MAX_ABOUT_ID)
    digest: Digest | None = None


class ReceiptItem(BaseModel):
    """The receipt of one entry, in a ``record_receipt`` message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receipt: ReceiptKind
    entry: Entry = Field(description="The entry, without its JWS.")
    inclusion: list[Digest] = Field(description="RFC 9162 PATH of the entry's leaf in the "
                                                "checkpoint's tree, hex, sibling first.")
    about: list[About] = Field(min_length=1, description="The recipient's own messages "
                                                         "the entry is about.")
    error: str | None = Field(None, description="rejection: the hub's signed error (its "
                                                "payload's SHA-256 is the entry's digest).")


class ReceiptPayload(BaseModel):
    """The payload of a record_receipt message's JWS: one recipient's receipts of one
    batch under one checkpoint (docs/reference/evidence.md, "Receipts")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["record_receipt"] = AMQP_TYPE_RECEIPT
    sender: Literal["HUB"] = "HUB"
    message_id: str = Field(description="receipt_id(recipient, the receipts' entry ids).")
    recipient: str = Field(description="The authority the receipts are for.")
    issued_at: Time
    checkpoint: str = Field(description="The checkpoint's JWS (compact), signed by the hub, "
                                        "whose tree includes every entry.")
    receipts: list[ReceiptItem] = Field(min_length=1, max_length=RECEIPTS_PER_MESSAGE_MAX,
                                        description="One receipt per entry, in log order.")


class ReceiptError(ValueError):
    """A receipt that does not verify; ``problem`` says which check failed."""

    def __init__(self, problem: str, reason: str) -> None:
        super().__init__(reason)
        self.problem = problem


@dataclass(frozen=True)
class Receipt:
    """One entry's receipt that verified: what it says, and the JWS of the message that
    carried it (what to keep for a dispute)."""

    payload: ReceiptItem
    recipient: str
    checkpoint: Checkpoint
    jws: str
    checkpoint_jws: str = ""

    @property
    def signed_checkpoint(self) -> SignedCheckpoint:
        return SignedCheckpoint(checkpoint=self.checkpoint, jws=self.checkpoint_jws)

    @property
    def kind(self) -> ReceiptKind:
        return self.payload.receipt

    @property
    def entry(self) -> Entry:
        return self.payload.entry

    @property
    def message_ids(self) -> list[str]:
        return [a.message_id for a in self.payload.about]


# message id -> SHA-256 (hex) of each payload sent under it that the party remembers
SentDigests = Callable[[str], Collection[str]]


def verify_receipts(token: str | bytes, keys: KeySource, *, recipient: str | None = None,
                    sent: SentDigests = lambda _: (),
                    checkpoints: dict[str, Checkpoint] | None = None) -> list[Receipt]:
    """The receipts of the ``record_receipt`` message ``token`` if every check holds, else
    ``ReceiptError`` (one receipt failing refuses the message, naming it): signed by a key
    of the hub in ``keys``; for ``recipient`` (if given); its checkpoint signed by the hub;
    each entry's leaf, recomputed from its fields, included in the checkpoint's tree; each
    entry of the kind its receipt says, about the messages it names; and each named
    message's digest the SHA-256 of a payload ``sent`` says was sent under that id (if
    ``sent`` remembers any). ``checkpoints``: checkpoint JWS verified already (the
    messages of a batch share one), filled as they verify."""
    try:
        checked = verify(token, keys, signer=HUB_SENDER)
    except SignatureError as err:
        raise ReceiptError("bad_signature", f"the receipt is not signed by the hub: {err}"
                           ) from err
    try:
        payload = ReceiptPayload.model_validate_json(checked.payload)
    except ValidationError as err:
        raise ReceiptError("malformed", f"not a receipt: {err.errors()[0]['msg']} at "
                           f"{'.'.join(str(p) for p in err.errors()[0]['loc'])}") from err
    if recipient is not None and payload.recipient != recipient:
        raise ReceiptError("not_ours", f"the receipt is for {payload.recipient}, not "
                           f"{recipient}")
    ids = [item.entry.entry_id for item in payload.receipts]
    if len(set(ids)) != len(ids):
        raise ReceiptError("malformed", "the message holds two receipts of one entry")
    if payload.message_id != receipt_id(payload.recipient, ids):
        raise ReceiptError("malformed", "the receipt's message id is not the one its "
                           "recipient and entries give")
    checkpoint = _checkpoint(payload.checkpoint, keys, checkpoints)
    out = []
    for at, item in enumerate(payload.receipts):
        try:
            _check_item(item, payload.recipient, checkpoint, keys, sent)
        except ReceiptError as err:
            raise ReceiptError(err.problem, f"receipts[{at}] (entry {item.entry.entry_id}): "
                               f"{err}") from err
        out.append(Receipt(payload=item, recipient=payload.recipient, checkpoint=checkpoint,
                           jws=checked.token, checkpoint_jws=payload.checkpoint))
    return out


def _checkpoint(jws: str, keys: KeySource, verified: dict[str, Checkpoint] | None
                ) -> Checkpoint:
    checkpoint = None if verified is None else verified.get(jws)
    if checkpoint is not None:
        return checkpoint
    try:
        checkpoint = read_checkpoint(jws, keys)
    except (SignatureError, ValidationError) as err:
        raise ReceiptError("bad_checkpoint", f"its checkpoint does not verify: {err}"
                           ) from err
    if verified is not None:
        while len(verified) >= 64:  # the last few batches' are enough
            del verified[next(iter(verified))]
        verified[jws] = checkpoint
    return checkpoint


def _check_item(item: ReceiptItem, recipient: str, checkpoint: Checkpoint, keys: KeySource,
                sent: SentDigests) -> None:
    entry = item.entry
    try:
        verify_inclusion(entry.index, checkpoint.tree_size, leaf_hash(entry.leaf()),
                         [bytes.fromhex(h) for h in item.inclusion], checkpoint.root)
    except ProofError as err:
        raise ReceiptError("not_included", f"entry {entry.entry_id} (index {entry.index}) is "
                           f"not in the checkpoint of size {checkpoint.tree_size}: {err}"
                           ) from err
    _check_kind(item, recipient, keys)
    for about in item.about:
        held = sent(about.message_id)
        if held and about.digest is not None and about.digest not in held:
            raise ReceiptError("wrong_digest", f"message {about.message_id}: the receipt's "
                               f"digest {about.digest} is not the SHA-256 of what was sent "
                               f"({', '.join(sorted(held))})")


def _check_kind(payload: ReceiptItem, recipient: str, keys: KeySource) -> None:
    """The entry is of the receipt's kind and about the messages the receipt names."""
    entry, kind = payload.entry, payload.receipt
    allowed = _ENTRY_KINDS.get(kind)
    if (entry.kind in ENTRY_KINDS) if allowed is None else (entry.kind not in allowed):
        raise ReceiptError("wrong_kind", f"an entry of kind {entry.kind} is not what a "
                           f"{kind} receipt is about")
    if kind == "acceptance":
        about = payload.about[0]
        if len(payload.about) != 1 or about.digest != entry.digest or (
                entry.actor != recipient) or (
                entry.entry_id != entry_id(entry.treaty, entry.request_id, about.message_id)):
            raise ReceiptError("wrong_entry", "the entry is not the acceptance of the named "
                               "message sent by the receipt's recipient")
    elif kind == "rejection":
        _check_error(payload, recipient, keys)


def _check_error(payload: ReceiptItem, recipient: str, keys: KeySource) -> None:
    """A rejection carries the hub's signed error: its digest is the entry's, it answers
    the receipt's recipient and names the refused message."""
    if payload.error is None:
        raise ReceiptError("wrong_entry", "a rejection receipt without the hub's error")
    try:
        checked = verify(payload.error, keys, signer=HUB_SENDER)
        error = json.loads(checked.payload)
    except (SignatureError, ValueError) as err:
        raise ReceiptError("wrong_entry", f"the error it carries does not verify: {err}"
                           ) from err
    refused = (error.get("body") or {}).get("refused_message_id") if isinstance(
        error, dict) else None
    if digest_of(payload.error) != payload.entry.digest or not isinstance(error, dict) or (
            error.get("recipient") != recipient) or (
            [a.message_id for a in payload.about] != [refused]):
        raise ReceiptError("wrong_entry", "the error it carries is not the entry's refusal "
                           "of the named message of the receipt's recipient")


def _keys_of(jws: str) -> list[str]:
    """The ``entry_id|recipient`` of each receipt a stored message carries (its payload
    read, not verified: it was verified when it was kept)."""
    try:
        payload = json.loads(signed_payload(jws))
        return [f"{item['entry']['entry_id']}|{payload['recipient']}"
                for item in payload["receipts"]]
    except (ValueError, KeyError, TypeError):
        return []


class ReceiptBook:
    """The receipts an agency received, by entry id (a receipt of an entry held already is
    not kept again), the JWS of each message carrying a new one appended to ``path`` (one
    ``record_receipt`` JWS a line) when given: what the agency keeps for a dispute, read
    back by ``ReceiptBook(path).raw``. Memory holds the last ``capacity`` receipts and
    keys (a batch sent again comes within moments); the file holds every one."""

    def __init__(self, path: Path | None = None, capacity: int = 100_000) -> None:
        self._by_entry: OrderedDict[str, Receipt] = OrderedDict()
        self._capacity = capacity
        self.path = path
        # the keys of the last receipts on file: one sent again is not written twice
        self._on_file: OrderedDict[str, None] = OrderedDict()
        for line in self.raw:
            self._note(_keys_of(line))

    @property
    def raw(self) -> list[str]:
        """The messages' JWS on ``path``, read from it now."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open() as lines:
            return [line.strip() for line in lines if line.strip()]

    def _note(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._on_file[key] = None
            self._on_file.move_to_end(key)
        while len(self._on_file) > self._capacity:
            self._on_file.popitem(last=False)

    def add(self, receipt: Receipt) -> bool:
        """Keep ``receipt``; False if one of its entry is held already."""
        return bool(self.keep([receipt]))

    def keep(self, receipts: Iterable[Receipt]) -> list[Receipt]:
        """Keep each of ``receipts`` not held already (by entry and recipient) and return
        those. On ``path``, the JWS of the messages carrying them is written owner-only
        and synced before it returns (the client acks the delivery after it), once each;
        a write that fails raises and keeps none (the message comes again)."""
        new: dict[str, Receipt] = {}
        for receipt in receipts:
            key = f"{receipt.entry.entry_id}|{receipt.recipient}"
            if key not in self._by_entry and key not in self._on_file:
                new.setdefault(key, receipt)
        if self.path is not None and new:
            tokens = list(dict.fromkeys(r.jws for r in new.values()))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)  # also a file that was there
                os.write(fd, "".join(t + "\n" for t in tokens).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._note(new)
        self._by_entry.update(new)
        while len(self._by_entry) > self._capacity:
            self._by_entry.popitem(last=False)
        return list(new.values())

    def __iter__(self) -> Iterator[Receipt]:
        return iter(list(self._by_entry.values()))

    def __len__(self) -> int:
        return len(self._by_entry)

    def of(self, message_id: str, kind: ReceiptKind | None = None) -> list[Receipt]:
        """The receipts about one of our messages (of ``kind`` if given), oldest first."""
        return [r for r in self._by_entry.values() if message_id in r.message_ids
                and (kind is None or r.kind == kind)]

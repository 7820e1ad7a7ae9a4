"""One entry of the hub's record: its fields, its id, its digest and its canonical leaf bytes.

The leaf is what the Merkle log hashes (docs/reference/evidence.md, "The leaf"): a
format byte, the index as 8 bytes big-endian, then entry id, request id, procedure,
treaty, actor, kind and time, each as a 2-byte big-endian length and its UTF-8 bytes,
then the 32-byte digest. It holds no message body: the digest (SHA-256 of the signed
payload of the entry's JWS) stands for the content, so a party recomputes the leaf from
the entry's fields and the JWS alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

LEAF_FORMAT = 1  # the first byte of every leaf; a new encoding gets a new number
# The kinds an entry has besides the message kinds of the procedures (request,
# confirmation, ... as sent): what the hub itself saw happen.
REFUSED = "refused"  # a message the hub refused, with its problem and reasons
DELIVERED = "delivered"  # a notice the broker confirmed into the recipient's inbox
RETRIEVED = "retrieved"  # a delivery the recipient's client acknowledged
DEADLINE = "deadline"  # a treaty deadline reached
OPERATOR = "operator"  # an operator's action, with name and reason
ENTRY_KINDS = (REFUSED, DELIVERED, RETRIEVED, DEADLINE, OPERATOR)

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.([A-Za-z0-9_-]*)\.[A-Za-z0-9_-]+$")
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Time = Annotated[str, StringConstraints(pattern=_TIME.pattern)]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def record_time(at: datetime) -> str:
    """An instant as the record writes it: UTC, microseconds, ``Z`` (one text per instant)."""
    if at.tzinfo is None:
        raise ValueError("a record time needs a time zone")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def entry_id(*parts: str) -> str:
    """An entry id derived from what identifies the event (e.g. the workflow id and the
    message id): the same event gives the same id, so a retried write is a no-op."""
    joined = b"\x1f".join(part.encode() for part in parts)
    return "e-" + hashlib.sha256(joined).hexdigest()[:40]


def signed_payload(jws: str) -> bytes:
    """The payload a compact JWS signs, decoded but unverified (what the digest covers)."""
    found = _COMPACT_JWS.match(jws.strip())
    if found is None:
        raise ValueError("not a JWS compact serialization")
    raw = found.group(1)
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except binascii.Error as err:
        raise ValueError(f"the JWS payload is not base64url: {err}") from err


def digest_of(jws: str) -> str:
    """SHA-256 (hex) of the payload the JWS signs."""
    return hashlib.sha256(signed_payload(jws)).hexdigest()


class EntryFields(BaseModel):
    """What an entry says, without its place in the log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry_id: Text = Field(description="Fixed by the writer before the write (entry_id()).")
    request_id: Text
    procedure: Text = Field(examples=["assistance", "transfer"])
    treaty: Text
    actor: Text = Field(description="Who acted: the sending authority, 'HUB', or the "
                                    "operator's name.")
    kind: Kind = Field(description="A message kind as sent, or one of ENTRY_KINDS.")
    time: Time = Field(description="When the hub recorded it (record_time()).")


class NewEntry(EntryFields):
    """An entry as a writer hands it to the record: the fields and the signed bytes (the
    sender's JWS exactly as received, or the hub's signed notice)."""

    jws: str = Field(repr=False, description="A JWS compact serialization.")

    def digest(self) -> str:
        return digest_of(self.jws)


class Entry(EntryFields):
    """An entry as the record holds it: its index in the log and its digest."""

    index: int = Field(ge=0, description="Its place in the log: dense, 0-based.")
    digest: Digest
    jws: str | None = Field(None, repr=False,
                            description="The signed bytes, when read with the payload keys.")

    def leaf(self) -> bytes:
        """The canonical leaf bytes (the module docstring; docs/reference/evidence.md)."""
        return encode_leaf(self)


def encode_leaf(entry: Entry) -> bytes:
    out = [struct.pack(">BQ", LEAF_FORMAT, entry.index)]
    for text in (entry.entry_id, entry.request_id, entry.procedure, entry.treaty,
                 entry.actor, entry.kind, entry.time):
        raw = text.encode()
        out.append(struct.pack(">H", len(raw)) + raw)
    out.append(bytes.fromhex(entry.digest))
    return b"".join(out)

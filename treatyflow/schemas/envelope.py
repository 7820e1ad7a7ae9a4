"""The envelope every message shares, and the text types its bodies are built from.

Apart from ``messages.py`` so that each procedure's kinds (``transfer.py``) build on the
same envelope and join the one inbound union in ``messages.py`` without an import cycle.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from treatyflow.schemas.treaty import AUTHORITY_ID_PATTERN

SCHEMA_VERSION = "2"
# Version 1 signed a re-rendering of the envelope inside it; version 2 is signed as sent
# (a JWS over the envelope's bytes). A version-1 message is refused with this note.
MIGRATION_NOTE = (
    "schema_version 1 (an Ed25519 'signature' member over a canonical re-rendering) is no "
    "longer accepted; send schema_version \"2\": the envelope JSON, without a 'signature' "
    "member, as the payload of a JWS compact serialization signed with your key "
    "(alg EdDSA, kid your key id), published with content type application/jose "
    "(docs/agencies/signing.md, 'Migrating from version 1')")

# Characters no written text needs and that hide or reorder what a reader sees: C0 controls
# other than tab, line feed and carriage return, DEL, C1 controls, and the bidirectional
# embeddings, overrides and isolates ("Trojan Source"). Any script is welcome: Russian,
# Chinese and Kazakh text, mixed in one field, is stored and delivered as it is.
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    """``text`` if it holds no forbidden control character; else a ValueError naming it."""
    found = FORBIDDEN_CHARACTERS.search(text)
    if found:
        raise ValueError(f"control character U+{ord(found.group()):04X} at position "
                         f"{found.start()}; only printable text, tab and line breaks")
    return text


def _written(text: str) -> str:
    """``text`` if it says something: not empty, not only white space."""
    if not text.strip():
        raise ValueError("is blank: only white space")
    return text


Printable = AfterValidator(_printable)
Written = AfterValidator(_written)
# Text is taken as sent, never trimmed or otherwise rewritten: what the hub applies is what
# the sender signed and what the other party reads in the original.
Text = Annotated[str, StringConstraints(min_length=1, max_length=20_000), Printable, Written]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500), Printable, Written]
# Art. 6.9: a refusal or deferral is notified in writing with its reason: a real sentence.
Reason = Annotated[str, StringConstraints(min_length=10, max_length=20_000), Printable, Written]
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")]
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{2,63}$")]
AuthorityId = Annotated[str, StringConstraints(pattern=AUTHORITY_ID_PATTERN)]
PartyId = Annotated[str, StringConstraints(pattern=AUTHORITY_ID_PATTERN + r"|^HUB$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$")]

_strict = ConfigDict(extra="forbid", frozen=True)


class EnvelopeBase(BaseModel):
    """What every message carries, whatever its kind (docs/design.md, "The wire")."""

    model_config = _strict
    schema_version: Literal["2"] = Field(
        "2", description="The envelope's version: 2, signed as sent (a JWS over these bytes).")
    message_id: MessageId
    request_id: RequestId
    treaty_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{3,40}$")]
    sender: PartyId
    recipient: PartyId
    sent_at: AwareDatetime
    in_reply_to: MessageId | None = None

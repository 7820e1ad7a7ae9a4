"""The envelope every message shares, and the text types its bodies are built from.

Apart from ``messages.py`` so that each procedure's kinds (``transfer.py``) build on the
same envelope and join the one inbound union in ``messages.py`` without an import cycle.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from treatyflow.schemas.treaty import AUTHORITY_ID_PATTERN

SCHEMA_VERSION = "1"

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


Printable = AfterValidator(_printable)
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000),
                 Printable]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
                      Printable]
# Art. 6.9: a refusal or deferral is notified in writing with its reason: a real sentence.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=20_000),
                   Printable]
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")]
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{2,63}$")]
AuthorityId = Annotated[str, StringConstraints(pattern=AUTHORITY_ID_PATTERN)]
PartyId = Annotated[str, StringConstraints(pattern=AUTHORITY_ID_PATTERN + r"|^HUB$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$")]

_strict = ConfigDict(extra="forbid", frozen=True)


class Signature(BaseModel):
    """Art. 5.5 on the wire: the sender's Ed25519 signature over the canonical envelope
    (README, "Signing"; ``treatyflow.agency.signing``)."""

    model_config = _strict
    key_id: KeyId = Field(description="The registered key that signed: one of the sender's.",
                          examples=["KZ-GPO-2026-1"])
    alg: Literal["ed25519"] = Field(description="Always 'ed25519'.")
    value: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{86}$")] = Field(
        description="The 64-byte signature, base64url without padding."
    )


class EnvelopeBase(BaseModel):
    """What every message carries, whatever its kind (DESIGN, "Contracts")."""

    model_config = _strict
    schema_version: Literal["1"] = "1"
    message_id: MessageId
    request_id: RequestId
    treaty_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{3,40}$")]
    sender: PartyId
    recipient: PartyId
    sent_at: AwareDatetime
    in_reply_to: MessageId | None = None
    signature: Signature | None = Field(
        None, description="The sender's Ed25519 signature over the canonical envelope "
                          "(everything but this field); required on every message (art. 5.5)."
    )

"""The envelope every message shares, and the text types its bodies are built from.

Apart from ``messages.py`` so that each procedure's kinds (``transfer/``) build on the
same envelope and join the one inbound union in ``messages.py`` without an import cycle.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
)

from treatyflow.schemas import limits
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

# --- what text may hold (docs/reference/limits-and-text.md) ---------------------------
# The hub never normalises text: no NFC, no trimming, no removal. Signatures cover the
# bytes as sent, and what the hub applies is what the sender signed and what the other
# party reads in the original; text that would read differently from what it holds is
# refused instead, naming the character and its position. Any script is welcome: Russian,
# Kazakh, Chinese and Arabic text, mixed in one field, is stored and delivered as it is.

# Invisible or blank-looking though not of a refused category (Unicode's
# Default_Ignorable_Code_Point, letters and marks among them, and the braille blank):
# fillers that make a name look empty, variation selectors that can carry hidden bytes.
INVISIBLE_CHARACTERS: frozenset[int] = frozenset({
    0x034F,  # COMBINING GRAPHEME JOINER
    0x115F, 0x1160,  # HANGUL CHOSEONG / JUNGSEONG FILLER
    0x17B4, 0x17B5,  # KHMER VOWEL INHERENT AQ / AA
    *range(0x180B, 0x1810),  # MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
    0x2800,  # BRAILLE PATTERN BLANK
    0x3164,  # HANGUL FILLER
    *range(0xFE00, 0xFE10),  # VARIATION SELECTOR-1..16
    0xFFA0,  # HALFWIDTH HANGUL FILLER
    *range(0xE0100, 0xE01F0),  # VARIATION SELECTOR-17..256
})
# Unicode general categories refused anywhere: format characters (zero-width space and
# joiners, bidirectional marks, embeddings, overrides and isolates, word joiner, BOM, soft
# hyphen, tag characters U+E0000-E007F), controls (but see LINE_BREAKS), line and
# paragraph separators, surrogates, private use and unassigned code points.
REFUSED_CATEGORIES: dict[str, str] = {
    "Cf": "format character, invisible",
    "Cc": "control character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
    "Cs": "surrogate",
    "Co": "private-use character",
    "Cn": f"unassigned in Unicode {unicodedata.unidata_version}",
}
# The only controls multi-line free text may hold: line feed and tab. A carriage return
# is refused: in a terminal it moves back over what was written (send line breaks as \n).
LINE_BREAKS = frozenset("\n\t")
# Context key of a message read from the wire (``WIRE``): its text is checked in full.
# Temporal's own records (histories, continue-as-new inputs) are read back without it, so
# a request accepted before a character was refused still replays; only the control
# characters refused from the start are refused there too.
WIRE_KEY = "wire"
WIRE: dict[str, bool] = {WIRE_KEY: True}
LEGACY_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


# Controls have no Unicode name (only an alias): the ones a text editor or terminal
# produces are named here, any other is "<control>".
CONTROL_NAMES = {"\t": "CHARACTER TABULATION", "\n": "LINE FEED", "\r": "CARRIAGE RETURN",
                 "\x00": "NULL", "\x08": "BACKSPACE", "\x1b": "ESCAPE", "\x7f": "DELETE",
                 "\x85": "NEXT LINE"}


def describe_character(char: str) -> str:
    """``U+200B ZERO WIDTH SPACE``: the code point and its Unicode name (or what it is)."""
    name = unicodedata.name(char, "") or CONTROL_NAMES.get(char) or (
        "<control>" if unicodedata.category(char) == "Cc" else "<unnamed>")
    return f"U+{ord(char):04X} {name}"


def refused_character(text: str, *, multiline: bool) -> tuple[int, str, str] | None:
    """The first character ``text`` may not hold: (position, character, why), or None."""
    for at, char in enumerate(text):
        if char in LINE_BREAKS:
            if multiline:
                continue
            return at, char, "line break or tab in a one-line field"
        why = REFUSED_CATEGORIES.get(unicodedata.category(char))
        if why is None and ord(char) in INVISIBLE_CHARACTERS:
            why = "invisible or blank-looking"
        if why is not None:
            return at, char, why
    return None


def _checked(text: str, info: ValidationInfo, *, multiline: bool) -> str:
    if not (isinstance(info.context, dict) and info.context.get(WIRE_KEY)):
        found = LEGACY_REFUSED.search(text)
        if found:
            raise ValueError(f"{describe_character(found.group())} (control or bidirectional "
                             f"character) at position {found.start()}; only printable text, "
                             "tab and line breaks")
        return text
    problem = text_problem(text, multiline=multiline)
    if problem is not None:
        raise ValueError(problem)
    return text


def text_problem(text: str, *, multiline: bool) -> str | None:
    """Why ``text`` may not be carried (its first refused character, named, and where),
    or None: the rule of every name and text on the wire, for text checked elsewhere."""
    bad = refused_character(text, multiline=multiline)
    if bad is None:
        return None
    at, char, why = bad
    more = sum(1 for i in range(at + 1, len(text))
               if refused_character(text[i], multiline=multiline))
    also = f" (and {more} more after it)" if more else ""
    allowed = "line feed, tab and " if multiline else ""
    return (f"{describe_character(char)} ({why}) at position {at}{also}: text holds "
            f"{allowed}visible characters only; the hub refuses rather than removes them, "
            "as signatures cover the text as sent")


def _one_line(text: str, info: ValidationInfo) -> str:
    return _checked(text, info, multiline=False)


def _multiline(text: str, info: ValidationInfo) -> str:
    return _checked(text, info, multiline=True)


def _written(text: str) -> str:
    """``text`` if it says something: not empty, not only white space."""
    if not text.strip():
        raise ValueError("is blank: only white space")
    return text


OneLine = AfterValidator(_one_line)
MultiLine = AfterValidator(_multiline)
Printable = MultiLine  # the name this check had before it named invisible characters
Written = AfterValidator(_written)


# The text types every name and text field is built from: visible characters only
# (``refused_character``), not blank, at most so many code points (``limits``). Text is
# taken as sent, never trimmed or otherwise rewritten: what the hub applies is what the
# sender signed and what the other party reads in the original.
Text = Annotated[str, StringConstraints(min_length=1, max_length=limits.TEXT_MAX),
                 MultiLine, Written]
MediumText = Annotated[str, StringConstraints(min_length=1, max_length=limits.MEDIUM_TEXT_MAX),
                       MultiLine, Written]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=limits.SHORT_TEXT_MAX),
                      OneLine, Written]
Name = Annotated[str, StringConstraints(min_length=1, max_length=limits.NAME_MAX),
                 OneLine, Written]
# Art. 6.9: a refusal or deferral is notified in writing with its reason: a real sentence.
Reason = Annotated[str, StringConstraints(min_length=limits.REASON_MIN,
                                          max_length=limits.REASON_MAX), MultiLine, Written]
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")]
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{2,63}$")]
AuthorityId = Annotated[str, StringConstraints(pattern=AUTHORITY_ID_PATTERN)]
PartyId = Annotated[str, StringConstraints(pattern=AUTHORITY_ID_PATTERN + r"|^HUB$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$")]


class Strict(BaseModel):
    """A model of the contract: a member it does not name is refused, and it never changes
    once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def request_id_problem(request_id: str, opener: str) -> str | None:
    """Why ``request_id`` cannot open a request ``opener`` sends, or None. A new request's
    id begins with its sender's authority id and a hyphen (``KZ-GPO-2026-0001``): each
    authority numbers its own requests, so none can take an id another will use."""
    if request_id.startswith(f"{opener}-") and len(request_id) > len(opener) + 1:
        return None
    return (f"request_id {request_id!r}: a new request's id begins with the id of the "
            f"authority that sends it and a hyphen ({opener}-…, e.g. {opener}-2026-0001); "
            "each authority numbers its own requests")



class EnvelopeBase(Strict):
    """What every message carries, whatever its kind (docs/design.md, "The wire")."""

    schema_version: Literal["2"] = Field(
        "2", description="The envelope's version: 2, signed as sent (a JWS over these bytes).")
    message_id: MessageId
    request_id: RequestId
    treaty_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{3,40}$")]
    sender: PartyId
    recipient: PartyId
    sent_at: AwareDatetime
    in_reply_to: MessageId | None = None

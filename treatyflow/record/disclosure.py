"""What a party of a request may read of the hub's record: the rule a party's evidence
export follows (docs/reference/evidence.md, "A party's export").

A **party** of a request is an authority that sent an accepted message of it, was
addressed by one, or was delivered a notice of it. Each entry's JWS is read by:

- a message accepted: its sender and its recipient (SCO 2010 art. 7.1 and 7.3: what is
  transmitted goes to the party it is transmitted to, and no further without the
  transmitting authority's written approval), and any party the hub passed it on to,
  unchanged, as an original inside a notice delivered to that party (the request an
  authority receives when it is forwarded to it, art. 6.3; a central authority's message
  the foreign ministries relay, KZ-UAE 2018 art. 5.1 and 6.1);
- a notice delivered (a deadline's notice too): its recipient alone;
- a refusal: the authority refused (the hub's error is addressed to it alone);
- a retrieval: the authority that retrieved;
- an operator's action: nobody. It is the hub's internal act (the operator's name, a
  resend's target, signed by the operators' key); its effect and its reason reach the
  parties as the hub's notices, which they read.

Any other entry is withheld from the party: its fields and digest stay in the export (so
its leaf and inclusion proof still verify: the party sees that something happened, when,
and by whom, and can prove the hub recorded it), its JWS does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from treatyflow.agency.entries import OPERATOR, REFUSED, RETRIEVED, Entry, digest_of
from treatyflow.record.views import NOTICE_KINDS, payload_of

Withheld = Literal["not_addressed", "operator_action"]
# Why an entry's JWS is not in a party's export (the bundle's ``withheld`` member).
WITHHELD: dict[str, str] = {
    "not_addressed": "neither sent by the party, nor addressed or passed on to it",
    "operator_action": "an operator's action: the hub's internal act",
}


class NotAParty(ValueError):
    """The authority is no party of the request: the record has nothing it may read."""


def parties(entries: Sequence[Entry]) -> set[str]:
    """The authorities that sent or were sent an accepted message, or got a notice."""
    found: set[str] = set()
    for entry in entries:
        payload = payload_of(entry)
        if entry.kind in NOTICE_KINDS:
            found.add(str(payload.get("recipient") or entry.actor))
        elif entry.kind not in (REFUSED, RETRIEVED, OPERATOR):
            found |= {str(payload[k]) for k in ("sender", "recipient") if payload.get(k)}
    return found


def withheld(entries: Sequence[Entry], party: str) -> dict[int, Withheld]:
    """For the entries ``party`` may not read, why (by log index); a NotAParty error when
    it is no party of the request."""
    if party not in parties(entries):
        raise NotAParty(f"{party} is not a party of request "
                        f"{entries[0].request_id if entries else '?'}: it sent no message "
                        "of it, none was addressed to it and no notice of it reached it")
    shown: set[str | None] = set()  # digests of the originals passed on to the party in its notices
    for entry in entries:
        payload = payload_of(entry)
        if entry.kind in NOTICE_KINDS and payload.get("recipient") == party:
            body = payload.get("body")
            originals = body.get("originals") if isinstance(body, dict) else None
            shown |= {_digest(jws) for jws in originals or [] if isinstance(jws, str)}
    out: dict[int, Withheld] = {}
    for entry in entries:
        if entry.kind == OPERATOR:
            out[entry.index] = "operator_action"
        elif not _reads(entry, party, shown):
            out[entry.index] = "not_addressed"
    return out


def _reads(entry: Entry, party: str, shown: set[str | None]) -> bool:
    payload = payload_of(entry)
    if entry.kind in NOTICE_KINDS or entry.kind == REFUSED:
        return payload.get("recipient") == party
    if entry.kind == RETRIEVED:
        return entry.actor == party
    return party in (payload.get("sender"), payload.get("recipient")) or entry.digest in shown


def _digest(jws: str) -> str | None:
    """The digest an original's entry has (SHA-256 of what it signs), None if unreadable."""
    try:
        return digest_of(jws)
    except ValueError:
        return None

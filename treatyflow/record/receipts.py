"""Who gets a receipt of which entry, and the receipt itself (treatyflow.agency.receipts
checks it; treatyflow.workers.receipts sends them, a batch under one checkpoint).

``RECIPIENTS`` is the one table: an entry kind and the function naming the receipts owed
for an entry of it. A message accepted: its sender (acceptance). A refusal: the
authority it answers (rejection, with the hub's signed error). A notice confirmed into an
inbox (delivered, or a deadline's): the sender of each signed message it passed on, unless
that is the notice's recipient (delivery). A retrieval: the same as the delivery of the
notice retrieved (retrieval). An operator's action: nobody.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from treatyflow import logs
from treatyflow.agency.checkpoints import SignedCheckpoint
from treatyflow.agency.entries import (
    DEADLINE,
    DELIVERED,
    OPERATOR,
    REFUSED,
    RETRIEVED,
    Entry,
    digest_of,
    entry_id,
    record_time,
    signed_payload,
)
from treatyflow.agency.receipts import (
    MAX_ABOUT_ID,
    About,
    ReceiptItem,
    ReceiptKind,
    ReceiptPayload,
    receipt_id,
)
from treatyflow.agency.signing import SigningKey, sign

_log = logs.get("treatyflow.record")

# The delivery receipts owed for the delivered entry of this id (None: no such entry);
# the receipts task answers from the batches it sent, else from the record.
Deliveries = Callable[[str], Awaitable["list[Owed] | None"]]


@dataclass(frozen=True)
class Owed:
    """One receipt the hub owes for an entry: to whom, of what kind, about which of the
    recipient's own messages."""

    kind: ReceiptKind
    recipient: str
    about: list[About]
    error: str | None = None  # a rejection carries the hub's signed error


def _payload(jws: str | None) -> dict[str, Any]:
    """The JSON object a JWS signs, or {} (the record wrote it: it parses; a row read
    without its JWS names nobody)."""
    if not jws:
        return {}
    try:
        value = json.loads(signed_payload(jws))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def _accepted(entry: Entry, _: Deliveries) -> list[Owed]:
    message_id = _payload(entry.jws).get("message_id")
    if not isinstance(message_id, str) or not message_id:
        return []
    return [Owed("acceptance", entry.actor, [About(message_id=message_id,
                                                   digest=entry.digest)])]


async def _refused(entry: Entry, _: Deliveries) -> list[Owed]:
    error = _payload(entry.jws)
    refused = (error.get("body") or {}).get("refused_message_id")
    recipient = error.get("recipient")
    if (not isinstance(refused, str) or not isinstance(recipient, str)
            or not 0 < len(refused) <= MAX_ABOUT_ID):
        # A delivery with no message id, or one no receipt can name (an AMQP message id
        # longer than the contract's): the signed error it got is all it gets.
        return []
    return [Owed("rejection", recipient, [About(message_id=refused)], error=entry.jws)]


async def _delivered(entry: Entry, _: Deliveries) -> list[Owed]:
    """The senders of the signed messages the notice passed on (its body's originals)."""
    notice = _payload(entry.jws)
    by_sender: dict[str, list[About]] = {}
    for token in (notice.get("body") or {}).get("originals") or []:
        original = _payload(token)
        sender, message_id = original.get("sender"), original.get("message_id")
        if isinstance(sender, str) and isinstance(message_id, str) and sender != entry.actor:
            by_sender.setdefault(sender, []).append(About(message_id=message_id,
                                                          digest=digest_of(token)))
    return [Owed("delivery", sender, about) for sender, about in by_sender.items()]


async def _retrieved(entry: Entry, deliveries: Deliveries) -> list[Owed]:
    """As the delivery of the notice retrieved: the recipient's signed ``retrieval`` lists
    it (the one of ``body.notices`` whose retrieved entry id is the entry's); its entry is
    the notice's delivered entry."""
    notice_id = _retrieved_notice(entry)
    if notice_id is None:
        return []
    delivered = await deliveries(entry_id(entry.treaty, entry.request_id, notice_id))
    if delivered is None:
        _log.warning("receipt_retrieved_unknown", entry_id=entry.entry_id, notice=notice_id)
        return []
    return [Owed("retrieval", o.recipient, o.about) for o in delivered]


def _retrieved_notice(entry: Entry) -> str | None:
    """The id of the notice a retrieved entry is of, from the retrieval it records."""
    for notice in (_payload(entry.jws).get("body") or {}).get("notices") or []:
        notice_id = notice.get("notice_message_id") if isinstance(notice, dict) else None
        if isinstance(notice_id, str) and entry.entry_id == entry_id(
                entry.treaty, entry.request_id, entry.actor, notice_id, RETRIEVED):
            return notice_id
    return None


async def _nobody(_: Entry, __: Deliveries) -> list[Owed]:
    return []


Resolve = Callable[[Entry, Deliveries], Awaitable[list[Owed]]]
# Entry kind -> the receipts owed for it; a kind not listed is a message kind as sent.
RECIPIENTS: dict[str, Resolve] = {
    REFUSED: _refused,
    DELIVERED: _delivered,
    DEADLINE: _delivered,
    RETRIEVED: _retrieved,
    OPERATOR: _nobody,
}


async def owed(entry: Entry, deliveries: Deliveries) -> list[Owed]:
    """The receipts owed for ``entry`` (``RECIPIENTS``)."""
    return await RECIPIENTS.get(entry.kind, _accepted)(entry, deliveries)


async def delivery_owed(entry: Entry | None) -> list[Owed] | None:
    """The delivery receipts owed for a delivered (or deadline) entry; None for another."""
    if entry is None or entry.kind not in (DELIVERED, DEADLINE):
        return None
    return await _delivered(entry, _no_deliveries)


async def _no_deliveries(_: str) -> list[Owed] | None:
    return None


def receipt(entry: Entry, due: Owed, inclusion: list[bytes]) -> ReceiptItem:
    """The receipt of ``entry`` owed as ``due``, whose leaf the checkpoint's tree includes
    by ``inclusion``."""
    return ReceiptItem(receipt=due.kind, entry=entry.model_copy(update={"jws": None}),
                       inclusion=[h.hex() for h in inclusion], about=due.about,
                       error=due.error)


# What a record_receipt message's payload holds besides its receipts, at most (ids, time,
# members' names), and a receipt besides its entry's texts, proof, about and error.
_ENVELOPE_BYTES = 600
_ITEM_BYTES = 500


def size_of(item: ReceiptItem) -> int:
    """An upper bound of the bytes ``item`` takes in a message's payload (UTF-8 JSON: a
    text's character written in 6 bytes at most, an error's JWS in ASCII)."""
    entry = item.entry
    texts = (entry.entry_id, entry.request_id, entry.procedure, entry.treaty, entry.actor,
             entry.kind, *(a.message_id for a in item.about))
    return (_ITEM_BYTES + 6 * sum(len(t) for t in texts) + 67 * len(item.inclusion)
            + 100 * len(item.about) + len(item.error or "") + 4)


def split(items: list[ReceiptItem], checkpoint: SignedCheckpoint, most: int, max_bytes: int
          ) -> list[list[ReceiptItem]]:
    """One recipient's receipts in messages of at most ``most`` receipts whose JWS
    (base64url of the payload, 4 bytes per 3, and the header) stays within ``max_bytes``;
    a receipt too large for a message of its own is left out (``ValueError``, logged by
    the caller)."""
    room = (max_bytes - 200) * 3 // 4 - _ENVELOPE_BYTES - len(checkpoint.jws)
    out: list[list[ReceiptItem]] = []
    held: list[ReceiptItem] = []
    used = 0
    for item in items:
        size = size_of(item)
        if size > room:
            _log.error("receipt_too_large", entry_id=item.entry.entry_id, bytes=size)
            continue
        if held and (len(held) >= most or used + size > room):
            out.append(held)
            held, used = [], 0
        held.append(item)
        used += size
    if held:
        out.append(held)
    return out


def receipt_message(recipient: str, items: list[ReceiptItem], checkpoint: SignedCheckpoint,
                    key: SigningKey, at: datetime | None = None) -> tuple[str, str]:
    """(message id, JWS) of the ``record_receipt`` message of ``recipient``'s receipts
    ``items``, under ``checkpoint`` whose tree includes each entry."""
    message_id = receipt_id(recipient, [item.entry.entry_id for item in items])
    payload = ReceiptPayload(
        message_id=message_id, recipient=recipient,
        issued_at=record_time(at or datetime.now(UTC)), checkpoint=checkpoint.jws,
        receipts=items)
    return message_id, sign(payload.model_dump_json(
        exclude={"receipts": {"__all__": {"entry": {"jws"}}}}).encode(), key)

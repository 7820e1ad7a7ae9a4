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
    """As the delivery of the notice retrieved: the recipient's signed ``retrieval``
    names it (``body.notice_message_id``); its entry is the notice's delivered entry."""
    notice_id = (_payload(entry.jws).get("body") or {}).get("notice_message_id")
    if not isinstance(notice_id, str):
        return []
    delivered = await deliveries(entry_id(entry.treaty, entry.request_id, notice_id))
    if delivered is None:
        _log.warning("receipt_retrieved_unknown", entry_id=entry.entry_id, notice=notice_id)
        return []
    return [Owed("retrieval", o.recipient, o.about) for o in delivered]


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


def receipt(entry: Entry, due: Owed, checkpoint: SignedCheckpoint, inclusion: list[bytes],
            key: SigningKey, at: datetime | None = None) -> tuple[str, str]:
    """(message id, JWS) of the receipt of ``entry`` owed as ``due``, under ``checkpoint``
    whose tree includes the entry by ``inclusion``."""
    message_id = receipt_id(entry.entry_id, due.recipient)
    payload = ReceiptPayload(
        receipt=due.kind, message_id=message_id, recipient=due.recipient,
        issued_at=record_time(at or datetime.now(UTC)),
        entry=entry.model_copy(update={"jws": None}), inclusion=[h.hex() for h in inclusion],
        checkpoint=checkpoint.jws, about=due.about, error=due.error)
    return message_id, sign(payload.model_dump_json(exclude={"entry": {"jws"}}).encode(), key)

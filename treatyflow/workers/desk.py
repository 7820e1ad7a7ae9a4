"""The hub's own desk: messages an authority addresses to the hub itself (recipient
``HUB``, a kind of ``schemas.record.HUB_KINDS``), which no request's workflow sees.

The gateway verifies and screens them as every message (the sender's key, ``sent_at``,
its share), then hands them here instead of to Temporal. Each kind is one entry of
``Desk.counters``: a coroutine that answers it or raises ``Refusal`` (the gateway then
dead-letters it and answers the sender with an ``error``, as for any message).

- ``consistency_request``: the RFC 9162 consistency proof from the size the sender's
  witness holds to a checkpoint the hub signed, with that checkpoint, in the sender's inbox
  (``consistency_proof``).
- ``retrieval``: the sender's client handled notices delivered to it (several in one);
  each recorded as a ``retrieved`` entry of the notice's request, once per recipient and
  notice; a notice not delivered to the sender is refused by its place in the list.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from treatyflow import constants as c
from treatyflow import logs
from treatyflow.agency.entries import DEADLINE, DELIVERED, Entry, entry_id
from treatyflow.agency.signing import SigningKey, Verified, sign
from treatyflow.agency.wire import to_amqp
from treatyflow.hub import Refusal
from treatyflow.record import Record
from treatyflow.record.tree import LogTree
from treatyflow.record.writers import Recorder
from treatyflow.schemas.record import (
    HUB_KINDS,
    ConsistencyBody,
    ConsistencyProofMessage,
    ConsistencyRequestMessage,
    HubAddressed,
    RetrievalMessage,
    ToHub,
    parse_hub,
)
from treatyflow.workers.screen import Outbox, full

_PROOF_IDS = uuid.UUID("8a3e1f0c-6b2d-4e57-a9c4-1d7f3b5e2a60")
_MARKERS = tuple(f'"{kind}"'.encode() for kind in HUB_KINDS)
# A notice is recorded once the broker confirmed it: its recipient may acknowledge it a
# moment before (or, a worker dying mid-write, until the activity's retry writes it). How
# long a retrieval waits for the notice's entry, in turn (seconds, 10 in all); a notice
# recorded for someone else is refused at once.
NOTICE_WAITS = (0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 4.0)

Counter = Callable[[Any, Verified], Awaitable[None]]


def addressed(payload: bytes) -> bool:
    """Whether a verified payload is addressed to the hub itself (its ``kind`` is one of
    ``HUB_KINDS``); cheap for every other message: most hold none of those words."""
    if not any(marker in payload for marker in _MARKERS):
        return False
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("kind") in HUB_KINDS


class Desk:
    """Answers what is addressed to the hub itself, one counter per kind."""

    def __init__(self, record: Record, recorder: Recorder, outbox: Outbox,
                 signing_key: Callable[[], SigningKey], tree: LogTree | None = None) -> None:
        self._record = record
        self._recorder = recorder
        self._outbox = outbox
        self._signing_key = signing_key
        self._log = logs.get("treatyflow.gateway")
        # The log's tree, held and extended by the leaves appended since (the gateway's,
        # shared with its checkpoints): a proof costs O(log n) hashes, not a rebuild from
        # every row (which a sender could ask for at its full rate).
        self._tree = tree or LogTree(record)
        self.counters: dict[str, Counter] = {
            "consistency_request": self._consistency,
            "retrieval": self._retrieval,
        }
        assert self.counters.keys() == HUB_KINDS, "one counter per hub-addressed kind"

    addressed = staticmethod(addressed)

    @staticmethod
    def parse(payload: bytes) -> ToHub:
        """Strictly, as every message (raises pydantic's ``ValidationError``)."""
        return parse_hub(payload)

    async def answer(self, message: HubAddressed, signed: Verified) -> None:
        kind = str(getattr(message, "kind", ""))
        await self.counters[kind](message, signed)

    # --- consistency_request ----------------------------------------------------------

    async def _consistency(self, message: ConsistencyRequestMessage, signed: Verified) -> None:
        first, to = message.body.from_tree_size, message.body.to_tree_size
        target = await self._record.latest_checkpoint(to)
        if target is None:
            raise Refusal("out_of_range", [
                "the hub has signed no checkpoint yet" if to is None else
                f"to_tree_size {to}: the hub signed no checkpoint of {to} entries; name the "
                "size of a checkpoint you received, or leave it out for the newest"])
        size = target.checkpoint.tree_size
        if first > size:
            raise Refusal("out_of_range", [
                f"from_tree_size {first} is past the {size} entries of the checkpoint asked "
                f"for; a proof goes from the size you hold to a newer one"])
        proof = (await self._tree.of(size)).consistency_proof(first, size)
        reply = ConsistencyProofMessage(
            kind="consistency_proof", sender="HUB", recipient=message.sender,
            message_id=str(uuid.uuid5(_PROOF_IDS, f"{message.sender}|{message.message_id}")),
            in_reply_to=message.message_id, sent_at=datetime.now(UTC),
            body=ConsistencyBody(checkpoint=target.jws, from_tree_size=first,
                                 consistency_proof=[h.hex() for h in proof]))
        try:
            await self._outbox.publish(
                c.EXCHANGE_DELIVER, to_amqp(sign(reply, self._signing_key()), reply,
                                            user_id=c.HUB_USER), routing_key=message.sender)
        except Exception as err:
            if not full(err):
                raise
            # The sender's inbox is at its bound: answered, not delivered (asking again
            # once it has room costs the same proof; requeueing would compute it again).
            self._log.warning("consistency proof not delivered: the sender's inbox is full",
                              recipient=message.sender)
            return
        self._log.info("consistency proof sent", recipient=message.sender,
                       from_tree_size=first, tree_size=size)

    # --- retrieval --------------------------------------------------------------------

    async def _retrieval(self, message: RetrievalMessage, signed: Verified) -> None:
        """Each notice the retrieval lists, recorded as retrieved; those not delivered to
        the sender are refused by their place in the list, once the others are written
        (the retrieval is dead-lettered with the reasons; a replay writes the rest once)."""
        notices = list({n.notice_message_id: n for n in message.body.notices}.values())
        found = await asyncio.gather(*(self._delivered(
            entry_id(n.treaty_id, n.request_id, n.notice_message_id), message.sender)
            for n in notices))
        known = [(n, d) for n, d in zip(notices, found, strict=True) if d is not None]
        for notice, delivered in known:
            if delivered.digest != notice.digest:
                self._log.warning("a retrieval names another digest than the notice "
                                  "recorded (a copy signed again on a retry); recorded as "
                                  "sent", notice=notice.notice_message_id,
                                  recipient=message.sender)
        await asyncio.gather(*(self._recorder.retrieved(message, signed.token, n, d)
                               for n, d in known))
        self._log.info("retrieval recorded", notices=len(known), recipient=message.sender)
        missing = {n.notice_message_id for n, d in zip(notices, found, strict=True)
                   if d is None}
        unknown = [(at, n) for at, n in enumerate(message.body.notices)
                   if n.notice_message_id in missing]
        if unknown:
            # The same words whether a notice does not exist or went to someone else.
            raise Refusal("unknown_notice", [
                f"body.notices[{at}]: no notice {n.notice_message_id} of request "
                f"{n.request_id} under {n.treaty_id} was delivered to you ({message.sender})"
                for at, n in unknown] + ([
                    f"the {len(known)} other notices listed were recorded as retrieved"]
                    if known else []))

    async def _delivered(self, notice_entry: str, recipient: str) -> Entry | None:
        """The notice's delivered (or deadline) entry, if it went to ``recipient``."""
        for wait in (0.0, *NOTICE_WAITS):
            await asyncio.sleep(wait)
            found = await self._record.entry(notice_entry, jws=False)
            if found is not None:
                ok = found.kind in (DELIVERED, DEADLINE) and found.actor == recipient
                return found if ok else None
        return None

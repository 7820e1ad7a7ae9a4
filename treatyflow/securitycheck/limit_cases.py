"""Byte limits, forged hub headers, lanes and floods in the hostile-input catalogue (issue 12,
items 4 and 5; docs/operators/limits.md).

- **gateway**: AMQP headers past the hub's limit (``oversize``, naming "headers"); headers
  in the hub's own namespace (``x-treatyflow-reason`` and the like: ``malformed``, and the
  copy in ``hub.dead-letter`` carries the hub's headers only); a flood past the sender's
  share (``rate_limited``);
- **broker**: a body over the broker's ``max_message_size`` (``PRECONDITION_FAILED``), a
  publish into another authority's lane or under a wildcard routing key, and reading
  another authority's lane (``ACCESS_REFUSED``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractChannel

from treatyflow import constants as c
from treatyflow.securitycheck.kit import Attempt, Case, Kit, Probe

ACCESS_REFUSED = "ACCESS_REFUSED"
PRECONDITION_FAILED = "PRECONDITION_FAILED"
# About the 127 KB of headers of the issue: within the broker's frame (128 KiB), so the
# broker takes it, and far past the hub's limit.
HEADER_PADDING = 120_000
FORGED_REASON = "approved by the hub"


def _padded_headers(k: Kit) -> Attempt:
    """A valid signed request carrying a header of ``HEADER_PADDING`` bytes."""
    sent = k.send(k.envelope("request"))
    return Attempt(sent.body, sent.message_id, headers={"x-padding": "x" * HEADER_PADDING},
                   says=(str(c.MAX_HEADER_BYTES),))


def _forged_hub_headers(k: Kit) -> Attempt:
    """A valid signed request with the headers the hub writes on its dead-letter copies,
    naming another sender and a reason of the attacker's choosing."""
    sent = k.send(k.envelope("request"))
    return Attempt(sent.body, sent.message_id, headers={
        c.HEADER_REASON: FORGED_REASON, c.HEADER_PROBLEM: "none",
        c.HEADER_ORIGINAL_USER: k.counterpart, c.HEADER_REPLAY_SENDER: k.counterpart,
        c.HEADER_REFUSED_AT: datetime.now(UTC).isoformat()})


def _publish_hub(routing_key: Callable[[Kit], str], size: int = 16) -> Probe:
    async def probe(k: Kit, channel: AbstractChannel) -> None:
        exchange = await channel.get_exchange(c.EXCHANGE_HUB, ensure=False)
        await exchange.publish(aio_pika.Message(b"x" * size, user_id=k.attacker,
                                                content_type=c.CONTENT_TYPE_JWS),
                               routing_key=routing_key(k))
    return probe


async def _read_other_lane(k: Kit, channel: AbstractChannel) -> None:
    queue = await channel.get_queue(c.inbound_queue(k.counterpart), ensure=False)
    await queue.get(fail=False, no_ack=False)


LIMIT_CASES: list[Case] = [
    Case("oversized_headers", f"a valid request with {HEADER_PADDING} bytes of AMQP headers",
         "oversize", _padded_headers, says="headers"),
    Case("forged_hub_headers", f"a valid request carrying {c.HEADER_REASON}, "
         f"{c.HEADER_ORIGINAL_USER} (another authority) and {c.HEADER_REPLAY_SENDER}",
         "malformed", _forged_hub_headers, says=c.HEADER_REASON, flag="forged_sender"),
    Case("body_over_broker_limit", f"a body of {c.MAX_MESSAGE_BYTES + 1} bytes (over the "
         "broker's max_message_size)", PRECONDITION_FAILED,
         probe=_publish_hub(lambda k: k.attacker, c.MAX_MESSAGE_BYTES + 1)),
    Case("publish_into_other_lane", f"publish into {c.EXCHANGE_HUB}, routing key = another "
         "authority (its lane)", ACCESS_REFUSED,
         probe=_publish_hub(lambda k: k.counterpart), flag="forged_sender"),
    Case("wildcard_routing_key", f"publish into {c.EXCHANGE_HUB} under routing key '#'",
         ACCESS_REFUSED, probe=_publish_hub(lambda k: "#")),
    Case("read_other_lane", "basic.get on another authority's lane", ACCESS_REFUSED,
         probe=_read_other_lane, flag="cross_inbox_read"),
    # Last: it empties the attacker's bucket (the runner lets it refill before going on).
    Case("flood", "junk bytes past the attacker's burst, all at once", "rate_limited",
         lambda k: k.raw(b"flood"), says="messages a second", flood=True),
]

"""Running the hostile-input catalogue: open the requests a case aims at, send the case,
read what came back (the error in the attacker's inbox, the copy in ``hub.dead-letter``,
or the broker's reply), and say whether it is what the case expects.

Uses only what an agency has (AMQP, the contract, the client library); reading
``hub.dead-letter`` takes the hub user's credentials, which the caller passes in.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection

from treatyflow import constants as c
from treatyflow.agency import AgencyClient
from treatyflow.agency.signing import KeyRing
from treatyflow.schemas.messages import ErrorMessage, OutboundMessage, parse_inbound
from treatyflow.securitycheck.kit import FLOOD_MARGIN, Attempt, Case, Kit, Target, payload_of
from treatyflow.simulation.transfer import TRANSFER_TREATY
from treatyflow.workers.dead_letter_queue import lock as dead_letter_lock

# How long a withdrawn request's workflow is given to finish before a case aims at it.
CLOSING_SECONDS = 3.0
ACCESS_REFUSED = "ACCESS_REFUSED"
PRECONDITION_FAILED = "PRECONDITION_FAILED"
# The only headers the hub's copy in hub.dead-letter may carry: the hub's own.
HUB_HEADERS = frozenset({c.HEADER_PROBLEM, c.HEADER_REASON, c.HEADER_ORIGINAL_USER,
                         c.HEADER_REFUSED_AT, c.HEADER_BODY_SIZE, c.HEADER_BODY_SHA256,
                         c.HEADER_BODY_TRUNCATED})
# After a flood, the attacker's bucket refills this long before the next case.
FLOOD_REFILL_S = 2.0


class Expecting(Protocol):
    """An authority's inbox as the runner reads it."""

    async def expect(self, match: Callable[[OutboundMessage], bool],
                     timeout: float = 15) -> OutboundMessage: ...


@dataclass
class Result:
    """What one case got: ``refused_with`` is the error's problem code or the broker's
    reply name (None: not refused); ``message_id`` is the id to find it by; ``words``
    what its reasons must hold (the case's, and those only the built bytes know)."""

    case: Case
    refused_with: str | None
    reasons: list[str]
    message_id: str | None = None
    request_id: str | None = None  # the request the input names, if its payload says
    words: tuple[str, ...] = ()

    @property
    def missing(self) -> list[str]:
        """The expected words no reason holds."""
        wanted = ((self.case.says,) if self.case.says else ()) + self.words
        return [w for w in wanted if not any(w in r for r in self.reasons)]

    @property
    def as_expected(self) -> bool:
        return self.refused_with == self.case.problem and not self.missing


def named_request(body: bytes) -> str | None:
    """The ``request_id`` a body names: the body's, if it is a JSON object, else that of
    the payload it carries as a compact JWS or in JWS JSON serialization (unverified)."""
    for candidate in (body, payload_of(body), _json_jws_payload(body)):
        if candidate is None:
            continue
        try:
            data = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        found = data.get("request_id") if isinstance(data, dict) else None
        if isinstance(found, str):
            return found
    return None


def _json_jws_payload(body: bytes) -> bytes | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("payload"), str):
        return payload_of(f"x.{data['payload']}.x".encode())
    return None


def _broker_reply(err: BaseException) -> str | None:
    if isinstance(err, aiormq.exceptions.ChannelAccessRefused):
        return ACCESS_REFUSED
    if isinstance(err, aiormq.exceptions.ChannelPreconditionFailed):
        return PRECONDITION_FAILED
    return None


async def _send(client: AgencyClient, bad: Attempt, message_id: str | None = None) -> None:
    properties: dict[str, Any] = {"message_id": message_id or bad.message_id}
    if bad.content_type is not None:
        properties["content_type"] = bad.content_type
    if bad.headers:
        properties["headers"] = bad.headers
    await client.publish_raw(bad.body, **properties)


async def _flood(case: Case, kit: Kit, client: AgencyClient, inbox: Expecting,
                 timeout: float) -> Result:
    """``build``'s bytes past the attacker's burst, all at once; the first error with the
    case's problem is the result (the rest are answered too, as what they are)."""
    bad = case.build(kit)  # type: ignore[misc]
    ids = [kit.fresh_id() for _ in range(kit.burst + FLOOD_MARGIN)]
    for start in range(0, len(ids), 50):
        await asyncio.gather(*(_send(client, bad, i) for i in ids[start:start + 50]))
    answers: dict[str, ErrorMessage] = {}

    def error_for(message_id: str) -> Callable[[OutboundMessage], bool]:
        return lambda m: isinstance(m, ErrorMessage) and \
            m.body.refused_message_id == message_id

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * timeout  # every answer, within one wait in all
    for message_id in ids:
        try:
            got = await inbox.expect(error_for(message_id), max(0.1, deadline - loop.time()))
        except (AssertionError, TimeoutError):
            continue
        assert isinstance(got, ErrorMessage)
        answers[message_id] = got
    await asyncio.sleep(FLOOD_REFILL_S)
    hit = [(i, e) for i, e in answers.items() if e.body.problem == case.problem]
    if not hit:
        problems = sorted({e.body.problem for e in answers.values()})
        return Result(case, problems[0] if problems else None,
                      [f"{len(answers)} of {len(ids)} answered, with {problems}"], ids[-1])
    message_id, error = hit[0]
    return Result(case, error.body.problem, error.body.reasons, message_id, None, bad.says)


async def attempt(case: Case, kit: Kit, client: AgencyClient, inbox: Expecting,
                  connection: AbstractConnection, timeout: float = 15) -> Result:
    """Send one case as the attacker and say how it was refused."""
    if case.build is not None and case.flood:
        return await _flood(case, kit, client, inbox, timeout)
    if case.build is not None:
        bad = case.build(kit)
        await _send(client, bad)
        named = named_request(bad.body)
        try:
            error = await inbox.expect(
                lambda m: isinstance(m, ErrorMessage)
                and m.body.refused_message_id == bad.message_id, timeout)
        except (AssertionError, TimeoutError):
            return Result(case, None, [], bad.message_id, named, bad.says)
        assert isinstance(error, ErrorMessage)
        return Result(case, error.body.problem, error.body.reasons, bad.message_id, named,
                      bad.says)
    assert case.probe is not None
    channel = await connection.channel(publisher_confirms=True)
    try:
        await case.probe(kit, channel)
        await asyncio.sleep(0.3)  # a refused consume closes the channel asynchronously
        if channel.is_closed:
            raise RuntimeError("channel closed")
    except Exception as err:  # noqa: BLE001 - the broker's reply is the result
        reply = _broker_reply(err) or _broker_reply(err.__cause__ or err)
        return Result(case, reply, [str(err)[:200]])
    finally:
        if not channel.is_closed:
            await channel.close()
    return Result(case, None, ["the broker let it through"])


async def dead_letters(url: str, wanted: set[str], timeout: float = 10) -> dict[str, str]:
    """The problem header of each wanted message id found in ``hub.dead-letter``, read
    without taking anything out (every message read goes back to the queue)."""
    found: dict[str, str] = {}
    connection = await aio_pika.connect(url)
    async with connection:
        await dead_letter_lock(connection, timeout)  # the gateway's gauges read it too
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=0)
        queue = await channel.get_queue(c.QUEUE_DEAD_LETTER, ensure=False)
        idle = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if message.message_id in wanted:
                found[message.message_id] = str((message.headers or {}).get(c.HEADER_PROBLEM))
                if set(found) >= wanted:
                    idle.set()

        await queue.consume(on_message)
        try:
            await asyncio.wait_for(idle.wait(), timeout)
        except TimeoutError:
            pass
        # Closing the channel unacked returns every message to the queue.
    return found


async def kept_headers(url: str, message_id: str, timeout: float = 10) -> dict[str, Any] | None:
    """The headers of the copy of ``message_id`` in ``hub.dead-letter`` (None: not there),
    read without taking anything out; without ``x-delivery-count``, which the broker adds
    to a message given back to a quorum queue (as every read of the queue does)."""
    connection = await aio_pika.connect(url)
    async with connection:
        await dead_letter_lock(connection, timeout)
        channel = await connection.channel()
        queue = await channel.get_queue(c.QUEUE_DEAD_LETTER, ensure=False)
        seen = asyncio.get_running_loop().create_future()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if message.message_id == message_id and not seen.done():
                seen.set_result({k: v for k, v in (message.headers or {}).items()
                                 if k != "x-delivery-count"})

        await queue.consume(on_message)
        try:
            return await asyncio.wait_for(seen, timeout)  # type: ignore[no-any-return]
        except TimeoutError:
            return None


def current_key_ids(ring: KeyRing) -> dict[str, str]:
    """Each owner's current key id, from the public key registry (a ``KeyRing``)."""
    out: dict[str, str] = {}
    for key in ring.keys:
        if key.current:
            out[key.owner] = key.key_id
    return out


def notice(request_id: str, event: str) -> Callable[[OutboundMessage], bool]:
    """Matches the hub's notice of ``event`` about ``request_id``."""
    return lambda m: m.kind == "notice" and m.request_id == request_id and \
        getattr(m.body, "event", None) == event


async def open_target(kit: Kit, target: Target, attacker: AgencyClient, attacker_box: Expecting,
                      counterpart: AgencyClient, counterpart_box: Expecting) -> list[str]:
    """Open a fresh request for one case to aim at, with valid messages only, put its id in
    ``kit.targets`` and return the ids of the messages applied to it. ``own``: attacker →
    counterpart; ``incoming``: counterpart → attacker, no receipt yet; ``foreign``:
    counterpart → third (the attacker is no party to it); ``closed``: the attacker's,
    withdrawn and finished.

    Fresh per case, because the treaty clock moves requests on by itself (a receipt is
    deemed after 5 treaty days: 5 s on the local stack's demo clock)."""
    mine = target in ("own", "closed")
    sender = kit.attacker if mine else kit.counterpart
    recipient = {"own": kit.counterpart, "closed": kit.counterpart, "incoming": kit.attacker,
                 "foreign": kit.third}[target]
    transfer = kit.treaty == TRANSFER_TREATY
    opening = parse_inbound(json.dumps(kit.envelope(
        "transfer_request" if transfer else "request", sender=sender, recipient=recipient)))
    await (attacker if mine else counterpart).publish(opening)
    kit.targets[target] = opening.request_id
    applied = [opening.message_id]
    if transfer:
        if target not in ("own", "incoming"):
            raise ValueError(f"no {target} target for a transfer case")
        # Accepted and put on the diplomatic channel; no ministry relays it here, so an
        # incoming request never reaches the attacker (art. 5.1).
        await (attacker_box if mine else counterpart_box).expect(
            notice(opening.request_id, "dispatched"))
        if mine:
            kit.accepted_message_id = opening.message_id
        return applied
    if target == "incoming":
        await attacker_box.expect(notice(opening.request_id, "request_delivered"))
    else:
        await (attacker_box if mine else counterpart_box).expect(
            notice(opening.request_id, "request_accepted"))
    if target == "own":
        kit.accepted_message_id = opening.message_id
    if target == "closed":
        withdrawal = await attacker.publish(parse_inbound(json.dumps(kit.envelope(
            "withdrawal", target="closed", body={"reason": "Case closed at home."}))))
        applied.append(withdrawal.message_id)
        await counterpart_box.expect(notice(opening.request_id, "withdrawn"))
        await asyncio.sleep(CLOSING_SECONDS)  # the workflow delivers its last notices, ends
    return applied

"""The wire between an agency and the hub, which both sides use: a signed envelope as an
AMQP message, and a delivery or a passed-on original read back and verified (art. 5.5)."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from pydantic import BaseModel, ValidationError

from treatyflow.agency.signing import KeySource, SignatureError, Verified, verify
from treatyflow.constants import CONTENT_TYPE_JWS, HUB_SENDER
from treatyflow.schemas.messages import (
    InboundMessage,
    NoticeMessage,
    OutboundMessage,
    parse_inbound,
    parse_outbound,
)

__all__ = ["Unverified", "originals", "read_delivery", "read_original", "to_amqp"]


def to_amqp(token: str, envelope: BaseModel, *, user_id: str) -> aio_pika.Message:
    """One signed envelope (its compact JWS) as a persistent AMQP message whose
    properties mirror the envelope."""
    return aio_pika.Message(
        body=token.encode(),
        content_type=CONTENT_TYPE_JWS,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=getattr(envelope, "message_id", None),
        correlation_id=getattr(envelope, "request_id", None),
        type=getattr(envelope, "kind", None),
        user_id=user_id,
        timestamp=getattr(envelope, "sent_at", None),
    )


@dataclass(frozen=True)
class Unverified:
    """Something in the inbox that is not a message signed by the hub: never act on it.

    ``problem`` is ``malformed`` (not a hub message at all), ``unsigned``, ``unknown_key``
    (a key the directory does not hold, or a signer other than the hub), ``bad_signature``
    (altered after signing, or forged) or ``bad_original`` (a message the notice passes on
    does not verify against its sender's key); ``message`` is the parsed envelope if the
    hub's signature held."""

    problem: str
    reason: str
    body: bytes
    message: OutboundMessage | None = None


def _describe(err: ValueError) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in err.errors()[:5])
    return str(err)


def read_original(token: str, keys: KeySource) -> tuple[InboundMessage, Verified]:
    """A message one party sent through the hub, checked against its sender's own key:
    the JWS verifies under a key of the directory, and the envelope inside names that
    key's owner as its sender. Raises ``SignatureError`` or ``ValueError``."""
    checked = verify(token, keys)
    message = parse_inbound(checked.payload)
    if message.sender != checked.key.owner:
        raise SignatureError(f"signed with key {checked.key.key_id!r} of {checked.key.owner}, "
                             f"but the envelope names {message.sender} as its sender")
    return message, checked


def originals(notice: NoticeMessage, keys: KeySource) -> list[InboundMessage]:
    """The signed messages a notice passes on, each verified against its sender's key in
    the directory (art. 5.5) and about the notice's request; raises ``SignatureError`` or
    ``ValueError`` naming the first that is not."""
    out = []
    for token in notice.body.originals:
        message, _ = read_original(token, keys)
        if (message.request_id, message.treaty_id) != (notice.request_id, notice.treaty_id):
            raise SignatureError(f"original {message.message_id} is about request "
                                 f"{message.request_id}, not {notice.request_id}")
        out.append(message)
    return out


def read_delivery(body: bytes, keys: KeySource) -> OutboundMessage | Unverified:
    """One delivery from the inbox: the hub's message if it is a JWS under one of the hub's
    keys whose payload parses, and every original it passes on verifies against its own
    sender's key; else what is wrong with it."""
    try:
        checked = verify(body, keys, signer=HUB_SENDER)
    except SignatureError as err:
        return Unverified(err.problem, str(err), body)
    try:
        message = parse_outbound(checked.payload)
    except ValueError as err:
        return Unverified("malformed", _describe(err), body)
    if message.sender != HUB_SENDER:
        return Unverified("unknown_key", f"sender {message.sender} is not the hub", body, message)
    if isinstance(message, NoticeMessage):
        try:
            originals(message, keys)
        except ValueError as err:
            return Unverified("bad_original", f"a message this notice passes on does not "
                              f"verify: {_describe(err)}", body, message)
    return message

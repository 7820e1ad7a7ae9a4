"""Delivery of the hub's notices into authorities' inboxes, signed with the hub's key.

Signing happens here, at publish time, not in the workflow: the private key stays out of
Temporal's history. The notice (message id, ``sent_at``) is fixed by the workflow, its
JSON is written the same way each time and Ed25519 is deterministic, so a retried publish
is the same JWS (unless the hub's key was rotated in between; the message id is still the
same). The originals a notice passes on are inside its payload, unchanged.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import PublishError
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from treatyflow import metrics
from treatyflow.agency.signing import (
    KeyRing,
    KeySource,
    PublicKey,
    SignatureError,
    SigningKey,
    UnknownKey,
    header_of,
    sign,
    verify,
)
from treatyflow.agency.wire import to_amqp
from treatyflow.constants import EXCHANGE_DELIVER, HUB_USER
from treatyflow.record.writers import Recorder
from treatyflow.schemas.messages import NoticeMessage

UNROUTABLE = "Unroutable"
# A notice the hub will not sign: its request was not opened by a registered key, or an
# original it passes on does not verify (a workflow someone started or fed past the
# gateway).
UNVOUCHED = "Unvouched"
# Tokens a worker keeps as vouched for (a few hundred bytes each): the requests in flight.
VOUCHED_HELD = 4096


class Deliver(BaseModel):
    """One notice to publish, its message id fixed by the workflow."""

    message: NoticeMessage
    opening: str | None = Field(
        None, description="The request's first message as its sender signed it (JWS).")
    about: str | None = Field(
        None, description="The message the notice answers, as its sender signed it (JWS): "
        "written to the hub's record before the notice, if it is not there yet.")


class Delivered(BaseModel):
    """The broker confirmed the notice into the recipient's inbox."""

    message_id: str
    recipient: str
    delivered_at: datetime


class Delivery:
    """Publishes with confirms, persistent, mandatory: a notice is in an inbox or raises."""

    def __init__(self, channel: AbstractChannel, signing_key: Callable[[], SigningKey],
                 keys: KeySource, recorder: Recorder | None = None) -> None:
        self.channel = channel  # replaced on each new broker connection
        self._key = signing_key  # the hub's current key (keys.CurrentKey)
        self._keys = keys  # the registry (keys.RegistryFile), read as it is now
        self._recorder = recorder  # the hub's record: each notice once it is in an inbox
        # Tokens already vouched for, with the registry's key that verified each: a
        # request's opening message vouches for each of its notices, and an original for
        # every notice passing it on. A hit counts only while the registry still holds
        # that key unchanged (a revocation since verifies the token again).
        self._vouched: OrderedDict[str, tuple[PublicKey, dict[str, object]]] = OrderedDict()

    @activity.defn(name="deliver")
    async def deliver(self, request: Deliver) -> Delivered:
        message = request.message
        self._vouch(request)
        token = sign(message, self._key())  # art. 5.5: the hub signs what it sends
        exchange = await self.channel.get_exchange(EXCHANGE_DELIVER, ensure=False)
        try:
            await exchange.publish(
                to_amqp(token, message, user_id=HUB_USER), routing_key=message.recipient,
                mandatory=True,
            )
        except PublishError as exc:
            metrics.NOTICES_UNROUTABLE.labels(event=message.body.event).inc()
            raise ApplicationError(
                f"no inbox for {message.recipient}: {exc}", type=UNROUTABLE, non_retryable=True
            ) from exc
        metrics.MESSAGES_SENT.labels(kind="notice", event=message.body.event).inc()
        if self._recorder is not None:
            # After the broker's confirm; a failed write retries the activity, and the
            # notice published again has its message id (the agency drops the copy).
            await self._recorder.delivered(message, token, request.about)
        activity.logger.info(
            "notice delivered",
            extra={"message_id": message.message_id, "request_id": message.request_id,
                   "notice": message.body.event, "recipient": message.recipient},
        )
        return Delivered(
            message_id=message.message_id,
            recipient=message.recipient,
            delivered_at=datetime.now(UTC),
        )

    def _vouch(self, request: Deliver) -> None:
        """Sign only for a request a registered key of its sender opened, and only notices
        whose originals verify: whoever started or fed the workflow past the gateway, the
        hub's key signs nothing no authority signed first (art. 5.5)."""
        message = request.message
        if request.opening is None:
            self._unvouched(message, "its request holds no signed first message")
        opening = self._verified(message, request.opening, "the request's first message")
        if opening.get("request_id") != message.request_id:
            self._unvouched(message, "the signed first message belongs to another request")
        for token in message.body.originals:
            self._verified(message, token, "an original it passes on")

    def _verified(self, message: NoticeMessage, token: str, what: str) -> dict[str, object]:
        """The payload of ``token`` if a registered key of its sender signed it; a key
        revoked since still vouches for what was signed before the revocation."""
        held = self._vouched.get(token)
        if held is not None and self._keys.lookup(held[0].key_id) == held[0]:
            self._vouched.move_to_end(token)
            return held[1]
        key = None
        try:
            try:
                checked = verify(token, self._keys)
            except UnknownKey:
                key = self._keys.lookup(header_kid(token))
                if key is None or key.revoked_at is None:
                    raise
                checked = verify(token, KeyRing(keys=[key.model_copy(
                    update={"revoked_at": None})]))
                if _sent_at(checked.payload) >= key.revoked_at:
                    raise
            payload = json.loads(checked.payload)
        except (SignatureError, ValueError) as err:
            self._unvouched(message, f"{what} does not verify: {err}")
        if not isinstance(payload, dict) or payload.get("sender") != checked.key.owner:
            self._unvouched(message, f"{what} is not signed by a key of its sender")
        self._vouched[token] = (key or checked.key, payload)
        if len(self._vouched) > VOUCHED_HELD:
            self._vouched.popitem(last=False)
        return payload

    @staticmethod
    def _unvouched(message: NoticeMessage, why: str) -> NoReturn:
        metrics.NOTICES_UNVOUCHED.inc()
        activity.logger.error("notice not signed: unvouched", extra={
            "message_id": message.message_id, "request_id": message.request_id,
            "recipient": message.recipient, "why": why})
        raise ApplicationError(f"notice {message.message_id} not signed: {why}",
                               type=UNVOUCHED, non_retryable=True)


def header_kid(token: str) -> str:
    """The ``kid`` a compact JWS names (unverified), or ''."""
    try:
        kid = header_of(token.encode()).get("kid")
    except (SignatureError, ValueError):
        return ""
    return kid if isinstance(kid, str) else ""


def _sent_at(payload: bytes) -> datetime:
    value = json.loads(payload).get("sent_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else datetime.max.replace(
        tzinfo=UTC)

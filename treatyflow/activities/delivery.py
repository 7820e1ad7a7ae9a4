"""Delivery of the hub's notices into authorities' inboxes, signed with the hub's key.

Signing happens here, at publish time, not in the workflow: the private key stays out of
Temporal's history. The notice (message id, ``sent_at``) is fixed by the workflow, its
JSON is written the same way each time and Ed25519 is deterministic, so a retried publish
is the same JWS (unless the hub's key was rotated in between; the message id is still the
same). The originals a notice passes on are inside its payload, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import PublishError
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from treatyflow import metrics
from treatyflow.agency.client import to_amqp
from treatyflow.agency.signing import SigningKey, sign
from treatyflow.constants import EXCHANGE_DELIVER, HUB_USER
from treatyflow.schemas.messages import NoticeMessage

UNROUTABLE = "Unroutable"


class Deliver(BaseModel):
    """One notice to publish, its message id fixed by the workflow."""

    message: NoticeMessage


class Delivered(BaseModel):
    """The broker confirmed the notice into the recipient's inbox."""

    message_id: str
    recipient: str
    delivered_at: datetime


class Delivery:
    """Publishes with confirms, persistent, mandatory: a notice is in an inbox or raises."""

    def __init__(self, channel: AbstractChannel, signing_key: Callable[[], SigningKey]) -> None:
        self.channel = channel  # replaced on each new broker connection
        self._key = signing_key  # the hub's current key (keys.CurrentKey)

    @activity.defn(name="deliver")
    async def deliver(self, request: Deliver) -> Delivered:
        message = request.message
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

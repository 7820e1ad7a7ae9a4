"""Delivery of the hub's notices into authorities' inboxes."""

from __future__ import annotations

from datetime import UTC, datetime

from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import PublishError
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from treatyflow import metrics
from treatyflow.agency.client import to_amqp
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

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel

    @activity.defn(name="deliver")
    async def deliver(self, request: Deliver) -> Delivered:
        message = request.message
        exchange = await self._channel.get_exchange(EXCHANGE_DELIVER, ensure=False)
        try:
            await exchange.publish(
                to_amqp(message, user_id=HUB_USER), routing_key=message.recipient, mandatory=True
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

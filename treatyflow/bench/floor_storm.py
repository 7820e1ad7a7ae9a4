"""The storm's floor: bare Temporal firing one timer per request and, when it fires, the
least a hub must do about a deadline: tell both parties, each in a notice signed with the
hub's key and published with the broker's confirm into its inbox. No treaty logic, no
search attributes, no record, no vouching, and a workflow input of a few ids. Its worker is
the lifecycle floor's (``floor.py``), its own process like treatyflow's.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from aio_pika.abc import AbstractChannel

    from treatyflow.agency.signing import SigningKey, sign
    from treatyflow.agency.wire import to_amqp
    from treatyflow.bench.floor_contract import (
        FloorDelivered,
        FloorDone,
        FloorOverdue,
        FloorStormStart,
    )
    from treatyflow.constants import EXCHANGE_DELIVER, HUB_SENDER, HUB_USER
    from treatyflow.schemas.messages import NoticeBody, NoticeMessage

NOTICE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1),
                           maximum_interval=timedelta(seconds=30))


class FloorNotices:
    """Publishes the floor's overdue notices, signed, persistent, mandatory, confirmed:
    the same broker path as treatyflow's delivery activity."""

    def __init__(self, channel: AbstractChannel, key: SigningKey) -> None:
        self.channel = channel
        self._key = key

    @activity.defn(name="floor_overdue")
    async def notify(self, notice: FloorOverdue) -> FloorDelivered:
        message = NoticeMessage(
            kind="notice", message_id=notice.message_id, request_id=notice.request_id,
            treaty_id=notice.treaty_id, sender=HUB_SENDER, recipient=notice.recipient,
            sent_at=notice.due, body=NoticeBody(
                event="overdue", status="received", overdue=True, deadline=notice.due,
                requesting=notice.requesting, requested=notice.requested))
        exchange = await self.channel.get_exchange(EXCHANGE_DELIVER, ensure=False)
        await exchange.publish(to_amqp(sign(message, self._key), message, user_id=HUB_USER),
                               routing_key=notice.recipient, mandatory=True)
        return FloorDelivered(request_id=notice.request_id)


@workflow.defn(name="FloorStorm")
class FloorStorm:
    """One request's deadline: a timer, then a notice to each party, one after the other
    as treatyflow's outbox sends them; then it stays open, as an overdue request does."""

    @workflow.run
    async def run(self, start: FloorStormStart) -> FloorDone:
        wait = start.due - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait)
        for recipient in (start.requesting, start.requested):
            await workflow.execute_activity_method(
                FloorNotices.notify,
                FloorOverdue(message_id=str(workflow.uuid4()), request_id=start.request_id,
                             treaty_id=start.treaty_id, recipient=recipient,
                             requesting=start.requesting, requested=start.requested,
                             due=start.due),
                start_to_close_timeout=timedelta(seconds=30), retry_policy=NOTICE_RETRY)
        await workflow.wait_condition(lambda: False)  # open until the stack goes
        return FloorDone(request_id=start.request_id, steps=2)

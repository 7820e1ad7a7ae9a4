"""Integration: authorities, the real RabbitMQ and the real Temporal dev server."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import aiormq
import pytest
from temporalio.client import Client

from tests.conftest import (
    KZ,
    REPORT,
    RU,
    Opened,
    Parties,
    channel_of,
    dead_letter,
    error_about,
    event,
    open_request,
    status,
)
from tests.factories import envelope, message, new_message_id, new_request_id, request_body
from treatyflow import constants as c
from treatyflow.agency import Unverified
from treatyflow.schemas.messages import ErrorMessage, NoticeMessage
from treatyflow.settings import Settings

pytestmark = pytest.mark.stack

RU2 = "RU-GPO"  # a competent authority of the requested state, not the one asked


async def test_request_reaches_requested_inbox_and_report_comes_back(
    kz_ru: Parties, stack_client: Client
) -> None:
    kz, kz_box, ru, ru_box = kz_ru
    rid = new_request_id()
    await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU))
    delivered = await ru_box.expect(event(rid, "request_delivered"))
    assert delivered.body.detail["request"]["assistance_requested"].startswith("Bank statements")
    await ru.publish(message("receipt", request_id=rid, sender=RU, recipient=KZ, body={}))
    received = await kz_box.expect(event(rid, "received"))
    assert received.body.deadline is not None
    await ru.publish(message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                             body=REPORT))
    executed = await kz_box.expect(event(rid, "executed"))
    assert executed.body.status == "executed"
    assert executed.body.detail["summary"] == "Statements attached."
    assert (await status(stack_client, rid)).outcome == "full"


async def test_malformed_message_is_dead_lettered_and_sender_told(
    authorities, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    mid = new_message_id()
    bad = envelope("request", request_id=new_request_id(), sender=KZ, recipient=RU,
                   message_id=mid)
    del bad["body"]["facts"]
    token = kz.sign(json.dumps(bad).encode())
    await kz.publish_raw(token.encode(), content_type=c.CONTENT_TYPE_JWS, message_id=mid)
    error = await kz_box.expect(error_about(mid))
    assert error.body.problem == "malformed"
    assert any("body.facts" in r and "Field required" in r for r in error.body.reasons)
    kept = await dead_letter(stack_settings, mid)
    assert kept.headers[c.HEADER_PROBLEM] == "malformed"
    assert "body.facts" in str(kept.headers[c.HEADER_REASON])
    assert kept.body == token.encode()  # the original, byte for byte


async def test_invalid_request_lists_every_reason_and_starts_nothing(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    rid = new_request_id()
    bad = message("request", request_id=rid, sender=KZ, recipient="KZ-MIA",
                  body=request_body(language="en", signed_by=None))
    await kz.publish(bad)
    error = await kz_box.expect(error_about(bad.message_id))
    assert error.body.problem == "invalid_request"
    text = " | ".join(error.body.reasons)
    assert "art. 11" in text and "art. 5.5" in text and "art. 2" in text
    await dead_letter(stack_settings, bad.message_id)
    with pytest.raises(Exception, match="not found|NotFound|workflow"):
        await stack_client.get_workflow_handle(c.workflow_id("sco-2010", rid)).describe()


async def test_message_delivered_twice_changes_the_request_once(
    opened: Opened, stack_client: Client
) -> None:
    _, kz_box, ru, ru_box, rid = opened
    receipt = message("receipt", request_id=rid, sender=RU, recipient=KZ, body={})
    await ru.publish(receipt)
    await ru.publish(receipt)  # the same message id again (a redelivery)
    await kz_box.expect(event(rid, "received"))
    await kz_box.settle(1.5)
    state = await status(stack_client, rid)
    assert [e.event for e in state.timeline].count("receipt") == 1
    assert sum(1 for m in kz_box.messages
               if isinstance(m, NoticeMessage) and m.request_id == rid
               and m.body.event == "received") == 1
    assert not any(isinstance(m, ErrorMessage) for m in ru_box.messages
                   if not isinstance(m, Unverified) and m.request_id == rid)


async def test_transition_not_allowed_now_is_refused_and_changes_nothing(
    opened: Opened, stack_client: Client, stack_settings: Settings
) -> None:
    _, _, ru, ru_box, rid = opened
    early = message("execution_report", request_id=rid, sender=RU, recipient=KZ, body=REPORT)
    await ru.publish(early)
    error = await ru_box.expect(error_about(early.message_id))
    assert error.body.problem == "not_allowed_now"
    assert "while the request is sent" in error.body.reasons[0]
    assert (await status(stack_client, rid)).status == "sent"
    kept = await dead_letter(stack_settings, early.message_id)
    assert kept.headers[c.HEADER_PROBLEM] == "not_allowed_now"


async def test_message_about_another_authoritys_request_is_refused(
    opened: Opened, authorities, stack_client: Client
) -> None:
    other, other_box = await authorities(RU2)
    rid = opened.rid
    meddling = message("refusal", request_id=rid, sender=RU2, recipient=KZ, body={
        "extent": "whole", "grounds": ["security"], "reason": "Not ours to refuse, really."})
    await other.publish(meddling)
    error = await other_box.expect(error_about(meddling.message_id))
    # A stranger is told exactly what it is told about a request that does not exist.
    nobodys = message("refusal", request_id=new_request_id(), sender=RU2, recipient=KZ,
                      body=meddling.body.model_dump())
    await other.publish(nobodys)
    unknown = await other_box.expect(error_about(nobodys.message_id))
    assert error.body.problem == unknown.body.problem == "unknown_request"
    assert error.body.reasons == [r.replace(nobodys.request_id, rid)
                                  for r in unknown.body.reasons]
    assert (await status(stack_client, rid)).status == "sent"


async def test_sender_must_be_the_connected_authority(
    authorities, stack_settings: Settings
) -> None:
    ru, ru_box = await authorities(RU)
    forged = message("request", request_id=new_request_id(), sender=KZ, recipient=RU)
    # Published over RU-MIA's connection (validated user_id RU-MIA) but claiming KZ-GPO.
    await ru.publish_raw(ru.sign(forged).encode(), content_type=c.CONTENT_TYPE_JWS,
                         message_id=forged.message_id)
    error = await ru_box.expect(error_about(forged.message_id))
    assert error.body.problem == "sender_mismatch"
    await dead_letter(stack_settings, forged.message_id)


async def test_unknown_request_and_closed_request_are_refused(kz_ru: Parties) -> None:
    kz, kz_box, ru, ru_box = kz_ru
    stray = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ, body={})
    await ru.publish(stray)
    assert (await ru_box.expect(error_about(stray.message_id))).body.problem == "unknown_request"
    rid = await open_request(kz, kz_box, ru_box)
    await kz.publish(message("withdrawal", request_id=rid, sender=KZ, recipient=RU,
                             body={"reason": "Case closed at home."}))
    await ru_box.expect(event(rid, "withdrawn"))
    late = message("receipt", request_id=rid, sender=RU, recipient=KZ, body={})
    await asyncio.sleep(1)  # let the workflow finish
    await ru.publish(late)
    error = await ru_box.expect(error_about(late.message_id))
    assert error.body.problem in {"request_closed", "not_allowed_now"}
    assert "withdrawn" in error.body.reasons[0]


async def test_authority_cannot_read_another_inbox(stack_settings: Settings) -> None:
    async with channel_of(stack_settings, KZ) as channel:
        queue = await channel.get_queue(c.inbox_queue(RU), ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.get(fail=False)


@pytest.mark.parametrize(("exchange", "user_id", "routing_key", "refused"), [
    (c.EXCHANGE_DELIVER, KZ, RU, aiormq.exceptions.ChannelAccessRefused),  # the hub's alone
    (c.EXCHANGE_HUB, RU, KZ, aiormq.exceptions.ChannelPreconditionFailed),  # not KZ's login
], ids=["into_the_delivery_exchange", "with_a_user_id_other_than_the_login"])
async def test_broker_refuses_an_authority_publishing(
    stack_settings: Settings, exchange: str, user_id: str, routing_key: str,
    refused: type[Exception],
) -> None:
    async with channel_of(stack_settings, KZ, publisher_confirms=True) as channel:
        to = await channel.get_exchange(exchange, ensure=False)
        with pytest.raises(refused):
            await to.publish(aio_pika.Message(b"{}", user_id=user_id), routing_key=routing_key)


async def test_no_guest_account(stack_settings: Settings) -> None:
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(stack_settings.amqp_url("guest", "guest"))


async def test_messages_of_one_request_are_applied_in_the_order_sent(
    opened: Opened, stack_client: Client
) -> None:
    _, kz_box, ru, ru_box, rid = opened
    # Back to back: the gateway must not let the report overtake the receipt.
    await ru.publish(message("receipt", request_id=rid, sender=RU, recipient=KZ, body={}))
    await ru.publish(message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                             body=REPORT))
    await kz_box.expect(event(rid, "executed"))
    assert not any(isinstance(m, ErrorMessage) for m in ru_box.messages)
    assert [e.event for e in (await status(stack_client, rid)).timeline] == [
        "request_sent", "receipt", "execution_report"]


async def test_closed_requests_outlive_the_sent_at_window(stack_client: Client) -> None:
    """A signed message replayed within the window must find its closed request, not open
    a new one: the local stack keeps closed workflows longer than the window."""
    from treatyflow.temporal import namespace_retention
    from treatyflow.workers.gateway import MAX_AGE, replay_window

    retention = await namespace_retention(stack_client)
    assert retention is not None and retention > MAX_AGE
    assert replay_window(retention) == MAX_AGE

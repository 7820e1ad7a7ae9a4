"""Byte limits, forged hub headers and per-message isolation in the gateway, and the broker's
bounds as the definitions and configs state them (issue 12, items 4 and 5). No stack: the
gateway runs against a stand-in outbox; tests/test_fairness.py and the hostile catalogue
(tests/test_hostile.py) run them on a real stack."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, cast

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelInvalidStateError, DeliveryError
from pamqp.commands import Basic

from treatyflow import constants as c
from treatyflow.hub import Refusal
from treatyflow.schemas.treaty import all_authorities
from treatyflow.securitycheck.kit import payload_of
from treatyflow.topology import definitions
from treatyflow.workers.gateway import Gateway
from treatyflow.workers.screen import (
    TokenBuckets,
    check_headers,
    check_namespace,
    dead_letter_copy,
)

ROOT = Path(__file__).resolve().parents[1]
KZ, RU = "KZ-GPO", "RU-MIA"


class Delivery(aio_pika.Message):
    """An AMQP delivery as the gateway reads it, recording how it was settled."""

    def __init__(self, body: bytes = b"not a JWS", **properties: Any) -> None:
        properties.setdefault("user_id", KZ)
        properties.setdefault("content_type", c.CONTENT_TYPE_JWS)
        properties.setdefault("message_id", f"m-{id(self)}")
        super().__init__(body, **properties)
        self.settled: str | None = None

    async def ack(self) -> None:
        self.settled = "ack"

    async def nack(self, requeue: bool = True) -> None:
        self.settled = "requeued" if requeue else "dropped"


class Outbox:
    """Records what the gateway publishes; ``fail`` decides, per message, what goes wrong."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.fail = fail or {}
        self.sent: list[tuple[str, aio_pika.Message, str]] = []

    async def publish(self, exchange: str, message: aio_pika.Message, routing_key: str) -> None:
        err = self.fail.get(f"{exchange}:{message.message_id}")
        if err is None and exchange == c.EXCHANGE_DELIVER:
            err = self.fail.get(f"{exchange}:*")
        if err is not None:
            raise err
        self.sent.append((exchange, message, routing_key))

    def kept(self) -> list[aio_pika.Message]:
        return [m for x, m, _ in self.sent if x == c.EXCHANGE_DLX]


def gateway(outbox: Outbox, buckets: TokenBuckets | None = None) -> Gateway:
    from treatyflow.agency.signing import KeyRing, SigningKey

    key = SigningKey.generate("HUB-test-1")
    return Gateway(cast(Any, None), cast(Any, outbox), keys=KeyRing(keys=[]),
                   signing_key=lambda: key, buckets=buckets)


def incoming(delivery: Delivery) -> AbstractIncomingMessage:
    return cast(AbstractIncomingMessage, delivery)


# --- the order of checks and the copy ----------------------------------------------------


def test_headers_past_the_limit_are_refused_as_oversize_naming_headers_and_the_limit() -> None:
    with pytest.raises(Refusal) as refused:
        check_headers(incoming(Delivery(headers={"x-padding": "x" * 127_000})))
    assert refused.value.problem == "oversize"
    assert "headers" in refused.value.reasons[0]
    assert str(c.MAX_HEADER_BYTES) in refused.value.reasons[0]
    check_headers(incoming(Delivery(headers={"traceparent": "00-" + "a" * 50})))  # small: fine


@pytest.mark.parametrize("name", [c.HEADER_REASON, c.HEADER_PROBLEM, c.HEADER_ORIGINAL_USER,
                                  c.HEADER_REPLAY_SENDER, "x-death", "X-Treatyflow-Reason"])
def test_headers_in_the_hubs_namespace_are_refused(name: str) -> None:
    with pytest.raises(Refusal) as refused:
        check_namespace(incoming(Delivery(headers={name: "forged"})))
    assert refused.value.problem == "malformed"
    assert name in refused.value.reasons[0]


async def test_oversized_headers_are_refused_before_the_body_is_looked_at() -> None:
    outbox = Outbox()
    big = Delivery(b"x" * (c.MAX_BODY_BYTES + 10), headers={"x-padding": "x" * 60_000})
    await gateway(outbox).handle(incoming(big))
    assert big.settled == "ack"
    (copy,) = outbox.kept()
    assert copy.headers[c.HEADER_PROBLEM] == "oversize"
    assert "headers" in str(copy.headers[c.HEADER_REASON])
    (error,) = [(m, key) for x, m, key in outbox.sent if x == c.EXCHANGE_DELIVER]
    assert error[1] == KZ  # to the sender's inbox
    answer = json.loads(payload_of(error[0].body) or b"{}")
    assert answer["body"]["problem"] == "oversize"
    assert "headers" in answer["body"]["reasons"][0]


def test_the_copy_carries_only_the_hubs_headers_and_the_validated_sender() -> None:
    forged = Delivery(headers={c.HEADER_REASON: "approved", c.HEADER_ORIGINAL_USER: RU,
                               "x-padding": "x" * 1000}, user_id=KZ)
    copy = dead_letter_copy(incoming(forged), Refusal("malformed", ["because"]))
    assert set(copy.headers) == {c.HEADER_PROBLEM, c.HEADER_REASON, c.HEADER_ORIGINAL_USER,
                                 c.HEADER_REFUSED_AT}
    assert copy.headers[c.HEADER_ORIGINAL_USER] == KZ
    assert copy.headers[c.HEADER_REASON] == "because"
    assert copy.user_id == c.HUB_USER


def test_a_body_too_large_to_copy_is_kept_cut_with_its_size_and_digest() -> None:
    body = bytes(range(256)) * ((c.MAX_MESSAGE_BYTES // 256) + 1)
    copy = dead_letter_copy(incoming(Delivery(body)), Refusal("oversize", ["big"]))
    assert copy.body == body[:c.MAX_BODY_BYTES]
    assert copy.headers[c.HEADER_BODY_SIZE] == len(body)
    assert copy.headers[c.HEADER_BODY_SHA256] == hashlib.sha256(body).hexdigest()
    assert copy.headers[c.HEADER_BODY_TRUNCATED] is True


def test_no_copy_can_exceed_the_brokers_frame_whatever_the_sender_sent() -> None:
    from pamqp.header import ContentHeader

    worst = Delivery(b"x" * c.MAX_MESSAGE_BYTES, headers={"x-padding": "x" * 127_000},
                     message_id="m" * 255, correlation_id="r" * 255, type="t" * 255,
                     content_type="c" * 255)
    copy = dead_letter_copy(incoming(worst), Refusal("oversize", ["r" * 10_000] * 20))
    frame = len(ContentHeader(0, len(copy.body), copy.properties).marshal())
    assert frame < 8 * 1024  # the broker's frame is 128 KiB; the copy's header a few KiB
    assert len(copy.body) <= c.MAX_BODY_BYTES


# --- one message's failure never touches another's delivery ---------------------------


async def test_a_dead_letter_publish_that_fails_requeues_that_message_alone() -> None:
    bad, good = Delivery(message_id="bad"), Delivery(message_id="good")
    outbox = Outbox({f"{c.EXCHANGE_DLX}:bad": ChannelInvalidStateError("channel closed")})
    hub = gateway(outbox)
    await hub.handle(incoming(bad))
    await hub.handle(incoming(good))
    assert (bad.settled, good.settled) == ("requeued", "ack")
    assert [m.message_id for m in outbox.kept()] == ["good"]


async def test_an_error_reply_that_fails_still_acks_the_refused_message() -> None:
    outbox = Outbox({f"{c.EXCHANGE_DELIVER}:*": ConnectionError("inbox gone")})
    refused = Delivery(message_id="r1")
    await gateway(outbox).handle(incoming(refused))
    assert refused.settled == "ack"
    assert [m.message_id for m in outbox.kept()] == ["r1"]


async def test_a_full_dead_letter_queue_answers_the_sender_and_acks() -> None:
    nack = DeliveryError(None, Basic.Nack())  # what reject-publish sends a confirming publisher
    outbox = Outbox({f"{c.EXCHANGE_DLX}:full": nack})
    refused = Delivery(message_id="full")
    await gateway(outbox).handle(incoming(refused))
    assert refused.settled == "ack"
    assert [x for x, _, _ in outbox.sent] == [c.EXCHANGE_DELIVER]  # the error went out


# --- each sender's share ---------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take(KZ) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(KZ) == pytest.approx(0.5)
    assert buckets.take(RU) == 0.0  # another sender's share is its own
    now[0] = 0.5
    assert buckets.take(KZ) == 0.0
    assert buckets.take(KZ) > 0


async def test_a_sender_past_its_share_is_answered_rate_limited() -> None:
    outbox = Outbox()
    hub = gateway(outbox, TokenBuckets(rate=0.001, burst=2))
    sent = [Delivery(message_id=f"f{i}") for i in range(4)]
    for delivery in sent:
        await hub.handle(incoming(delivery))
    assert [d.settled for d in sent] == ["ack"] * 4
    problems = [m.headers[c.HEADER_PROBLEM] for m in outbox.kept()]
    assert problems == ["malformed", "malformed", "rate_limited", "rate_limited"]
    other = Delivery(message_id="other", user_id=RU)
    await hub.handle(incoming(other))
    assert outbox.kept()[-1].headers[c.HEADER_PROBLEM] == "malformed"  # not RU's limit


# --- the broker's bounds ---------------------------------------------------------------


DEFS = definitions({u: "unused" for u in [c.HUB_USER, *all_authorities()]})


def test_every_queue_has_a_length_and_byte_bound_with_reject_publish() -> None:
    for queue in DEFS["queues"]:
        matching = [p for p in DEFS["policies"]
                    if re.search(p["pattern"], queue["name"]) and p["apply-to"] == "queues"]
        assert len(matching) == 1, (queue["name"], matching)
        rule = matching[0]["definition"]
        assert rule["overflow"] == "reject-publish"
        assert rule["max-length"] > 0 and rule["max-length-bytes"] >= 64 * c.MAX_MESSAGE_BYTES


def test_each_authority_publishes_into_its_own_lane_only() -> None:
    hub = {x["name"]: x for x in DEFS["exchanges"]}[c.EXCHANGE_HUB]
    assert hub["type"] == "topic"  # topic permissions apply to topic exchanges only
    topic = {t["user"]: t for t in DEFS["topic_permissions"]}
    lanes = {b["destination"]: b["routing_key"] for b in DEFS["bindings"]
             if b["source"] == c.EXCHANGE_HUB}
    for authority in all_authorities():
        assert lanes[c.inbound_queue(authority)] == authority
        rule = topic[authority]
        assert rule["exchange"] == c.EXCHANGE_HUB
        assert re.fullmatch(rule["write"], authority)
        assert not [a for a in all_authorities() if a != authority
                    and re.fullmatch(rule["write"], a)]
    assert len(lanes) == len(all_authorities())  # nothing else routes from the hub exchange


def test_the_broker_takes_no_message_over_max_message_size() -> None:
    compose = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert re.search(rf"^max_message_size = {c.MAX_MESSAGE_BYTES}$", compose, re.M)
    stack = (ROOT / "treatyflow" / "local" / "stack.py").read_text()
    assert 'f"max_message_size = {c.MAX_MESSAGE_BYTES}\\n"' in stack
    assert c.MAX_BODY_BYTES + c.MAX_HEADER_BYTES < c.MAX_MESSAGE_BYTES



async def test_a_full_inbox_does_not_stop_the_key_directory_reaching_the_others(
    tmp_path: Path,
) -> None:
    """A directory publish reaches every inbox but a full one, which nacks it: the gateway
    takes it as sent (and starts consuming) rather than failing or sending it again."""
    from treatyflow.keys import RegistryFile, load_or_create_keys
    from treatyflow.workers.announce import Announcer

    load_or_create_keys(tmp_path)
    published: list[str] = []

    class Exchange:
        async def publish(self, message: aio_pika.Message, routing_key: str) -> None:
            published.append(routing_key)
            raise DeliveryError(None, Basic.Nack())

    class Channel:
        async def get_exchange(self, name: str, ensure: bool = False) -> Exchange:
            return Exchange()

    announcer = Announcer(tmp_path, RegistryFile(tmp_path))
    await announcer.announce(cast(Any, Channel()))
    await announcer.announce(cast(Any, Channel()))  # unchanged: not sent again
    assert published == [c.DIRECTORY_ROUTING_KEY]

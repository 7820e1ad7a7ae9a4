"""The delivery activity signs a notice only for a request a registered key of its
sender opened, and only if every original it passes on verifies: a workflow started or
fed past the gateway cannot make the hub sign anything (art. 5.5)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tests.conftest import TEST_KEYS
from tests.factories import message, new_request_id
from treatyflow import constants as c
from treatyflow.activities.delivery import UNVOUCHED, Deliver, Delivery
from treatyflow.agency.signing import KeyRing, SigningKey, sign
from treatyflow.schemas.messages import NoticeBody, NoticeMessage

KZ, RU = "KZ-GPO", "RU-MIA"


class Exchange:
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, message: Any, routing_key: str, mandatory: bool) -> None:
        self.published.append((routing_key, message))


class Channel:
    def __init__(self) -> None:
        self.exchange = Exchange()

    async def get_exchange(self, name: str, ensure: bool) -> Exchange:
        return self.exchange


def _delivery(keys: Any = TEST_KEYS.ring) -> tuple[Delivery, Exchange]:
    channel = Channel()
    hub = TEST_KEYS.private[c.HUB_SENDER]
    return Delivery(channel, lambda: hub, keys), channel.exchange  # type: ignore[arg-type]


def _notice(rid: str, originals: list[str] | None = None) -> NoticeMessage:
    return NoticeMessage(
        kind="notice", message_id=str(uuid.uuid4()), request_id=rid, treaty_id="sco-2010",
        sender=c.HUB_SENDER, recipient=RU, sent_at=datetime.now(UTC),
        body=NoticeBody(event="request_delivered", status="sent", requesting=KZ,
                        requested=RU, originals=originals or []))


async def _deliver(delivery: Delivery, request: Deliver) -> None:
    await ActivityEnvironment().run(delivery.deliver, request)


async def test_a_notice_of_a_request_its_sender_signed_is_signed_and_sent() -> None:
    rid = new_request_id()
    opening = TEST_KEYS.sign(message("request", request_id=rid, sender=KZ, recipient=RU))
    delivery, exchange = _delivery()
    await _deliver(delivery, Deliver(message=_notice(rid, [opening]), opening=opening))
    assert [key for key, _ in exchange.published] == [RU]


@pytest.mark.parametrize("case", ["no_opening", "unregistered_key", "other_request",
                                  "forged_original", "sender_not_key_owner"])
async def test_the_hub_signs_nothing_unvouched(case: str) -> None:
    rid = new_request_id()
    request = message("request", request_id=rid, sender=KZ, recipient=RU)
    opening: str | None = TEST_KEYS.sign(request)
    originals: list[str] = []
    if case == "no_opening":
        opening = None
    elif case == "unregistered_key":
        opening = sign(request, SigningKey.generate("KZ-GPO-made-up-1"))
    elif case == "other_request":
        opening = TEST_KEYS.sign(message("request", request_id=new_request_id(), sender=KZ,
                                         recipient=RU))
    elif case == "forged_original":
        originals = [sign(request, TEST_KEYS.private[RU])]  # "from KZ-GPO", RU's key
    elif case == "sender_not_key_owner":
        opening = sign(request, TEST_KEYS.private[RU])
    delivery, exchange = _delivery()
    with pytest.raises(ApplicationError) as refused:
        await _deliver(delivery, Deliver(message=_notice(rid, originals), opening=opening))
    assert refused.value.type == UNVOUCHED and refused.value.non_retryable
    assert exchange.published == []


async def test_a_key_revoked_later_still_vouches_for_what_it_signed_before() -> None:
    rid = new_request_id()
    opening = TEST_KEYS.sign(message("request", request_id=rid, sender=KZ, recipient=RU))
    later = datetime.now(UTC) + timedelta(hours=1)
    revoked = KeyRing(keys=[k.model_copy(update={"revoked_at": later}) if k.owner == KZ else k
                            for k in TEST_KEYS.ring.keys])
    delivery, exchange = _delivery(revoked)
    await _deliver(delivery, Deliver(message=_notice(rid), opening=opening))
    assert len(exchange.published) == 1

    earlier = KeyRing(keys=[k.model_copy(update={"revoked_at": datetime(2020, 1, 1,
                                                                       tzinfo=UTC)})
                            if k.owner == KZ else k for k in TEST_KEYS.ring.keys])
    delivery, exchange = _delivery(earlier)
    with pytest.raises(ApplicationError):
        await _deliver(delivery, Deliver(message=_notice(rid), opening=opening))
    assert exchange.published == []


class Registry:
    """A key source whose ring an operator replaces while the worker runs."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def lookup(self, key_id: str) -> Any:
        return self.ring.lookup(key_id)


async def test_a_revocation_reaches_a_request_already_vouched_for() -> None:
    rid = new_request_id()
    opening = TEST_KEYS.sign(message("request", request_id=rid, sender=KZ, recipient=RU))
    registry = Registry(TEST_KEYS.ring)
    delivery, exchange = _delivery(registry)  # type: ignore[arg-type]
    await _deliver(delivery, Deliver(message=_notice(rid), opening=opening))
    await _deliver(delivery, Deliver(message=_notice(rid), opening=opening))
    assert len(exchange.published) == 2

    # The requesting authority's key revoked as compromised before it signed the request:
    # the next notice of that request is not signed, though its opening verified before.
    registry.ring = KeyRing(keys=[
        k.model_copy(update={"revoked_at": datetime(2020, 1, 1, tzinfo=UTC)})
        if k.owner == KZ else k for k in TEST_KEYS.ring.keys])
    with pytest.raises(ApplicationError) as refused:
        await _deliver(delivery, Deliver(message=_notice(rid), opening=opening))
    assert refused.value.type == UNVOUCHED
    assert len(exchange.published) == 2

"""Whoever reaches Temporal, the workflow applies only what its sender signed (art. 5.5):
it verifies every message and every operator action against the key directory it holds,
takes a newer directory only if a hub key it knows signed it, and the hub's delivery
signs nothing for a request that no registered key opened. These call Temporal directly,
past the gateway, as a local user who reached the dev server's port could (on the real
dev server: the time-skipping one stops skipping after a rejected update)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.conftest import REPORT, TEST_KEYS, operate, submit
from tests.factories import message, new_request_id
from treatyflow import constants as c
from treatyflow import hub, keys
from treatyflow.agency.signing import KeyRing, PublicKey, SigningKey, sign, sign_directory
from treatyflow.hub import Refusal, request_state
from treatyflow.schemas import limits
from treatyflow.schemas.messages import InboundMessage, parse_inbound
from treatyflow.settings import Settings
from treatyflow.workflows.lifecycle import OperatorAction

pytestmark = pytest.mark.stack

KZ, RU = "KZ-GPO", "RU-MIA"


async def _opened(client: Client) -> str:
    rid = new_request_id()
    await submit(client, message("request", request_id=rid, sender=KZ, recipient=RU))
    return rid


@pytest_asyncio.fixture
async def rid(stack_client: Client) -> str:
    """A request KZ-GPO opened to RU-MIA straight through Temporal, with the tests' keys."""
    return await _opened(stack_client)


async def _events(client: Client, rid: str) -> list[str]:
    return [e.event for e in (await request_state(client, "sco-2010", rid)).timeline]


async def _refused(client: Client, rid: str, problem: str, sent: InboundMessage | None = None,
                   *, naming: str, **options: object) -> None:
    """Submit ``sent`` (by default a receipt of ``rid``) with ``options``; it must be
    refused with ``problem``, its reasons naming ``naming``, and leave the timeline as it
    was."""
    before = await _events(client, rid)
    sent = sent or message("receipt", request_id=rid, sender=RU, recipient=KZ)
    with pytest.raises(Refusal) as refused:
        await hub.submit(client, sent, **{"directory": TEST_KEYS, **options})  # type: ignore[arg-type]
    assert refused.value.problem == problem, refused.value
    assert await _events(client, rid) == before
    assert naming in " ".join(refused.value.reasons), refused.value.reasons


def _directory(ring: KeyRing, signer: SigningKey, at: datetime) -> tuple[str, datetime]:
    return sign_directory(ring, [signer], at), at


def _rotated(owner: str, key_id: str) -> tuple[SigningKey, KeyRing, tuple[str, datetime]]:
    """A new key of ``owner`` added to the test keys, and the newer directory of them
    that the tests' hub key signed."""
    key = SigningKey.generate(key_id)
    at = datetime.now(UTC) + timedelta(seconds=1)
    ring = KeyRing(keys=[*TEST_KEYS.ring.keys, PublicKey(
        key_id=key.key_id, owner=owner, public_key=key.public_key, valid_from=at)])
    return key, ring, _directory(ring, TEST_KEYS.private[c.HUB_SENDER], at)


async def test_an_unsigned_message_sent_straight_to_temporal_is_not_applied(
    stack_client: Client, rid: str
) -> None:
    await _refused(stack_client, rid, "unsigned", jws=None, naming="carries no signature")


async def test_a_message_signed_by_another_partys_key_is_not_applied(
    stack_client: Client, rid: str
) -> None:
    """The unsigned-report attack, signed: a receipt "from RU-MIA" under KZ-GPO's key."""
    receipt = message("receipt", request_id=rid, sender=RU, recipient=KZ)
    forged = sign(receipt, TEST_KEYS.private[KZ])
    await _refused(stack_client, rid, "unknown_key", receipt, jws=forged,
                   naming=f"not a key of {RU}")


async def test_a_signature_over_another_message_is_not_applied(
    stack_client: Client, rid: str
) -> None:
    other = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ)
    await _refused(stack_client, rid, "bad_signature", jws=TEST_KEYS.sign(other),
                   naming="is not the message its JWS signs")


async def test_a_directory_no_known_hub_key_signed_is_not_taken(
    stack_client: Client, rid: str
) -> None:
    """Whoever makes up a directory (its own hub key, its own key for RU-MIA) gets
    nothing applied with it."""
    later = datetime.now(UTC) + timedelta(seconds=1)
    evil_hub, evil_ru = SigningKey.generate("HUB-evil-1"), SigningKey.generate("RU-MIA-evil-1")
    ring = KeyRing(keys=[
        PublicKey(key_id=evil_hub.key_id, owner=c.HUB_SENDER, public_key=evil_hub.public_key,
                  valid_from=later),
        PublicKey(key_id=evil_ru.key_id, owner=RU, public_key=evil_ru.public_key,
                  valid_from=later)])
    evil = _directory(ring, evil_hub, later)
    receipt = message("receipt", request_id=rid, sender=RU, recipient=KZ)
    await _refused(stack_client, rid, "bad_signature", receipt, jws=sign(receipt, evil_ru),
                   directory=lambda: evil, naming="not signed by a hub key this request knows")


async def test_a_rotated_key_is_learnt_from_a_newer_directory_and_a_revoked_one_refused(
    stack_client: Client, rid: str
) -> None:
    rotated, ring, newer = _rotated(RU, "RU-MIA-test-2")
    receipt = message("receipt", request_id=rid, sender=RU, recipient=KZ)
    # The request holds the older directory: the hub sends the newer one along, once.
    await hub.submit(stack_client, receipt, jws=sign(receipt, rotated), directory=lambda: newer)
    assert await _events(stack_client, rid) == ["request_sent", "receipt"]

    revoked_at = newer[1] + timedelta(seconds=1)
    revoked = KeyRing(keys=[k.model_copy(update={"revoked_at": revoked_at})
                            if k.key_id == rotated.key_id else k for k in ring.keys])
    newest = _directory(revoked, TEST_KEYS.private[c.HUB_SENDER], revoked_at)
    report = message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                     body=REPORT)
    await _refused(stack_client, rid, "unknown_key", report, jws=sign(report, rotated),
                   directory=lambda: newest, naming="revoked")


async def test_operator_actions_act_only_when_the_operators_key_signed_them(
    stack_client: Client, rid: str
) -> None:
    close = OperatorAction(action="close", operator="A. Operator",
                           reason="Closed at the requesting authority's request.")
    before = await _events(stack_client, rid)
    with pytest.raises(Refusal) as unsigned:
        await hub.operate(stack_client, "sco-2010", rid, close)
    assert unsigned.value.problem == "unsigned"
    with pytest.raises(Refusal) as stranger:
        await hub.operate(stack_client, "sco-2010", rid, close, TEST_KEYS.private[KZ])
    assert stranger.value.problem == "unknown_key"
    signed = hub.sign_action(close, TEST_KEYS.private[c.OPERATOR_SIGNER])
    altered = signed.model_copy(update={"action": "withdraw"})
    with pytest.raises(Refusal) as changed:
        await hub.operate(stack_client, "sco-2010", rid, altered)
    assert changed.value.problem == "bad_signature"
    assert await _events(stack_client, rid) == before
    await operate(stack_client, "sco-2010", rid, close)
    assert (await request_state(stack_client, "sco-2010", rid)).status == "closed"


async def test_the_hub_signs_nothing_for_a_request_no_registered_key_opened(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    """A request opened past the gateway with made-up keys (here the tests' own, which the
    stack never registered) is held by its workflow, but the hub's delivery refuses to
    sign its notices: the requested authority receives nothing. The same request signed
    with KZ-GPO's registered key reaches it."""
    _, ru_box = await authorities(RU)
    made_up = await _opened(stack_client)

    genuine = new_request_id()
    request = message("request", request_id=genuine, sender=KZ, recipient=RU)
    await submit(stack_client, request,
                 jws=sign(request, keys.signing_key(stack_settings.secrets_dir, KZ)),
                 directory=keys.SignedDirectory(stack_settings.secrets_dir))
    await ru_box.expect(lambda m: m.request_id == genuine
                        and getattr(m.body, "event", None) == "request_delivered")
    await ru_box.settle(2.0)
    assert [m for m in ru_box.messages if getattr(m, "request_id", None) == made_up] == []
    assert (await request_state(stack_client, "sco-2010", made_up)).status == "sent"


async def test_signed_bytes_padded_with_whitespace_are_bounded_per_request(
    stack_client: Client, rid: str
) -> None:
    """Whitespace in signed JSON is the sender's to choose and is kept as sent, so it
    counts: past the per-request budget of signed bytes a message is refused with
    ``limit_reached``, and the request goes on with messages that fit."""
    await submit(stack_client, message("receipt", request_id=rid, sender=RU, recipient=KZ))
    pad = b" " * (limits.MAX_SIGNED_BYTES_PER_REQUEST * 3 // 8)  # base64url: 4/3 of it

    async def padded_delay() -> str:
        delay = message("delay", request_id=rid, sender=RU, recipient=KZ,
                        body={"reason": "Bank records are archived; retrieval is slow."})
        payload = delay.model_dump_json().encode()[:-1] + pad + b"}"
        signed = parse_inbound(payload)
        await hub.submit(stack_client, signed, jws=sign(payload, TEST_KEYS.private[RU]),
                         directory=TEST_KEYS, digest=hashlib.sha256(payload).hexdigest())
        return signed.message_id

    await padded_delay()
    before = await _events(stack_client, rid)
    with pytest.raises(Refusal) as refused:
        await padded_delay()
    assert refused.value.problem == "limit_reached"
    assert f"at most {limits.MAX_SIGNED_BYTES_PER_REQUEST // 1024} KiB of signed messages" in (
        " ".join(refused.value.reasons))
    assert await _events(stack_client, rid) == before
    await submit(stack_client, message("execution_report", request_id=rid, sender=RU,
                                       recipient=KZ, body=REPORT))
    assert (await request_state(stack_client, "sco-2010", rid)).status == "executed"


async def test_a_rotated_operators_key_is_learnt_from_the_directory_sent_along(
    stack_client: Client, rid: str
) -> None:
    """After ``treatyflow keys rotate OPERATOR`` an open request, holding the directory it
    opened with, takes the newer one the action carries, and acts on the new key."""
    rotated, _, newer = _rotated(c.OPERATOR_SIGNER, "OPERATOR-test-2")
    close = OperatorAction(action="close", operator="A. Operator",
                           reason="Closed at the requesting authority's request.")
    with pytest.raises(Refusal) as stale:  # without the directory: a key it never saw
        await hub.operate(stack_client, "sco-2010", rid, close, rotated)
    assert stale.value.problem == "unknown_key"
    await hub.operate(stack_client, "sco-2010", rid, close, rotated, lambda: newer)
    assert (await request_state(stack_client, "sco-2010", rid)).status == "closed"

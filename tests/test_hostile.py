"""The hostile-input catalogue on the real stack: every case is refused where it must be
(the gateway: an ``error`` naming the problem and a copy in the dead-letter queue; the
broker: the channel closed), no request it aims at applies anything, and the gateway goes
on consuming. The same table ``make security-check`` sends; its transfer cases (KZ–UAE
2018) are sent by a central authority of that treaty. Every message is a JWS compact
serialization (application/jose); the JWS forgeries are in ``jws_cases.py``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aio_pika
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractConnection
from temporalio.client import Client
from temporalio.service import RPCError

from tests.conftest import Mailbox
from treatyflow import constants as c
from treatyflow import keys
from treatyflow.agency import AgencyClient, Unverified
from treatyflow.hub import request_state, transfer_state
from treatyflow.keys import RegistryFile, signing_key
from treatyflow.schemas.messages import parse_inbound
from treatyflow.securitycheck.catalogue import (
    CATALOGUE,
    TREATY,
    Case,
    Kit,
    attempt,
    current_key_ids,
    dead_letters,
    notice,
    open_target,
    request_body,
)
from treatyflow.securitycheck.limit_cases import FORGED_REASON
from treatyflow.securitycheck.runner import HUB_HEADERS, kept_headers
from treatyflow.settings import Settings
from treatyflow.simulation.transfer import TRANSFER_TREATY
from treatyflow.topology import read_passwords

pytestmark = pytest.mark.stack

# Used by no other stack test: the attacker, the other side of its requests, a third party.
ATTACKER, COUNTERPART, THIRD = "KZ-ACA", "CN-SPP", "KG-MIA"
# The transfer cases' attacker and the other central authority (KZ–UAE 2018, art. 5.2).
T_ATTACKER, T_COUNTERPART = "KZ-GPO", "AE-MOJ"


@dataclass
class Side:
    """One procedure's attacker and counterpart, connected."""

    kit: Kit
    attacker: AgencyClient
    attacker_box: Mailbox
    counterpart: AgencyClient
    counterpart_box: Mailbox


@dataclass
class Hostile:
    sides: dict[str, Side]  # by procedure: "sco", "transfer"
    probes: AbstractConnection  # the attacker's own bare AMQP connection, for broker cases
    hub_url: str


@pytest_asyncio.fixture(scope="module")
async def hostile(stack_settings: Settings) -> AsyncIterator[Hostile]:
    """The attacker and its counterpart connected with their own credentials and keys, the
    full key directory (the registry: notices carry originals signed by authorities), and
    a key of the attacker's revoked (rotated out first, as after a compromise)."""
    secrets = stack_settings.secrets_dir
    passwords = read_passwords(secrets)
    revoked = signing_key(secrets, ATTACKER)
    keys.rotate(secrets, ATTACKER)
    keys.revoke(secrets, revoked.key_id)
    directory = RegistryFile(secrets)
    async with AsyncExitStack() as exits:
        opened = {}
        for who in (ATTACKER, COUNTERPART, T_ATTACKER, T_COUNTERPART):
            client = await exits.enter_async_context(AgencyClient(
                who, stack_settings.amqp_url(who, passwords[who]),
                signing_key=signing_key(secrets, who), keys=directory))
            opened[who] = (client, Mailbox(await exits.enter_async_context(
                client.inbox(explicit_ack=False))))
        probes = await aio_pika.connect(stack_settings.amqp_url(ATTACKER, passwords[ATTACKER]))
        exits.push_async_callback(probes.close)
        key_ids = current_key_ids(directory.ring)

        def side(attacker: str, counterpart: str, treaty: str) -> Side:
            client = opened[attacker][0]
            kit = Kit(attacker, counterpart, THIRD, client.signing_key,  # type: ignore[arg-type]
                      treaty=treaty, key_ids=key_ids,
                      revoked=revoked if attacker == ATTACKER else None,
                      burst=stack_settings.sender_burst)
            return Side(kit, *opened[attacker], *opened[counterpart])

        yield Hostile({"sco": side(ATTACKER, COUNTERPART, TREATY),
                       "transfer": side(T_ATTACKER, T_COUNTERPART, TRANSFER_TREATY)},
                      probes, stack_settings.amqp_url(c.HUB_USER, passwords[c.HUB_USER]))


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.name)
async def test_hostile_input_is_refused_and_changes_nothing(
    case: Case, hostile: Hostile, stack_client: Client
) -> None:
    h = hostile.sides[case.procedure]
    applied: list[str] = []
    if case.target is not None:
        applied = await open_target(h.kit, case.target, h.attacker, h.attacker_box,
                                    h.counterpart, h.counterpart_box)
    result = await attempt(case, h.kit, h.attacker, h.attacker_box, hostile.probes)
    assert result.refused_with == case.problem, result.reasons
    assert result.as_expected, f"the reasons do not say {result.missing}: {result.reasons}"
    if case.layer == "gateway":
        assert result.reasons, "the error names the problem"
        assert result.message_id is not None
        kept = await dead_letters(hostile.hub_url, {result.message_id})
        assert kept == {result.message_id: case.problem}
        # Issue 12: the copy carries the hub's headers only, none of the sender's (a forged
        # reason or sender never passes for the hub's), and names the real sender.
        headers = await kept_headers(hostile.hub_url, result.message_id)
        assert headers is not None and set(headers) <= HUB_HEADERS, headers
        assert headers[c.HEADER_ORIGINAL_USER] == h.kit.attacker
        assert FORGED_REASON not in str(headers[c.HEADER_REASON])
    if case.flood:  # hundreds of copies, which would slow every later reader of the queue
        await clear_flood(hostile.hub_url, case.build(h.kit).body)  # type: ignore[misc]
    if case.target is not None:
        rid = h.kit.targets[case.target]
        state = (await transfer_state(stack_client, TRANSFER_TREATY, rid)
                 if case.procedure == "transfer"
                 else await request_state(stack_client, TREATY, rid))
        assert state.applied == applied
    elif result.request_id is not None:  # a request of its own: never started, under any treaty
        for treaty in (TREATY, TRANSFER_TREATY):
            with pytest.raises(RPCError, match="not found|NotFound"):
                await stack_client.get_workflow_handle(
                    c.workflow_id(treaty, result.request_id)).describe()


async def clear_flood(url: str, body: bytes) -> None:
    from treatyflow.workers import dead_letter_queue as dlq

    async with dlq.reading(url, wait=30) as held:
        for letter in held.letters:
            if letter.body == body:
                await held.remove(letter)


async def test_gateway_still_consumes_and_mixed_scripts_arrive_intact(
    hostile: Hostile, stack_client: Client
) -> None:
    h = hostile.sides["sco"]
    body = request_body(facts="Средства — через ТОО «Ақжол»; 付款人 王伟; account 123.")
    fresh = parse_inbound(json.dumps(h.kit.envelope("request", body=body)))
    await h.attacker.publish(fresh)
    await h.attacker_box.expect(notice(fresh.request_id, "request_accepted"))
    delivered = await h.counterpart_box.expect(notice(fresh.request_id, "request_delivered"))
    assert delivered.body.detail["request"]["facts"] == body["facts"]  # type: ignore[union-attr]
    state = await request_state(stack_client, TREATY, fresh.request_id)
    assert state.request.facts == body["facts"]  # stored as sent
    # Nothing the broker refused reached the counterpart's inbox in the hub's name.
    await h.counterpart_box.settle(1)
    assert not [m for m in h.counterpart_box.messages if isinstance(m, Unverified)]


def test_catalogue_covers_the_brief() -> None:
    names = [case.name for case in CATALOGUE]
    assert len(names) == len(set(names))
    gateway = [case for case in CATALOGUE if case.layer == "gateway"]
    assert len(gateway) >= 25
    codes = {case.problem for case in gateway}
    assert {"malformed", "oversize", "wrong_content_type", "sender_mismatch", "bad_signature",
            "unknown_treaty", "implausible_time", "replayed_message_id", "not_allowed_now",
            "request_closed", "unsigned", "unknown_key", "unsupported_version"} <= codes
    assert {case.flag for case in CATALOGUE} >= {"cross_inbox_read", "forged_sender",
                                                  "tampered_signature"}
    # The JWS wire's own forgeries (RFC 7515 §10, RFC 8725) and, issue 12, byte limits,
    # forged hub headers, lanes and a flood: the cases each refusal answers.
    refused_as = {
        "bad_signature": ["payload_swapped", "alg_none_with_signature", "hs256_public_key",
                          "altered_after_signing", "embedded_jwk", "embedded_jku",
                          "embedded_x5c", "crit_extension", "b64_false", "truncated_signature"],
        "malformed": ["alg_none_empty_signature", "duplicate_kid_header",
                      "duplicate_payload_member", "json_serialization", "huge_header",
                      "forged_hub_headers", "strict_types"],
        "unknown_key": ["kid_of_other_authority", "revoked_key"],
        "unsigned": ["unsigned"],
        "unsupported_version": ["version_1_envelope", "unknown_schema_version"],
        "oversize": ["oversized_headers"],
        "PRECONDITION_FAILED": ["body_over_broker_limit"],
        "rate_limited": ["flood"],
        "ACCESS_REFUSED": ["publish_into_other_lane", "read_other_lane", "wildcard_routing_key"],
    }
    expected = {name: problem for problem, names in refused_as.items() for name in names}
    by_name = {case.name: case.problem for case in CATALOGUE}
    assert {name: by_name.get(name) for name in expected} == expected
    # Issue 5: the transfer procedure's own hostile inputs, each a refusal of its own kind.
    transfer = {case.problem for case in gateway if case.procedure == "transfer"}
    assert {"unsigned", "unknown_key", "bad_signature", "sender_mismatch", "not_allowed_now",
            "invalid_request", "malformed", "replayed_message_id"} <= transfer

# That docs/operators/security-check.md documents every code and counts the cases:
# tests/test_docs.py (no stack needed).

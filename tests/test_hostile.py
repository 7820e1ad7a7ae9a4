"""The hostile-input catalogue on the real stack: every case is refused where it must be
(the gateway: an ``error`` naming the problem and a copy in the dead-letter queue; the
broker: the channel closed), no request it aims at applies anything, and the gateway goes
on consuming. The same table ``make security-check`` sends."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractConnection
from temporalio.client import Client
from temporalio.service import RPCError

from tests.conftest import Mailbox
from treatyflow import constants as c
from treatyflow.agency import AgencyClient, Unverified
from treatyflow.hub import request_state
from treatyflow.keys import RegistryFile, signing_key
from treatyflow.schemas.messages import parse_inbound
from treatyflow.securitycheck.catalogue import (
    CATALOGUE,
    TREATY,
    Case,
    Kit,
    attempt,
    dead_letters,
    notice,
    open_target,
    request_body,
)
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords

pytestmark = pytest.mark.stack

# Used by no other stack test: the attacker, the other side of its requests, a third party.
ATTACKER, COUNTERPART, THIRD = "KZ-ACA", "CN-SPP", "KG-MIA"
README = (Path(__file__).parent.parent / "README.md").read_text()


@dataclass
class Hostile:
    kit: Kit
    attacker: AgencyClient
    attacker_box: Mailbox
    counterpart: AgencyClient
    counterpart_box: Mailbox
    probes: AbstractConnection  # the attacker's own bare AMQP connection, for broker cases
    hub_url: str


@pytest_asyncio.fixture(scope="module")
async def hostile(stack_settings: Settings) -> AsyncIterator[Hostile]:
    """The attacker and its counterpart connected with their own credentials and keys."""
    secrets = stack_settings.secrets_dir
    passwords = read_passwords(secrets)
    hub_keys = RegistryFile(secrets)
    async with AsyncExitStack() as exits:
        opened = []
        for who in (ATTACKER, COUNTERPART):
            client = await exits.enter_async_context(AgencyClient(
                who, stack_settings.amqp_url(who, passwords[who]),
                signing_key=signing_key(secrets, who), hub_keys=hub_keys))
            opened.append((client, Mailbox(await exits.enter_async_context(client.inbox()))))
        probes = await aio_pika.connect(stack_settings.amqp_url(ATTACKER, passwords[ATTACKER]))
        exits.push_async_callback(probes.close)
        (attacker, attacker_box), (counterpart, counterpart_box) = opened
        yield Hostile(Kit(ATTACKER, COUNTERPART, THIRD, attacker.signing_key),  # type: ignore[arg-type]
                      attacker, attacker_box, counterpart, counterpart_box, probes,
                      stack_settings.amqp_url(c.HUB_USER, passwords[c.HUB_USER]))


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.name)
async def test_hostile_input_is_refused_and_changes_nothing(
    case: Case, hostile: Hostile, stack_client: Client
) -> None:
    h = hostile
    applied: list[str] = []
    if case.target is not None:
        applied = await open_target(h.kit, case.target, h.attacker, h.attacker_box,
                                    h.counterpart, h.counterpart_box)
    result = await attempt(case, h.kit, h.attacker, h.attacker_box, h.probes)
    assert result.refused_with == case.problem, result.reasons
    if case.layer == "gateway":
        assert result.reasons, "the error names the problem"
        assert result.message_id is not None
        kept = await dead_letters(h.hub_url, {result.message_id})
        assert kept == {result.message_id: case.problem}
    if case.target is not None:
        state = await request_state(stack_client, TREATY, h.kit.targets[case.target])
        assert state.applied == applied
    elif result.request_id is not None:  # a request of its own: never started
        with pytest.raises(RPCError, match="not found|NotFound"):
            await stack_client.get_workflow_handle(
                c.workflow_id(TREATY, result.request_id)).describe()


async def test_gateway_still_consumes_and_mixed_scripts_arrive_intact(
    hostile: Hostile, stack_client: Client
) -> None:
    h = hostile
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


def test_catalogue_covers_the_brief_and_every_code_is_documented() -> None:
    names = [case.name for case in CATALOGUE]
    assert len(names) == len(set(names))
    gateway = [case for case in CATALOGUE if case.layer == "gateway"]
    assert len(gateway) >= 25
    codes = {case.problem for case in gateway}
    assert {"malformed", "oversize", "wrong_content_type", "sender_mismatch", "bad_signature",
            "unknown_treaty", "implausible_time", "replayed_message_id", "not_allowed_now",
            "request_closed"} <= codes
    assert not [code for code in codes if f"`{code}`" not in README]
    assert {case.flag for case in CATALOGUE} >= {"cross_inbox_read", "forged_sender",
                                                  "tampered_signature"}
    assert re.search(rf"\b{len(CATALOGUE)} today\b", README), "README's count of cases"

"""Integration: competent authorities added and removed while the stack runs (art. 2.2),
with the real RabbitMQ, Temporal dev server, worker and gateway, none restarted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.conftest import (
    KZ,
    REPORT,
    RU,
    Mailbox,
    cli,
    dead_letter,
    error_about,
    event,
    record_entries,
)
from tests.factories import message, new_request_id, request_body
from treatyflow import constants as c
from treatyflow.agency import AgencyClient
from treatyflow.keys import RegistryFile, signing_key
from treatyflow.record import views
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords

pytestmark = pytest.mark.stack


def _new_id() -> str:
    return f"KZ-N{uuid.uuid4().hex[:6].upper()}"


@contextlib.asynccontextmanager
async def connected(settings: Settings, authority: str
                    ) -> AsyncIterator[tuple[AgencyClient, Mailbox]]:
    """``authority`` on the stack with the password and key ``authority add`` made."""
    password = read_passwords(settings.secrets_dir)[authority]
    async with AgencyClient(authority, settings.amqp_url(authority, password),
                            signing_key=signing_key(settings.secrets_dir, authority),
                            keys=RegistryFile(settings.secrets_dir)) as client, \
            client.inbox(explicit_ack=False) as inbox:
        yield client, Mailbox(inbox)


def _add(settings: Settings, authority: str) -> str:
    done = cli(settings, "authority", "add", "--treaty", "sco-2010", "--party", "KZ",
               "--id", authority, "--name", "Agency for Financial Monitoring")
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _executed(requester: AgencyClient, requester_box: Mailbox, ru: AgencyClient,
                    ru_box: Mailbox, sender: str, rid: str) -> None:
    """RU-MIA receives (or is deemed to have received, 5 treaty days after delivery)
    and executes ``rid``; the requester is told."""
    await ru_box.expect(event(rid, "request_delivered"))
    await ru.publish(message("receipt", request_id=rid, sender=RU, recipient=sender, body={}))
    await requester_box.expect(lambda m: event(rid, "received")(m) or event(
        rid, "receipt_deemed")(m), timeout=20)
    await ru.publish(message("execution_report", request_id=rid, sender=RU, recipient=sender,
                             body=REPORT))
    executed = await requester_box.expect(event(rid, "executed"), timeout=20)
    assert executed.body.status == "executed"


async def test_an_authority_added_live_sends_a_request_that_reaches_executed(
        authorities, stack_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    kz, kz_box = await authorities(KZ)
    ru, ru_box = await authorities(RU)
    new = _new_id()
    # Traffic between others goes on while the authority is added: none of it is lost.
    sent: list[str] = []

    async def traffic() -> None:
        while True:
            rid = new_request_id()
            await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                                     body=request_body()))
            sent.append(rid)
            await asyncio.sleep(0.1)

    flowing = asyncio.create_task(traffic())
    try:
        said = await asyncio.to_thread(_add, stack_settings, new)
    finally:
        flowing.cancel()
    assert f"lists {new}" in said
    for rid in sent:
        await kz_box.expect(event(rid, "request_accepted"), timeout=20)
    assert len(sent) >= 3

    async with connected(stack_settings, new) as (agency, box):
        rid = new_request_id(new)
        await agency.publish(message("request", request_id=rid, sender=new, recipient=RU,
                                     body=request_body()))
        await box.expect(event(rid, "request_accepted"), timeout=20)
        await _executed(agency, box, ru, ru_box, new, rid)


async def test_a_removed_authority_gets_no_new_request_and_its_running_one_ends(
        authorities, stack_settings: Settings, stack_client: Client) -> None:  # type: ignore[no-untyped-def]
    kz, kz_box = await authorities(KZ)
    ru, ru_box = await authorities(RU)
    gone = _new_id()
    added = _add(stack_settings, gone)
    async with connected(stack_settings, gone) as (agency, box):
        running = new_request_id(gone)
        await agency.publish(message("request", request_id=running, sender=gone,
                                     recipient=RU, body=request_body()))
        await box.expect(event(running, "request_accepted"), timeout=20)

        removed = cli(stack_settings, "authority", "remove", "--treaty", "sco-2010", "--id",
                      gone, "--reason", "the party's note verbale of 2026-05-01",
                      "--operator", "A. Operator")
        assert removed.returncode == 0, removed.stderr
        assert "leaves" in removed.stdout and "1 running request(s)" in removed.stdout
        # Both changes, made at once, are in the hub's record, signed by the operators.
        login = pwd.getpwuid(os.getuid()).pw_name  # `cli` passes no LOGNAME or USER
        for said, line in ((added, f"list changed by {login}: add {gone} under sco-2010, "),
                           (removed.stdout, "list changed by A. Operator: remove "
                            f"{gone} under sco-2010, profile version ")):
            change_id = re.search(r"in the hub's record as (KZ-LST-[A-Z0-9]+)", said)
            assert change_id is not None, said
            (entry,) = await record_entries(stack_settings, change_id[1])
            assert (entry.kind, entry.actor, entry.procedure) == (
                "operator", c.OPERATOR_SIGNER, "amendment")
            assert views.says(entry).startswith(line), views.says(entry)
        assert views.says(entry).endswith("(the party's note verbale of 2026-05-01)")

        # A new request to it, and one from it: refused, said why, dead-lettered.
        to_it = message("request", request_id=new_request_id(), sender=KZ, recipient=gone,
                        body=request_body())
        await kz.publish(to_it)
        error = await kz_box.expect(error_about(to_it.message_id))
        assert error.body.problem == "authority_removed"
        assert f"recipient {gone} is no longer a competent authority" in error.body.reasons[0]
        kept = await dead_letter(stack_settings, to_it.message_id)
        assert kept.headers[c.HEADER_PROBLEM] == "authority_removed"
        from_it = message("request", request_id=new_request_id(gone), sender=gone,
                          recipient=RU, body=request_body())
        await agency.publish(from_it)
        assert (await box.expect(error_about(from_it.message_id))).body.problem == \
            "authority_removed"
        await dead_letter(stack_settings, from_it.message_id)

        # Its running request goes on to its end (art. 13.3 by analogy).
        await _executed(agency, box, ru, ru_box, gone, running)

    # Executed, the request runs on through its art. 7 consent phase (90 treaty days):
    # the authority is not retired while it does.
    early = cli(stack_settings, "authority", "retire", "--id", gone)
    assert early.returncode == 1 and "1 running request(s)" in early.stdout
    await stack_client.get_workflow_handle(c.workflow_id("sco-2010", running)).terminate(
        "the consent phase is over (shortened for the test)")

    async def retired() -> str:
        for _ in range(20):  # visibility follows the workflow's last task
            done = cli(stack_settings, "authority", "retire", "--id", gone)
            if done.returncode == 0:
                return done.stdout
            await asyncio.sleep(0.5)
        raise AssertionError(done.stdout + done.stderr)

    assert "retired" in await retired()
    password = read_passwords(stack_settings.secrets_dir)[gone]
    import aio_pika

    async with await aio_pika.connect(stack_settings.amqp_url(gone, password)) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(c.EXCHANGE_HUB, ensure=False)
        with pytest.raises(Exception, match="ACCESS_REFUSED|access"):  # reads only now
            await exchange.publish(aio_pika.Message(b"{}", user_id=gone), routing_key=gone)


async def test_an_amendment_communicated_by_the_operators_takes_effect_through_the_gateway(
        stack_settings: Settings, stack_client: Client, tmp_path: Path) -> None:
    """Art. 2.2 end to end: notified with ``--received-on``, communicated (both signed
    with the operators' key by the CLI), in effect on its date: the version is published
    by the gateway on its publisher queue. An unsigned action is refused."""
    from datetime import date

    from temporalio.client import WorkflowUpdateFailedError

    from treatyflow.schemas.amendment import AmendmentStatus, Communication
    from treatyflow.workflows.amendment_workflow import AmendmentOfAuthorities

    new = _new_id()
    today = date.today().isoformat()
    notified = cli(stack_settings, "authority", "add", "--treaty", "sco-2010", "--party",
                   "KZ", "--id", new, "--name", "Agency for Financial Monitoring",
                   "--received-on", today, "--effective-on", today)
    assert notified.returncode == 0, notified.stderr
    amendment = re.search(r"amendment (KZ-AMD-[A-Z0-9]+) notified", notified.stdout)
    assert amendment is not None, notified.stdout
    handle = stack_client.get_workflow_handle_for(
        AmendmentOfAuthorities.run, c.workflow_id("sco-2010", amendment[1]))

    with pytest.raises(WorkflowUpdateFailedError) as refused:  # whoever reaches Temporal
        await handle.execute_update(AmendmentOfAuthorities.communicate,
                                    Communication(operator="Not An Operator"))
    assert "must be signed with the operators' key" in str(refused.value.cause)

    told = cli(stack_settings, "authority", "communicated", amendment[1], "--treaty",
               "sco-2010", "--operator", "A. Operator", "--note", "note verbale")
    assert told.returncode == 0, told.stderr
    done = await asyncio.wait_for(handle.result(), timeout=60)
    assert done.status is AmendmentStatus.IN_EFFECT and done.profile is not None
    listed = cli(stack_settings, "authority", "show", amendment[1], "--treaty", "sco-2010")
    assert "amendment_in_effect" in listed.stdout
    # The depositary's two actions are in the hub's record, as the operators signed them,
    # and export as evidence that verifies offline.
    bundle = tmp_path / "amendment.json"
    exported = cli(stack_settings, "evidence", "export", amendment[1], "--treaty", "sco-2010",
                   "-o", str(bundle))
    assert exported.returncode == 0, exported.stderr
    entries = json.loads(bundle.read_text())["entries"]
    assert [(e["kind"], e["actor"], e["procedure"]) for e in entries] == [
        ("operator", c.OPERATOR_SIGNER, "amendment")] * 2
    checked = cli(stack_settings, "evidence", "verify", str(bundle))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = [views.says(e) for e in await record_entries(stack_settings, amendment[1])]
    assert lines == [
        f"amendment {amendment[1]} notified: add {new} under sco-2010, received {today}, in "
        f"effect on {today}",
        "amendment communicated to the parties by A. Operator: note verbale"]
    history = await handle.fetch_history()
    (scheduled,) = [e.activity_task_scheduled_event_attributes for e in history.events
                    if e.HasField("activity_task_scheduled_event_attributes")]
    assert scheduled.task_queue.name == c.publisher_queue(c.TASK_QUEUE)
    async with connected(stack_settings, new) as (agency, box):  # listed: it may send
        rid = new_request_id(new)
        await agency.publish(message("request", request_id=rid, sender=new, recipient=RU,
                                     body=request_body()))
        await box.expect(event(rid, "request_accepted"), timeout=20)

"""``treatyflow dead-letters`` on the real stack: list with filters without changing the
queue, show one, purge with an audit line, replay a valid message so that its request
advances, replay an invalid one so that it is refused again, and the gauges."""

from __future__ import annotations

import asyncio
import json
import re
import stat
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from temporalio.client import Client

from tests.conftest import KZ, RU, Opened, Parties, cli, error_about, event, open_request, status
from tests.factories import message, new_message_id, new_request_id
from treatyflow import constants as c
from treatyflow.schemas.messages import InboundMessage
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords
from treatyflow.workers import dead_letter_queue as dlq

pytestmark = pytest.mark.stack

OPERATOR = ("--operator", "alice")


def listed(settings: Settings, *filters: str) -> list[dict[str, Any]]:
    done = cli(settings, "dead-letters", "list", "--json", *filters)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["message_id"]) for r in rows]


async def plant(settings: Settings, token: str, of: InboundMessage, *, sender: str,
                problem: str, reason: str, at: datetime | None = None) -> None:
    """Put a message into hub.dead-letter as the gateway does (its headers, the hub's
    user), as if it had been refused while the hub could not take it."""
    password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    connection = await aio_pika.connect(settings.amqp_url(c.HUB_USER, password))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(c.EXCHANGE_DLX, ensure=False)
        await exchange.publish(aio_pika.Message(
            body=token.encode(), content_type=c.CONTENT_TYPE_JWS, message_id=of.message_id,
            type=of.kind, correlation_id=of.request_id, user_id=c.HUB_USER,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={c.HEADER_PROBLEM: problem, c.HEADER_REASON: reason,
                     "x-original-user-id": sender, "x-original-message-id": of.message_id,
                     "x-refused-at": (at or datetime.now(UTC)).isoformat()}), routing_key="")


def since() -> str:
    return (datetime.now(UTC) - timedelta(seconds=1)).isoformat()


def clean(done: Any) -> None:
    assert "Traceback" not in done.stderr + done.stdout


async def test_list_filters_and_show_change_nothing(
    kz_ru: Parties, stack_settings: Settings
) -> None:
    start = since()
    kz, kz_box, ru, ru_box = kz_ru
    unsigned = message("receipt", request_id=new_request_id(), sender=KZ, recipient=RU,
                       body={})
    await kz.publish_raw(unsigned.model_dump_json().encode(), content_type="application/json",
                         message_id=unsigned.message_id)
    stray = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ, body={})
    await ru.publish(stray)
    forged = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ, body={})
    token = kz.sign(forged)  # KZ's key over an envelope naming RU, published by RU
    await ru.publish_signed(token, forged)
    await kz_box.expect(error_about(unsigned.message_id))
    await ru_box.expect(error_about(stray.message_id))
    await ru_box.expect(error_about(forged.message_id))
    ours = {unsigned.message_id, stray.message_id, forged.message_id}

    rows = {r["message_id"]: r for r in listed(stack_settings, "--since", start)
            if r["message_id"] in ours}
    assert set(rows) == ours
    assert (rows[unsigned.message_id]["sender"], rows[unsigned.message_id]["problem"]) == (
        KZ, "unsigned")
    assert (rows[stray.message_id]["sender"], rows[stray.message_id]["problem"]) == (
        RU, "unknown_request")
    assert (rows[forged.message_id]["sender"], rows[forged.message_id]["problem"]) == (
        RU, "unknown_key")
    assert rows[forged.message_id]["size"] == len(token)
    assert f"not a key of {RU}" in str(rows[forged.message_id]["reason"])
    assert set(ids(listed(stack_settings, "--since", start, "--problem", "unsigned"))) & ours \
        == {unsigned.message_id}
    assert set(ids(listed(stack_settings, "--since", start, "--sender", RU))) & ours == {
        stray.message_id, forged.message_id}
    assert not set(ids(listed(stack_settings, "--until", start))) & ours
    text = cli(stack_settings, "dead-letters", "list", "--sender", KZ, "--since", start)
    assert text.returncode == 0
    line = next(x for x in text.stdout.splitlines() if unsigned.message_id in x)
    assert re.search(rf"{KZ}\s+unsigned\s+\d+ B\s+{unsigned.message_id}\s+\S", line), line

    shown = cli(stack_settings, "dead-letters", "show", forged.message_id)
    assert shown.returncode == 0, shown.stderr
    assert token in shown.stdout  # the body as sent
    assert forged.request_id in shown.stdout  # its decoded payload
    assert "unknown_key" in shown.stdout and f"not a key of {RU}" in shown.stdout
    record = json.loads(cli(stack_settings, "dead-letters", "show", forged.message_id,
                            "--json").stdout)[0]
    assert record["body"] == token
    assert record["payload"]["sender"] == RU and record["jws_header"]["kid"].startswith(KZ)
    assert record["headers"][c.HEADER_PROBLEM] == "unknown_key"

    missing = cli(stack_settings, "dead-letters", "show", new_message_id())
    assert missing.returncode == 1 and "no message in hub.dead-letter" in missing.stderr
    clean(missing)
    # Reading gave every message back: all three still there, once each.
    again = [r for r in listed(stack_settings, "--since", start) if r["message_id"] in ours]
    assert sorted(ids(again)) == sorted(ours)


async def test_listing_keeps_the_queue_order(stack_settings: Settings) -> None:
    problem = f"test_order_{new_message_id()[:8]}"
    planted = [message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ,
                       body={}) for _ in range(40)]
    # Planted under the readers' lock: a message dead-lettered while another reader (the
    # gateway's depth gauge) gives the queue back lands before those not yet given back.
    password = read_passwords(stack_settings.secrets_dir)[c.HUB_USER]
    async with await aio_pika.connect(stack_settings.amqp_url(c.HUB_USER, password)) as held:
        await dlq.lock(held, wait=30)
        for m in planted:
            await plant(stack_settings, f"x.{m.message_id}.y", m, sender=RU, problem=problem,
                        reason="planted in order")
    before = ids(listed(stack_settings))
    for _ in range(3):
        assert ids(listed(stack_settings)) == before  # no reordering, no copy, no loss
    assert [i for i in before if i in {m.message_id for m in planted}] == [
        m.message_id for m in planted]
    done = cli(stack_settings, "dead-letters", "purge", "--problem", problem, *OPERATOR,
               "--reason", "planted by the order test")
    assert done.returncode == 0, done.stderr
    assert "purged 40 message(s)" in done.stdout
    assert ids(listed(stack_settings, "--problem", problem)) == []


async def test_purge_one_with_a_reason_is_audited(authorities, stack_settings: Settings) -> None:
    kz, kz_box = await authorities(KZ)
    junk = message("receipt", request_id=new_request_id(), sender=KZ, recipient=RU, body={})
    await kz.publish_raw(junk.model_dump_json().encode(), content_type="application/json",
                         message_id=junk.message_id)
    await kz_box.expect(error_about(junk.message_id))
    assert junk.message_id in ids(listed(stack_settings, "--problem", "unsigned"))

    no_reason = cli(stack_settings, "dead-letters", "purge", junk.message_id, *OPERATOR)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    short = cli(stack_settings, "dead-letters", "purge", junk.message_id, *OPERATOR,
                "--reason", "junk")
    assert short.returncode == 2 and "10 characters" in short.stderr
    everything = cli(stack_settings, "dead-letters", "purge", *OPERATOR,
                     "--reason", "no filter given at all")
    assert everything.returncode == 2 and "--all" in everything.stderr
    for done in (no_reason, short, everything):
        clean(done)
    assert junk.message_id in ids(listed(stack_settings))

    reason = "test system sent plain JSON; told the agency"
    done = cli(stack_settings, "dead-letters", "purge", junk.message_id, *OPERATOR,
               "--reason", reason)
    assert done.returncode == 0, done.stderr
    assert junk.message_id not in ids(listed(stack_settings))
    audit = stack_settings.state_dir / "audit" / "dead-letters.jsonl"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    last = json.loads(audit.read_text().splitlines()[-1])
    assert (last["operator"], last["action"], last["message_ids"], last["reason"]) == (
        "alice", "purge", [junk.message_id], reason)
    assert datetime.fromisoformat(last["at"]) > datetime.now(UTC) - timedelta(minutes=1)
    logged = [json.loads(x) for x in (stack_settings.logs_dir / "dead-letters.log")
              .read_text().splitlines() if junk.message_id in x]
    assert [(x["event"], x["operator"], x["reason"]) for x in logged] == [
        ("dead letters purge", "alice", reason)]
    shown = json.loads(cli(stack_settings, "dead-letters", "audit", "--json").stdout)
    assert shown[-1] == last
    assert junk.message_id in cli(stack_settings, "dead-letters", "list", "--audit").stdout
    gone = cli(stack_settings, "dead-letters", "purge", junk.message_id, *OPERATOR,
               "--reason", reason)
    assert gone.returncode == 1 and "no message" in gone.stderr
    assert len(audit.read_text().splitlines()) == len(shown)  # nothing done, nothing recorded


async def test_replay_of_a_valid_message_advances_its_request(
    kz_ru: Parties, stack_client: Client, stack_settings: Settings
) -> None:
    kz, kz_box, _, ru_box = kz_ru
    # KZ's request, signed by KZ, dead-lettered as the broker does when the gateway failed
    # on it at every delivery (Temporal down, say).
    rid = new_request_id(KZ)  # a request id begins with its requester's id
    request = message("request", request_id=rid, sender=KZ, recipient=RU)
    await plant(stack_settings, kz.sign(request), request, sender=KZ,
                problem="delivery_limit", reason="the gateway failed at every delivery")
    assert ids(listed(stack_settings, "--problem", "delivery_limit", "--sender", KZ))[-1] == \
        request.message_id
    done = cli(stack_settings, "dead-letters", "replay", request.message_id,
               "--operator", "bob", "--reason", "Temporal was down; resubmitting")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{request.message_id}: applied" in done.stdout
    await kz_box.expect(event(rid, "request_accepted"))  # the sender's notice
    delivered = await ru_box.expect(event(rid, "request_delivered"))
    assert delivered.body.originals == [kz.sign(request)]  # the JWS as KZ signed it
    state = await status(stack_client, rid)
    assert [e.message_id for e in state.timeline].count(request.message_id) == 1
    assert request.message_id not in ids(listed(stack_settings))
    audit = json.loads(cli(stack_settings, "dead-letters", "audit", "--json").stdout)[-1]
    assert (audit["operator"], audit["action"], audit["message_ids"]) == (
        "bob", "replay", [request.message_id])


async def test_replay_of_a_message_already_applied_is_a_duplicate(
    opened: Opened, stack_client: Client, stack_settings: Settings
) -> None:
    _, kz_box, ru, _, rid = opened
    receipt = message("receipt", request_id=rid, sender=RU, recipient=KZ, body={})
    await ru.publish(receipt)
    await kz_box.expect(event(rid, "received"))
    # The same bytes dead-lettered too (applied, but the broker's ack was lost).
    await plant(stack_settings, ru.last_sent or "", receipt, sender=RU,
                problem="delivery_limit", reason="the ack was lost")
    done = cli(stack_settings, "dead-letters", "replay", receipt.message_id, *OPERATOR,
               "--reason", "checking a lost acknowledgement")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{receipt.message_id}: duplicate" in done.stdout
    state = await status(stack_client, rid)
    assert [e.message_id for e in state.timeline].count(receipt.message_id) == 1
    assert receipt.message_id not in ids(listed(stack_settings))


async def test_replay_of_an_invalid_message_is_refused_again(
    kz_ru: Parties, stack_client: Client, stack_settings: Settings
) -> None:
    kz, kz_box, ru, ru_box = kz_ru
    stray = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ, body={})
    await ru.publish(stray)
    await ru_box.expect(error_about(stray.message_id))
    rid = await open_request(kz, kz_box, ru_box)
    # Planted as RU's, but signed by KZ's key (a replay verifies against RU's keys)...
    forged = message("receipt", request_id=rid, sender=RU, recipient=KZ, body={})
    await plant(stack_settings, kz.sign(forged), forged, sender=RU, problem="delivery_limit",
                reason="planted")
    # ...and signed by RU's key, naming KZ as its sender.
    posing = message("withdrawal", request_id=rid, sender=KZ, recipient=RU,
                     body={"reason": "Not RU's to withdraw."})
    await plant(stack_settings, ru.sign(posing), posing, sender=RU, problem="delivery_limit",
                reason="planted")
    started = since()
    for refused, problem in ((stray, "unknown_request"), (forged, "unknown_key"),
                             (posing, "sender_mismatch")):
        done = cli(stack_settings, "dead-letters", "replay", refused.message_id, *OPERATOR,
                   "--reason", "checking that it is refused again")
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"{refused.message_id}: refused again: {problem}" in done.stdout
        clean(done)
        back = [r for r in listed(stack_settings, "--since", started)
                if r["message_id"] == refused.message_id]
        assert [(r["problem"], r["sender"], r["replayed_by"]) for r in back] == [
            (problem, RU, "alice")]
    state = await status(stack_client, rid)
    assert state.status != "withdrawn"
    assert not {forged.message_id, posing.message_id} & {e.message_id for e in state.timeline}


def gauges(settings: Settings) -> dict[str, float]:
    url = f"http://{settings.metrics_host}:{settings.gateway_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - local stack
        text = answer.read().decode()
    return {name: float(value) for name, value in re.findall(
        r"^(treatyflow_dead_letter_\w+) (\S+)$", text, re.MULTILINE)}


async def until(settings: Settings, ok: Any, timeout: float = 40) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = gauges(settings)
        if ok(seen):
            return seen
        if loop.time() > deadline:
            raise AssertionError(f"gauges stayed at {seen}")
        await asyncio.sleep(0.5)


async def test_gauges_show_depth_and_oldest_age(stack_settings: Settings) -> None:
    problem = f"test_gauge_{new_message_id()[:8]}"
    old = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ, body={})
    await plant(stack_settings, f"x.{old.message_id}.y", old, sender=RU, problem=problem,
                reason="two hours old", at=datetime.now(UTC) - timedelta(hours=2))
    depth = len(listed(stack_settings))
    seen = await until(stack_settings, lambda g: g.get(
        "treatyflow_dead_letter_oldest_age_seconds", 0) >= 7200)
    assert seen["treatyflow_dead_letter_oldest_age_seconds"] < 7200 + 120
    assert seen["treatyflow_dead_letter_depth"] == depth
    done = cli(stack_settings, "dead-letters", "purge", "--problem", problem, *OPERATOR,
               "--reason", "planted by the gauge test")
    assert done.returncode == 0, done.stderr
    seen = await until(stack_settings, lambda g: g[
        "treatyflow_dead_letter_oldest_age_seconds"] < 7200)
    assert seen["treatyflow_dead_letter_depth"] == depth - 1

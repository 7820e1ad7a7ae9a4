"""Integration, KZ–UAE 2018: a full transfer of a convicted person through the real
RabbitMQ and the real Temporal dev server, every message carried by the two foreign
ministries (art. 5.1, 6.1) and signed by whoever sends it (art. 6.2)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client

from tests.conftest import Mailbox, error_about, event, eventually, hand_over
from tests.test_demo_and_cli import _cli
from tests.test_observability import scrape, value
from tests.transfer_factories import (
    AE,
    AE_MFA,
    KZ,
    KZ_MFA,
    TREATY,
    handover,
    mid,
    request_body,
    transit_body,
    transit_message,
)
from tests.transfer_factories import message as transfer_message
from treatyflow.constants import workflow_id
from treatyflow.hub import transfer_state
from treatyflow.schemas.messages import NoticeMessage
from treatyflow.settings import Settings

pytestmark = pytest.mark.stack

UZ = "UZ-GPO"  # the transit state's authority (art. 16)


def _about(request_id: str, name: str, message_id: str):  # type: ignore[no-untyped-def]
    def match(m: Any) -> bool:
        return (isinstance(m, NoticeMessage) and m.request_id == request_id
                and m.body.event == name and m.body.about_message_id == message_id)
    return match


async def _listed(settings: Settings, wf_id: str, *filters: str,
                  wanted: bool = True) -> dict[str, Any] | None:
    """The row `treatyflow list --json` shows for ``wf_id`` under ``filters`` (visibility
    follows the workflow's last task: asked again for a few seconds when wanted)."""
    for _ in range(20 if wanted else 1):
        listed = _cli(settings, "list", *filters, "--limit", "0", "--json")
        assert listed.returncode == 0, listed.stderr
        row = next((r for r in json.loads(listed.stdout) if r["workflow_id"] == wf_id), None)
        if row is not None or not wanted:
            return row
        await asyncio.sleep(0.5)
    return None


class Channel:
    """The two central authorities and the two foreign ministries, each on its own
    connection with its own key."""

    def __init__(self, request_id: str, clients: dict[str, Any], boxes: dict[str, Mailbox]):
        self.rid = request_id
        self.clients = clients
        self.boxes = boxes

    async def send(self, kind: str, sender: str, body: dict[str, Any], **kw: Any) -> str:
        recipient = AE if sender == KZ else KZ
        m = transfer_message(kind, sender, recipient, body, request_id=self.rid,
                             sent_at=datetime.now(UTC), **kw)
        await self.clients[sender].publish(m)
        ministries = (KZ_MFA, AE_MFA) if sender == KZ else (AE_MFA, KZ_MFA)
        for ministry, nxt in zip(ministries, (*ministries[1:], recipient), strict=True):
            asked = await self.boxes[ministry].expect(
                _about(self.rid, "relay_requested", m.message_id))
            assert isinstance(asked, NoticeMessage) and asked.body.detail["next_hop"] == nxt
            assert asked.body.detail["message"]["kind"] == kind  # the message, handed on
            relay = transfer_message("transfer_relay", ministry, nxt,
                                     {"relayed_message_id": m.message_id,
                                      "note_reference": f"Note {mid()[-6:]}"},
                                     request_id=self.rid, sent_at=datetime.now(UTC))
            await self.clients[ministry].publish(relay)
        delivered = await self.boxes[recipient].expect(_about(self.rid, "delivered",
                                                              m.message_id))
        assert isinstance(delivered, NoticeMessage)
        handed = delivered.body.detail["message"]  # the sender's message, signature and all
        assert (handed["message_id"], handed["kind"], handed["sender"]) == (
            m.message_id, kind, sender)
        await self.boxes[sender].expect(_about(self.rid, "delivery_confirmed", m.message_id))
        return m.message_id


async def test_full_transfer_across_the_relaying_foreign_ministries(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    clients: dict[str, Any] = {}
    boxes: dict[str, Mailbox] = {}
    for who in (KZ, AE, KZ_MFA, AE_MFA):
        clients[who], boxes[who] = await authorities(who)
    rid = f"{KZ}-TR-{mid()[4:14].upper()}"
    ch = Channel(rid, clients, boxes)

    request = await ch.send("transfer_request", KZ, request_body())
    # A ministry cannot relay what it does not hold: refused, the sender is told why.
    stray = transfer_message("transfer_relay", KZ_MFA, AE_MFA, {"relayed_message_id": request},
                             request_id=rid, sent_at=datetime.now(UTC))
    await clients[KZ_MFA].publish(stray)
    refused = await boxes[KZ_MFA].expect(error_about(stray.message_id))
    assert refused.body.problem == "not_allowed_now"  # type: ignore[union-attr]

    await ch.send("transfer_decision", AE, {"executing_state_provision": "UAE Penal Code"})
    await ch.send("transfer_decision", KZ, {})
    await boxes[KZ].expect(event(rid, "agreed"))
    today = datetime.now(UTC).date()
    await hand_over(ch.send, today, on=today + timedelta(days=1))

    state = await transfer_state(stack_client, TREATY, rid)
    assert state.status == "enforcing" and not state.overdue
    # The gateway's open-request gauge counts enforcing transfers (from visibility).
    await eventually(lambda: value(scrape(stack_settings, stack_settings.gateway_metrics_port),
                                   "treatyflow_open_requests", procedure="transfer",
                                   state="enforcing") >= 1)
    assert state.received_at is not None
    legs = [e.hop for e in state.timeline if e.message_id and e.hop]
    assert f"{KZ} → {KZ_MFA}" in legs and f"{KZ_MFA} → {AE_MFA}" in legs
    assert f"{AE_MFA} → {AE}" in legs and f"{AE} → {AE_MFA}" in legs
    assert all(d.delivered_at is not None for d in state.dispatches)

    # The operator's view: each leg of the channel as a hop.
    shown = _cli(stack_settings, "status", rid, "--treaty", TREATY, "--json")
    assert shown.returncode == 0, shown.stderr
    hops = [e["hop"] for e in json.loads(shown.stdout)["timeline"]]
    assert f"{KZ_MFA} → {AE_MFA}" in hops
    table = _cli(stack_settings, "timeline", rid, "--treaty", TREATY)
    assert table.returncode == 0 and "hop" in table.stdout and KZ_MFA in table.stdout

    # An operator extends art. 12's deadline (2 days, hub policy for "immediately") on the
    # UAE's written request, with the CLI: recorded with the operator's name, told to both.
    await ch.send("transfer_sentence_decision", KZ, {
        "decision": "pardon", "effect": "ends_enforcement", "decided_on": today.isoformat(),
        "details": "Pardoned by decree of the President of the Republic of Kazakhstan."})
    operator = ("--treaty", TREATY, "--operator", "A. Operator", "--reason",
                "Note verbale of the UAE Ministry of Justice, file 17.")
    extended = _cli(stack_settings, "extend", rid, "--days", "60", "--deadline",
                    "enforcement_change", *operator)
    assert extended.returncode == 0, extended.stderr
    assert "enforcing" in extended.stdout
    await boxes[AE].expect(event(rid, "deadline_extended"))
    await boxes[KZ].expect(event(rid, "deadline_extended"))
    state = await transfer_state(stack_client, TREATY, rid)
    (running,) = [d for d in state.deadlines if d.open]
    assert running.code == "enforcement_change" and not running.overdue
    entry = next(e for e in state.timeline if e.event == "operator_extend_deadline")
    assert entry.actor == "operator:A. Operator" and "file 17" in (entry.note or "")
    # `treatyflow list` finds it among the transfers whose deadline falls within 90 treaty
    # days, with its state, that art. 12 deadline and no overdue flag.
    wf_id = workflow_id(TREATY, rid)
    due = running.due.isoformat(timespec="seconds")
    row = await _listed(stack_settings, wf_id, "--procedure", "transfer", "--open",
                        "--due-within", "90")
    assert row == {"workflow_id": wf_id, "procedure": "transfer", "status": "enforcing",
                   "requesting": KZ, "requested": AE, "deadline": due, "overdue": False,
                   "open": True}
    assert await _listed(stack_settings, wf_id, "--due-within", "1", wanted=False) is None
    assert await _listed(stack_settings, wf_id, "--procedure", "assistance",
                         wanted=False) is None
    table = subprocess.run(
        [sys.executable, "-m", "treatyflow.cli", "list", "--procedure", "transfer",
         "--limit", "0"], env={**stack_settings.to_env(), "PATH": "/usr/bin:/bin",
                               "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=False)
    line = next(ln for ln in table.stdout.splitlines() if wf_id in ln)
    assert "transfer" in line and "enforcing" in line
    assert f"{KZ} → {AE}" in line
    assert due[:16].replace("T", " ") in line and "OVERDUE" not in line
    # Withdrawal comes before the handover (refused, with the reason); closing ends it.
    withdrawn = _cli(stack_settings, "withdraw", rid, *operator)
    assert withdrawn.returncode == 1 and "before the handover" in withdrawn.stderr
    closed = _cli(stack_settings, "close", rid, *operator)
    assert closed.returncode == 0, closed.stderr
    await boxes[AE].expect(event(rid, "closed"))
    again = _cli(stack_settings, "close", rid, *operator)
    assert again.returncode == 1 and "closed" in again.stderr, again.stderr


async def test_a_transit_is_its_own_request_linked_to_the_transfer_art_16(
    authorities, stack_client: Client
) -> None:
    clients: dict[str, Any] = {}
    boxes: dict[str, Mailbox] = {}
    for who in (KZ, AE, KZ_MFA, AE_MFA, UZ):
        clients[who], boxes[who] = await authorities(who)
    rid = f"{KZ}-TR-{mid()[4:14].upper()}"
    ch = Channel(rid, clients, boxes)
    await ch.send("transfer_request", KZ, request_body())
    await ch.send("transfer_decision", AE, {"executing_state_provision": "UAE Penal Code"})
    await ch.send("transfer_decision", KZ, {})
    today = datetime.now(UTC).date()
    await ch.send("transfer_handover", KZ, handover(today + timedelta(days=1), transit=["UZ"]))
    assert (await transfer_state(stack_client, TREATY, rid)).transits == {"UZ": "not_requested"}
    early = transfer_message("transfer_completed", AE, KZ, {"handed_over_on": today.isoformat(),
                                                           "place": "Almaty"},
                             request_id=rid, sent_at=datetime.now(UTC))
    await clients[AE].publish(early)
    refused = await boxes[AE].expect(error_about(early.message_id))
    assert "transit through UZ is not requested" in " ".join(refused.body.reasons)  # type: ignore[union-attr]

    tid = rid.replace("-TR-", "-TT-")
    ask = transit_message("transfer_transit_request", KZ, UZ, transit_body(
        rid, "UZ", period_from=today.isoformat(),
        period_to=(today + timedelta(days=3)).isoformat()),
        request_id=tid, sent_at=datetime.now(UTC))
    await clients[KZ].publish(ask)
    await boxes[UZ].expect(event(tid, "transit_requested"))
    await boxes[AE].expect(event(rid, "transit_requested"))  # linked to the transfer
    grant = transit_message("transfer_transit_decision", UZ, KZ, {"granted": True},
                            request_id=tid, in_reply_to=ask.message_id,
                            sent_at=datetime.now(UTC))
    await clients[UZ].publish(grant)
    await boxes[KZ].expect(event(tid, "transit_granted"))
    await boxes[AE].expect(event(rid, "transit_granted"))
    await ch.send("transfer_completed", AE, {"handed_over_on": today.isoformat(),
                                             "place": "Almaty International Airport"})
    state = await transfer_state(stack_client, TREATY, rid)
    assert state.status == "transferred" and state.transits == {"UZ": "granted"}

"""``make chaos`` carries transfers of convicted persons (KZ–UAE 2018) among its requests and
holds them to the same both-sides check: the prescribed final status, every message put on
the diplomatic channel delivered (art. 5.1, 6.1), and the requester told. Pure: the
transfer states come from the lifecycle, no stack."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from tests.transfer_factories import AE, AE_MFA, KZ, enforcing_case
from treatyflow.chaos.__main__ import _stuck, scenarios, transfer_satisfied, transfer_told
from treatyflow.schemas.messages import NoticeBody, NoticeMessage
from treatyflow.simulation.assistance import Scenario
from treatyflow.simulation.transfer import SENTENCING_DOCS, TransferExpectation, TransferScenario


def test_about_one_request_in_twenty_is_a_transfer_through_the_ministries() -> None:
    mix = scenarios()
    total = sum(w for _, w in mix)
    transfers = {s.name: (s, w) for s, w in mix if isinstance(s, TransferScenario)}
    share = sum(w for _, w in transfers.values()) / total
    assert 0.04 <= share <= 0.10, share
    expected = {name: s.expect.status for name, (s, _) in transfers.items()}
    assert expected == {"transfer granted": "enforcing", "transfer refused": "refused",
                        "transfer documents missing, then completed": "enforcing",
                        "transfer duplicated": "enforcing"}
    missing = transfers["transfer documents missing, then completed"][0]
    sent = {d["code"] for d in missing.content["documents"]}
    assert set(SENTENCING_DOCS) - sent == {"final_judgment"}  # art. 7.1 owed, then supplied
    assert all(s.silent_relay is None for s, _ in transfers.values())  # every hop is made
    assert all(isinstance(s, Scenario) for s, _ in mix if s.name not in transfers)


def test_a_transfer_is_done_only_when_nothing_is_left_with_a_ministry() -> None:
    case = enforcing_case()
    enforcing = TransferExpectation("enforcing")
    assert transfer_satisfied(case.state, enforcing)
    assert not transfer_satisfied(case.state, TransferExpectation("refused"))
    # A report the executing state sent that its ministry still holds: the status already
    # says enforcing (a state's act is done when sent), but the transfer is stuck.
    case.send("transfer_execution_report", AE, {"event": "information",
                                                 "occurred_on": case.now.date().isoformat(),
                                                 "details": "Held in Al Wathba."},
              deliver=False)
    assert case.state.status.value == "enforcing"
    assert not transfer_satisfied(case.state, enforcing)
    assert _stuck("TR-1", case.state) == (
        f"TR-1: enforcing; on the channel: transfer_execution_report with {AE_MFA}")


def _notice(request_id: str, status: str, recipient: str) -> NoticeMessage:
    return NoticeMessage(
        kind="notice", message_id=str(uuid.uuid4()), request_id=request_id,
        treaty_id="kz-uae-2018", sender="HUB", recipient=recipient, sent_at=datetime.now(UTC),
        body=NoticeBody(event="delivered", status=status, requesting=KZ, requested=AE))


def test_the_requester_must_have_heard_the_final_status_itself() -> None:
    state = enforcing_case().state
    rid = state.request_id
    sim: Any = SimpleNamespace(inbox=defaultdict(list))
    sim.inbox[AE].append(_notice(rid, "enforcing", AE))  # the other side knows; not enough
    assert not transfer_told(sim, rid, state)
    sim.inbox[KZ].append(_notice(rid, "transferred", KZ))  # an earlier status
    assert not transfer_told(sim, rid, state)
    sim.inbox[KZ].append(_notice(rid, "enforcing", KZ))
    assert transfer_told(sim, rid, state)

"""Operator actions on a transfer and a transit (KZ–UAE 2018): the pure rules, then the
validated updates on the time-skipping server through ``hub.operate``, as the CLI does."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

import pytest
import pytest_asyncio

from tests.conftest import Wire, events, operate, own_time_skipping
from tests.transfer_factories import (
    AE,
    AE_MFA,
    DAY,
    KZ,
    KZ_MFA,
    TREATY,
    Case,
    agreed_case,
    enforcing_case,
    handover,
    transit_body,
    transit_message,
)
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal
from treatyflow.workflows import transfer as tf
from treatyflow.workflows.lifecycle import OperatorAction, Rejected
from treatyflow.workflows.transfer import TransferStatus as S

UZ = "UZ-GPO"


def act(action: str, **extra: object) -> OperatorAction:
    return OperatorAction(action=action, operator="A. Operator",  # type: ignore[arg-type]
                          reason="Note verbale of 2026-11-20, file 17.", **extra)


# --- the pure rules -------------------------------------------------------------------


def _pardoned(c: Case) -> None:
    """A sentence decision that ends enforcement, delivered: art. 12's deadline runs."""
    c.send("transfer_sentence_decision", KZ, {
        "decision": "pardon", "effect": "ends_enforcement",
        "decided_on": c.now.date().isoformat(), "details": "Pardoned by decree."})


def test_extending_the_art_12_deadline_moves_it_and_tells_both_sides() -> None:
    c = enforcing_case()
    _pardoned(c)
    (before,) = [d for d in c.state.deadlines if d.open]
    assert before.code == "enforcement_change"
    tr = tf.apply_operator(c.state, c.profile, act("extend_deadline", days=5), c.now)
    (after,) = [d for d in tr.state.deadlines if d.open]
    assert after.due == before.due + 5 * DAY and not after.overdue
    entry = tr.state.timeline[-1]
    assert entry.event == "operator_extend_deadline" and entry.actor == "operator:A. Operator"
    assert "file 17" in (entry.note or "") and "art. 12" in (entry.note or "")
    assert {n.recipient for n in tr.notices if n.event == "deadline_extended"} == {KZ, AE}


def test_an_overdue_deadline_extended_is_no_longer_overdue_and_can_be_again() -> None:
    c = enforcing_case()
    _pardoned(c)
    c.wait(3 * DAY)
    assert c.state.overdue
    overdue_ids = {n.message_id for n in c.notices if n.event == "overdue"}
    tr = tf.apply_operator(c.state, c.profile, act("extend_deadline", days=5), c.now)
    c.state = tr.state
    assert not c.state.overdue
    c.wait(6 * DAY)
    assert c.state.overdue
    again = {n.message_id for n in c.notices if n.event == "overdue"} - overdue_ids
    assert again, "the overdue notice of the new date is a new message, not a duplicate"


def test_extend_names_the_deadline_when_several_run_and_must_reach_the_future() -> None:
    c = enforcing_case()
    _pardoned(c)
    c.send("transfer_information_request", KZ, {"questions": "How is the sentence served?"})
    problems = tf.check_operator(c.state, c.profile, act("extend_deadline", days=5), c.now)
    assert "2 open deadlines: name one" in problems[0]
    assert "enforcement_change" in problems[0] and "information_on_request" in problems[0]
    chosen = act("extend_deadline", days=5, deadline="information_on_request")
    assert tf.check_operator(c.state, c.profile, chosen, c.now) == []
    unknown = act("extend_deadline", days=5, deadline="handover")
    assert "no open deadline 'handover'" in tf.check_operator(c.state, c.profile, unknown,
                                                               c.now)[0]
    c.wait(10 * DAY)  # art. 12's two days long passed: one more day still lies behind us
    short = act("extend_deadline", days=1, deadline="enforcement_change")
    assert "extend by more" in tf.check_operator(c.state, c.profile, short, c.now)[0]


def test_what_an_operator_may_not_do_is_refused_with_every_reason() -> None:
    c = enforcing_case()
    assert "nothing to extend" in tf.check_operator(
        c.state, c.profile, act("extend_deadline", days=3), c.now)[0]
    assert "withdrawn before the handover" in tf.check_operator(
        c.state, c.profile, act("withdraw"), c.now)[0]
    assert "party must be one of" in tf.check_operator(
        c.state, c.profile, act("resend_last_notice", party="RU-MIA"), c.now)[0]
    with pytest.raises(Rejected):
        tf.apply_operator(c.state, c.profile, act("withdraw"), c.now)
    closed = tf.apply_operator(c.state, c.profile, act("close"), c.now).state
    assert closed.status is S.CLOSED and closed.final and tf.ended(closed)
    assert "already closed" in tf.check_operator(closed, c.profile, act("close"), c.now)[0]
    # A foreign ministry gets notices too (relay_requested, art. 5.1): it may be resent one.
    assert tf.check_operator(c.state, c.profile, act("resend_last_notice", party=KZ_MFA),
                             c.now) == []


def test_withdrawing_before_the_handover_still_carries_what_is_on_its_way() -> None:
    c = agreed_case()
    m = c.send("transfer_handover", KZ, handover(c.now.date() + 10 * DAY), deliver=False)
    tr = tf.apply_operator(c.state, c.profile, act("withdraw"), c.now)
    assert tr.state.status is S.WITHDRAWN and not tf.ended(tr.state)  # handover in transit
    assert [d.message_id for d in tf.in_transit(tr.state)] == [m.message_id]
    assert {n.recipient for n in tr.notices if n.event == "withdrawn"} == {KZ, AE}


def test_a_transit_may_be_withdrawn_or_closed_never_extended() -> None:
    c = agreed_case()
    c.send("transfer_handover", KZ, handover(c.now.date() + 10 * DAY, transit=["UZ"]))
    ask = transit_message("transfer_transit_request", KZ, UZ,
                          transit_body(c.state.request_id), request_id=f"{KZ}-TT-1", sent_at=c.now)
    assert isinstance(ask, tf.TransitRequestMessage)
    t = tf.open_transit(c.profile, c.state, ask, c.now).state
    assert "no deadline on a transit" in tf.check_transit_operator(
        t, act("extend_deadline", days=2))[0]
    tr = tf.apply_transit_operator(t, act("withdraw"), c.now)
    assert tr.state.status is tf.TransitStatus.WITHDRAWN
    assert tr.state.timeline[-1].actor == "operator:A. Operator"
    c.state = tf.link_transit(c.state, tr.state, c.now).state
    assert c.state.transits == {"UZ": "withdrawn"}
    assert "transit through UZ is withdrawn, not granted" in " ".join(c.refused(
        "transfer_completed", AE, {"handed_over_on": c.now.date().isoformat(),
                                   "place": "Almaty"}))
    assert "already transit_withdrawn" in tf.check_transit_operator(tr.state, act("close"))[0]


# --- on Temporal, through hub.operate ---------------------------------------------------


time_env = pytest_asyncio.fixture(own_time_skipping, name="time_env")


async def test_operator_extends_the_art_12_deadline_of_a_transfer(wire: Wire) -> None:
    await wire.enforcing()
    with pytest.raises(Refusal) as refused:  # nothing runs yet: refused with the reason
        await operate(wire.env.client, TREATY, wire.request_id, act("extend_deadline", days=3))
    assert refused.value.problem == "not_allowed_now"
    assert "nothing to extend" in refused.value.reasons[0]
    await wire.pardon()
    await wire.env.sleep(timedelta(days=1))
    done = await operate(wire.env.client, TREATY, wire.request_id,
                         act("extend_deadline", days=5, deadline="enforcement_change"))
    assert done.status == "enforcing" and not done.overdue and done.deadline
    await wire.env.sleep(timedelta(days=3))  # past art. 12's two days: extended
    assert not (await wire.state()).overdue
    await wire.env.sleep(timedelta(days=3))
    state = await wire.state_once(lambda s: s.overdue)
    assert state.overdue
    entry = next(e for e in state.timeline if e.event == "operator_extend_deadline")
    assert entry.actor == "operator:A. Operator" and "file 17" in (entry.note or "")
    assert "deadline_extended" in await events(wire.outbox, KZ, "deadline_extended")
    assert "deadline_extended" in await events(wire.outbox, AE, "deadline_extended")
    await events(wire.outbox, AE, "overdue")


async def test_operator_resends_an_unrelayed_request_to_the_foreign_ministry(wire: Wire) -> None:
    await wire.send("transfer_request", KZ, await wire.request(), relay=False)
    assert await events(wire.outbox, KZ_MFA, "relay_requested") == ["relay_requested"]
    with pytest.raises(Refusal, match="nothing has been sent to AE-MOFA yet"):
        await operate(wire.env.client, TREATY, wire.request_id,
                      act("resend_last_notice", party=AE_MFA))
    await operate(wire.env.client, TREATY, wire.request_id,
                  act("resend_last_notice", party=KZ_MFA))
    for _ in range(300):  # the workflow delivers after the update has answered
        if len(wire.outbox.events(KZ_MFA)) == 2:
            break
        await asyncio.sleep(0.05)
    mine = [d.message for d in wire.outbox.sent if d.message.recipient == KZ_MFA]
    assert len(mine) == 2 and mine[0].message_id == mine[1].message_id  # the same notice
    state = await wire.state()
    assert any(e.event == "operator_resend_last_notice" and KZ_MFA in (e.note or "")
               for e in state.timeline)


@pytest.mark.parametrize(("action", "final"), [("withdraw", "withdrawn"), ("close", "closed")])
async def test_withdraw_and_close_end_a_transfer_and_tell_both_sides(
    wire: Wire, action: str, final: str,
) -> None:
    await wire.send("transfer_request", KZ, await wire.request())
    done = await operate(wire.env.client, TREATY, wire.request_id, act(action))
    assert done.status == final
    handle = wire.env.client.get_workflow_handle(workflow_id(TREATY, wire.request_id))
    assert (await handle.result())["status"] == final
    assert final in await events(wire.outbox, KZ, final)
    assert final in await events(wire.outbox, AE, final)
    # Its Deadline search attribute was unset; the time-skipping server describes it with
    # a null datetime, which the SDK cannot decode: the refusal still names the status.
    with pytest.raises(Refusal) as refused:
        await operate(wire.env.client, TREATY, wire.request_id, act("close"))
    assert refused.value.problem == "request_closed"
    assert f"already {final}" in refused.value.reasons[0]


async def test_operator_withdraws_a_transit_and_its_transfer_learns_it_art_16(wire: Wire) -> None:
    await wire.send("transfer_request", KZ, await wire.request())
    await wire.send("transfer_decision", AE, {"executing_state_provision": "UAE Penal Code"})
    await wire.send("transfer_decision", KZ, {})
    today = (await wire.now()).date()
    await wire.send("transfer_handover", KZ, handover(today + timedelta(days=3), transit=["UZ"]))
    tid = wire.request_id.replace("-TR-", "-TT-")
    await wire.post("transfer_transit_request", KZ, UZ, transit_body(
        wire.request_id, "UZ", period_from=today.isoformat(),
        period_to=(today + timedelta(days=3)).isoformat()), request_id=tid)
    with pytest.raises(Refusal, match="no deadline on a transit"):
        await operate(wire.env.client, TREATY, tid, act("extend_deadline", days=2))
    done = await operate(wire.env.client, TREATY, tid, act("withdraw"))
    assert done.status == "transit_withdrawn"
    transit = wire.env.client.get_workflow_handle(workflow_id(TREATY, tid))
    assert (await transit.result())["status"] == "transit_withdrawn"
    assert "transit_withdrawn" in await events(wire.outbox, UZ, "transit_withdrawn")
    state = await wire.state_once(lambda s: s.transits == {"UZ": "withdrawn"})
    assert state.transits == {"UZ": "withdrawn"}
    with pytest.raises(Refusal, match="transit through UZ is withdrawn, not granted"):
        await wire.post("transfer_completed", AE, KZ, {
            "handed_over_on": (await wire.now()).astimezone(UTC).date().isoformat(),
            "place": "Almaty"})

"""Operator actions as validated updates (time-skipping server, real treaty durations)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from tests.conftest import KZ, Assistance, operate
from treatyflow.hub import Refusal
from treatyflow.workflows.lifecycle import OperatorAction


def act(action: str, **extra: object) -> OperatorAction:
    return OperatorAction(action=action, operator="A. Operator",  # type: ignore[arg-type]
                          reason="Written instruction of 2026-11-20, file 17.", **extra)


async def _operate(assistance: Assistance, rid: str, action: OperatorAction) -> None:
    await operate(assistance.env.client, "sco-2010", rid, action)


async def test_extending_the_deadline_moves_overdue_and_is_in_the_timeline(
    assistance: Assistance,
) -> None:
    rid = await assistance.received()
    await assistance.env.sleep(timedelta(days=29))
    await _operate(assistance, rid, act("extend_deadline", days=10))
    await assistance.env.sleep(timedelta(days=2))
    assert not (await assistance.state(rid)).overdue
    await assistance.env.sleep(timedelta(days=9))
    state = await assistance.state(rid)
    assert state.overdue
    entry = next(e for e in state.timeline if e.event == "operator_extend_deadline")
    assert entry.actor == "operator:A. Operator" and "file 17" in (entry.note or "")
    assert assistance.both_told("deadline_extended")


async def test_resend_repeats_the_last_notice_to_that_party(assistance: Assistance) -> None:
    rid = await assistance.received()
    await assistance.env.sleep(timedelta(hours=1))
    last = [d.message for d in assistance.outbox.sent if d.message.recipient == KZ][-1]
    await _operate(assistance, rid, act("resend_last_notice", party=KZ))
    await assistance.env.sleep(timedelta(hours=1))
    again = [d.message for d in assistance.outbox.sent if d.message.recipient == KZ][-1]
    assert again.message_id == last.message_id and again.body.event == "received"


@pytest.mark.parametrize(("action", "final"), [("withdraw", "withdrawn"), ("close", "closed")])
async def test_withdraw_and_close_end_the_request_and_tell_both_sides(
    assistance: Assistance, action: str, final: str,
) -> None:
    rid = await assistance.received()
    await _operate(assistance, rid, act(action))
    assert (await assistance.outcome(rid)).status == final
    assert assistance.both_told(final)


def test_an_action_needs_a_written_reason_and_a_name() -> None:
    with pytest.raises(ValidationError, match="reason"):
        OperatorAction(action="close", operator="A. Operator", reason="because")
    with pytest.raises(ValidationError, match="operator"):
        OperatorAction(action="close", operator="", reason="Party stopped answering.")


async def test_an_action_on_a_closed_request_is_refused_naming_its_final_status(
    assistance: Assistance,
) -> None:
    """The withdrawal clears the request's Deadline search attribute; describing the closed
    workflow on the time-skipping server must still tell the operator what became of it."""
    rid = await assistance.received()
    await _operate(assistance, rid, act("withdraw"))
    assert (await assistance.outcome(rid)).status == "withdrawn"
    with pytest.raises(Refusal) as refused:
        await _operate(assistance, rid, act("close"))
    assert refused.value.problem == "request_closed"
    assert "withdrawn" in refused.value.reasons[0]

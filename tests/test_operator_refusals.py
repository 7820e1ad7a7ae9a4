"""Refused operator actions on the real dev server: the reason comes back, nothing is
written. (The time-skipping server stops skipping time after a rejected update, so these
live here.)"""

from __future__ import annotations

import pytest
from temporalio.client import Client

from tests.conftest import operate, submit
from tests.factories import message, new_request_id
from tests.test_operator_actions import KZ, RU, act
from treatyflow.hub import Refusal, request_state
from treatyflow.workflows.lifecycle import OperatorAction

pytestmark = pytest.mark.stack


async def _state(client: Client, rid: str):  # type: ignore[no-untyped-def]
    return await request_state(client, "sco-2010", rid)


@pytest.mark.parametrize(
    ("before", "action", "expected"),
    [
        ("sent", act("extend_deadline", days=5), "no execution deadline runs yet"),
        ("received", act("extend_deadline"), "needs the number of days"),
        ("received", act("resend_last_notice", party="CN-MPS"), "party must be one of"),
        ("closed", act("withdraw"), "already closed"),
        ("closed", act("extend_deadline", days=3), "already closed"),
    ],
)
async def test_refused_operator_actions_change_nothing(
    stack_client: Client, before: str, action: OperatorAction, expected: str
) -> None:
    rid = new_request_id()
    await submit(stack_client, message("request", request_id=rid, sender=KZ, recipient=RU))
    if before != "sent":
        await submit(stack_client, message("receipt", request_id=rid, sender=RU,
                                              recipient=KZ))
    if before == "closed":
        await operate(stack_client, "sco-2010", rid, act("close"))
    timeline = len((await _state(stack_client, rid)).timeline)
    with pytest.raises(Refusal) as refused:
        await operate(stack_client, "sco-2010", rid, action)
    assert expected in " ".join(refused.value.reasons)
    assert len((await _state(stack_client, rid)).timeline) == timeline

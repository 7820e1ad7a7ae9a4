"""Refused operator actions on the real dev server: the reason comes back, nothing is
written. (The time-skipping server stops skipping time after a rejected update, so these
live here.)"""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from tests.conftest import KZ, RU, TEST_KEYS, operate, submit
from tests.factories import message, new_request_id
from tests.test_operator_actions import act
from treatyflow import constants as c
from treatyflow import hub
from treatyflow.hub import Refusal, request_state
from treatyflow.workflows.lifecycle import OperatorAction
from treatyflow.workflows.request import RequestForAssistance

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


@pytest.mark.parametrize(("field", "text", "named"), [
    ("operator", "\u3164", "U+3164 HANGUL FILLER"),  # shows as blank
    ("reason", "Close it.\u200bALSO SEND ACCOUNT 456", "U+200B ZERO WIDTH SPACE"),
    ("reason", "Close it now\U000e0041\U000e0042, please.", "U+E0041 TAG LATIN CAPITAL LETTER A"),
    ("operator", "A. Operator\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
])
async def test_operator_text_with_invisible_characters_is_refused(
    stack_client: Client, field: str, text: str, named: str
) -> None:
    """An operator's name and reason are held to the rules of every text the hub carries:
    refused at the hub with the character and its position named, and by the workflow's
    validator too, for an action sent straight to Temporal (signed though it is)."""
    rid = new_request_id()
    await submit(stack_client, message("request", request_id=rid, sender=KZ, recipient=RU))
    timeline = len((await _state(stack_client, rid)).timeline)
    action = act("close").model_copy(update={field: text})
    with pytest.raises(Refusal) as refused:
        await operate(stack_client, "sco-2010", rid, action)
    assert refused.value.problem == "malformed"
    assert f"{field}: {named}" in " ".join(refused.value.reasons)
    assert "at position" in " ".join(refused.value.reasons)
    signed = hub.sign_action(action, TEST_KEYS.private[c.OPERATOR_SIGNER])
    handle = stack_client.get_workflow_handle_for(RequestForAssistance.run,
                                                  c.workflow_id("sco-2010", rid))
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(RequestForAssistance.operate, signed)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    # A bidirectional control was refused from the start: such an action is not even
    # read back from Temporal's payload; the others are refused by the validator.
    assert cause.type == ("RuntimeError" if "\u202e" in text else "Refused:malformed")
    if "\u202e" not in text:
        assert named in str(cause)
    assert len((await _state(stack_client, rid)).timeline) == timeline

"""A request's id belongs to the authority that opens it: it begins with that authority's
id, so nobody can take an id another authority will use, and nobody learns from the
hub's answers which ids exist. Checked by the hub before a workflow starts and by the
workflow itself, whoever reached Temporal."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from tests.conftest import TEST_KEYS, submit
from tests.factories import message, new_request_id
from tests.transfer_factories import AE, KZ_MFA, TREATY, envelope, transit_body
from tests.transfer_factories import KZ as KZ_CA
from tests.transfer_factories import request_body as transfer_body
from treatyflow import constants as c
from treatyflow.hub import Refusal, request_state
from treatyflow.schemas.envelope import request_id_problem
from treatyflow.schemas.messages import Submission, message_digest, parse_inbound
from treatyflow.schemas.treaty import load_profile
from treatyflow.workflows.contract import INPUT_VERSION, RequestInput
from treatyflow.workflows.request import RequestForAssistance

KZ, RU = "KZ-GPO", "RU-MIA"


def test_an_id_belongs_to_the_authority_it_begins_with() -> None:
    assert request_id_problem("KZ-GPO-2026-0001", "KZ-GPO") is None
    # Another's namespace, a look-alike prefix, the bare authority id: all refused.
    for rid in ("RU-MIA-2026-0001", "KZ-GP-2026-0001", "KZ-GPOX-1", "KZ-GPO", "2026-KZ-GPO"):
        problem = request_id_problem(rid, "KZ-GPO")
        assert problem is not None and "KZ-GPO-" in problem and rid in problem


@pytest.mark.stack
async def test_an_id_of_another_authority_cannot_be_squatted(stack_client: Client) -> None:
    """KZ-GPO tries to open the id RU-MIA will use next: refused, nothing is started, and
    RU-MIA's own request under that id then opens as usual."""
    rid = new_request_id(RU)
    squat = message("request", request_id=rid, sender=KZ, recipient=RU)
    with pytest.raises(Refusal) as refused:
        await submit(stack_client, squat)
    assert refused.value.problem == "invalid_request"
    assert f"begins with the id of the authority that sends it and a hyphen ({KZ}-" in str(
        refused.value)
    genuine = message("request", request_id=rid, sender=RU, recipient=KZ)
    await submit(stack_client, genuine)
    state = await request_state(stack_client, "sco-2010", rid)
    assert state.requesting == RU and [e.event for e in state.timeline][0] == "request_sent"


@pytest.mark.stack
async def test_the_workflow_refuses_a_squatted_id_sent_straight_to_temporal(
    stack_client: Client
) -> None:
    """Past the hub, as a local user who reached Temporal could: the workflow's validator
    refuses an opening outside its sender's namespace, signed though it is (on the real
    dev server: the time-skipping one stops skipping after a rejected update)."""
    rid = new_request_id(RU)
    squat = message("request", request_id=rid, sender=KZ, recipient=RU)
    text, at = TEST_KEYS()
    start = WithStartWorkflowOperation(
        RequestForAssistance.run,
        RequestInput(profile=load_profile("sco-2010"), version=INPUT_VERSION, directory=text),
        id=c.workflow_id("sco-2010", rid), task_queue=c.TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    submission = Submission(message=squat, digest=message_digest(squat),
                            jws=TEST_KEYS.sign(squat), directory_issued_at=at)
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await stack_client.execute_update_with_start_workflow(
            RequestForAssistance.submit, submission, start_workflow_operation=start,
            id=squat.message_id)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "Refused:invalid_request"
    assert f"({KZ}-…" in str(cause)
    # Nothing was applied: the genuine request under that id is still RU-MIA's to open.
    await submit(stack_client, message("request", request_id=rid, sender=RU, recipient=KZ))
    assert (await request_state(stack_client, "sco-2010", rid)).requesting == RU


@pytest.mark.stack
async def test_a_stranger_learns_nothing_of_a_transfer_through_a_transit_request(
    stack_client: Client
) -> None:
    """Art. 16.1: a transit is asked by a central authority of the transfer. Anyone else
    naming a transfer that is open gets the very answer it gets naming one that is not."""
    rid = f"{KZ_CA}-TR-{uuid.uuid4().hex[:10].upper()}"
    opening = parse_inbound(json.dumps(envelope(
        "transfer_request", KZ_CA, AE, transfer_body(), request_id=rid,
        sent_at=datetime.now(UTC))))
    await submit(stack_client, opening)
    answers = []
    for transfer_id in (rid, f"{KZ_CA}-TR-NEVER-SENT"):
        ask = parse_inbound(json.dumps(envelope(
            "transfer_transit_request", KZ_MFA, "UZ-GPO", transit_body(transfer_id),
            request_id=f"{KZ_MFA}-TT-{uuid.uuid4().hex[:8].upper()}",
            sent_at=datetime.now(UTC))))
        with pytest.raises(Refusal) as refused:
            await submit(stack_client, ask)
        answers.append((refused.value.problem,
                        " ".join(refused.value.reasons).replace(transfer_id, "ID")))
    assert answers[0] == answers[1] == ("unknown_request", f"no open request ID under {TREATY} "
                                        "of which you are a party")

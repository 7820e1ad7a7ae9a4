"""Recorded histories (the demo's, a transfer's with its transit, amendments') replay
against today's workflow code: a change that breaks determinism for requests already in
flight fails here.

The recorded histories predate payload encryption: their payloads are plain JSON. They
replay through the production converter, whose codec passes through payloads that are
not ``binary/encrypted`` (as it must for requests in flight when encryption was switched
on). An encrypted history is recorded fresh on the time-skipping server below, since a
committed one would need a committed key.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.conftest import Outbox, submit
from tests.factories import message, new_request_id, request_body
from treatyflow.codec import EncryptionCodec, PayloadKeys, decrypted_history, generate_keys
from treatyflow.constants import workflow_id
from treatyflow.temporal import data_converter, workflow_runner
from treatyflow.workflows.amendment_workflow import AmendmentOfAuthorities
from treatyflow.workflows.request import RequestForAssistance
from treatyflow.workflows.transfer_workflow import (
    TransferOfConvictedPerson,
    TransitOfConvictedPerson,
)

KZ, RU = "KZ-GPO", "RU-MIA"
REPORT = {"extent": "full", "summary": "Statements attached.", "confidentiality": "restricted"}
HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def replayer(keys: PayloadKeys) -> Replayer:
    return Replayer(workflows=[RequestForAssistance, TransferOfConvictedPerson,
                               TransitOfConvictedPerson, AmendmentOfAuthorities],
                    data_converter=data_converter(keys),
                    workflow_runner=workflow_runner(strict=True))


def test_histories_cover_every_demo_outcome() -> None:
    names = {p.stem for p in HISTORIES}
    assert {"executed", "refused", "lapsed-oral-never-confirmed", "withdrawn",
            "forwarded-then-executed", "overdue-no-answer-in-30-days",
            "results-transferred-with-consent"} <= names
    # Input version 2 (the consent phase decided by the profile, no patch marker; the
    # opening search attributes set at start): recorded beside the version 1 ones above.
    assert {"executed-v2", "results-transferred-with-consent-v2"} <= names
    # KZ–UAE 2018 (scripts/record_transfer_histories.py): a transfer granted, handed over
    # on a route needing a transit permit (art. 16) and served; and that transit.
    assert {"transfer-transferred-via-transit", "transfer-transit-granted"} <= names
    # SCO 2010 art. 2.2 (scripts/record_amendment_histories.py): amendments whose actions
    # were unsigned and whose change was published on the workflow's own task queue.
    assert {"amendment-in-effect", "amendment-withdrawn"} <= names
    # And signed by the operators' key (art. 14), published on the publisher's queue.
    assert {"amendment-in-effect-v2", "amendment-withdrawn-v2"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"wf-{path.stem}", path.read_text())
    result = await replayer(generate_keys()).replay_workflow(
        history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_encrypted_history_replays_with_its_keys_only(
    time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox], task_queue: str,
    payload_keys: PayloadKeys,
) -> None:
    rid = new_request_id()
    facts = "The suspect Zhanybek Replayev wired the funds through Almaty."
    await submit(time_env.client, message("request", request_id=rid, sender=KZ, recipient=RU,
                                          body=request_body(facts=facts)), task_queue=task_queue)
    for kind, body in (("receipt", {}), ("execution_report", REPORT)):
        await submit(time_env.client, message(kind, request_id=rid, sender=RU, recipient=KZ,
                                              body=body), task_queue=task_queue)
    handle = time_env.client.get_workflow_handle(workflow_id("sco-2010", rid))
    await time_env.sleep(timedelta(days=91))  # past the art. 7 consent phase
    await handle.result()
    history = await handle.fetch_history()
    assert "Replayev" not in history.to_json()
    assert b"Replayev" not in b"".join(e.SerializeToString() for e in history.events)

    replayed = await replayer(payload_keys).replay_workflow(
        history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    # Rotated keys still read it: the old key decrypts, only new payloads use the new one.
    rotated = await replayer(payload_keys.rotated()).replay_workflow(
        history, raise_on_replay_failure=False)
    assert rotated.replay_failure is None, rotated.replay_failure

    # Recorded in clear (as scripts/record_histories.py does), it replays with any key.
    plain = decrypted_history(history, EncryptionCodec(payload_keys))
    assert any(b"Replayev" in e.SerializeToString() for e in plain.events)
    again = await replayer(generate_keys()).replay_workflow(plain, raise_on_replay_failure=False)
    assert again.replay_failure is None, again.replay_failure

    # Without its key it does not replay; the worker's log names the missing key id, the
    # workflow task failure only the error type (its message is encrypted like any other).
    with pytest.raises(Exception, match="PayloadDecodeError"):
        await replayer(generate_keys()).replay_workflow(history)

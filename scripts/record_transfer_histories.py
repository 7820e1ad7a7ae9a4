"""Record transfer workflow histories for the replay test (tests/test_replay.py).

    .venv/bin/python scripts/record_transfer_histories.py

The transfer procedure (KZ–UAE 2018) has no demo scenario to record from, so this drives
one transfer through ``hub.submit`` on Temporal's time-skipping test server, with a worker
whose delivery activity only records: requested, carried hop by hop by the two foreign
ministries (art. 5.1, 6.1), agreed by both states (art. 8.6), handed over on a route
landing in Uzbekistan with its transit permit (art. 16), enforced (art. 10) and served
(art. 13.1). Writes the transfer's history and the transit's into tests/histories/
(``transfer-*.json``), payloads decrypted like scripts/record_histories.py does.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.transfer_factories import (  # noqa: E402
    AE,
    KZ,
    TREATY,
    envelope,
    handover,
    sentence,
    transit_body,
)
from tests.transfer_factories import request_body as transfer_body  # noqa: E402
from treatyflow.activities.delivery import Deliver, Delivered  # noqa: E402
from treatyflow.codec import EncryptionCodec, decrypted_history, generate_keys  # noqa: E402
from treatyflow.constants import workflow_id  # noqa: E402
from treatyflow.hub import submit, transfer_state  # noqa: E402
from treatyflow.schemas.messages import parse_inbound  # noqa: E402
from treatyflow.temporal import (  # noqa: E402
    data_converter,
    register_search_attributes,
    workflow_runner,
)
from treatyflow.workers.worker import WORKFLOWS  # noqa: E402

OUT = ROOT / "tests" / "histories"
UZ = "UZ-GPO"
TASK_QUEUE = "record-transfer-histories"


@activity.defn(name="deliver")
async def deliver(request: Deliver) -> Delivered:
    """Delivery recorded nowhere: the history is what is kept."""
    return Delivered(message_id=request.message.message_id,
                     recipient=request.message.recipient,
                     delivered_at=activity.info().current_attempt_scheduled_time)


class Driver:
    def __init__(self, client: Client, env: WorkflowEnvironment, request_id: str) -> None:
        self.client, self.env, self.rid = client, env, request_id

    async def post(self, kind: str, sender: str, recipient: str, body: dict[str, Any], *,
                   request_id: str | None = None, **kw: Any) -> str:
        now = (await self.env.get_current_time()).astimezone(UTC)
        data = envelope(kind, sender, recipient, body, request_id=request_id or self.rid,
                        sent_at=now, **kw)
        await submit(self.client, parse_inbound(json.dumps(data)), task_queue=TASK_QUEUE)
        return str(data["message_id"])

    async def send(self, kind: str, sender: str, body: dict[str, Any], **kw: Any) -> str:
        """A central authority's message, then the two hops of the channel (art. 5.1)."""
        message_id = await self.post(kind, sender, AE if sender == KZ else KZ, body, **kw)
        for _ in range(2):
            d = (await transfer_state(self.client, TREATY, self.rid)).dispatch(message_id)
            assert d is not None and d.next_hop is not None
            await self.post("transfer_relay", *d.next_hop,
                            {"relayed_message_id": message_id, "note_reference": "Note 12/7"})
        return message_id


async def main() -> None:
    keys = generate_keys()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(keys),
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"))
    try:
        await register_search_attributes(env.client)
        async with Worker(env.client, task_queue=TASK_QUEUE, workflows=WORKFLOWS,
                          activities=[deliver], workflow_runner=workflow_runner()):
            await _record(env, keys)
    finally:
        await env.shutdown()


async def _record(env: WorkflowEnvironment, keys: Any) -> None:
    client = env.client
    rid = "KZ-GPO-TR-2026-0001"
    tid = "KZ-GPO-TT-2026-0001"
    w = Driver(client, env, rid)
    today = (await env.get_current_time()).date()
    await w.send("transfer_request", KZ, transfer_body(sentence=sentence(
        judgment_date=(today - timedelta(days=300)).isoformat(),
        judgment_final_on=(today - timedelta(days=270)).isoformat(),
        counted_from=(today - timedelta(days=365)).isoformat(), term={"years": 2})))
    await w.send("transfer_decision", AE, {"executing_state_provision": "UAE Penal Code"})
    await w.send("transfer_decision", KZ, {})
    await w.send("transfer_handover", KZ, handover(today + timedelta(days=3), transit=["UZ"]))
    ask = await w.post("transfer_transit_request", KZ, UZ, transit_body(
        rid, "UZ", period_from=(today + timedelta(days=2)).isoformat(),
        period_to=(today + timedelta(days=4)).isoformat()), request_id=tid)
    await w.post("transfer_transit_decision", UZ, KZ, {"granted": True}, request_id=tid,
                 in_reply_to=ask)
    transit = client.get_workflow_handle(workflow_id(TREATY, tid))
    await transit.result()
    for _ in range(100):  # the transit's signal to its transfer (art. 16)
        if (await transfer_state(client, TREATY, rid)).transits == {"UZ": "granted"}:
            break
        await asyncio.sleep(0.1)
    await env.sleep(timedelta(days=3))
    handed = (await env.get_current_time()).date().isoformat()
    await w.send("transfer_completed", AE, {"handed_over_on": handed,
                                            "place": "Almaty International Airport"})
    await w.send("transfer_execution_report", AE, {
        "event": "enforcement_continued", "occurred_on": handed, "term_imposed": {"years": 2}})
    await env.sleep(timedelta(days=20))
    await w.send("transfer_execution_report", AE, {
        "event": "sentence_served",
        "occurred_on": (await env.get_current_time()).date().isoformat()})
    transfer = client.get_workflow_handle(workflow_id(TREATY, rid))
    outcome = await transfer.result()
    assert outcome["status"] == "enforcement_ended", outcome
    codec = EncryptionCodec(keys)
    for name, handle in (("transfer-transferred-via-transit", transfer),
                         ("transfer-transit-granted", transit)):
        history = decrypted_history(await handle.fetch_history(), codec)
        (OUT / f"{name}.json").write_text(history.to_json())
        print("recorded", name, len(history.events), "events")


if __name__ == "__main__":
    asyncio.run(main())

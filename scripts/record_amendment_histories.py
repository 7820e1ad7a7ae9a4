"""Record amendment workflow histories for the replay test (tests/test_replay.py).

    .venv/bin/python scripts/record_amendment_histories.py [SUFFIX]

Drives the art. 2.2 amendment procedure (``AmendmentOfAuthorities``) on Temporal's
time-skipping test server with a worker whose ``apply_amendment`` only answers: one
amendment communicated and in effect on its date, one withdrawn. Writes their histories
into tests/histories/ (``amendment-*.json``, the name ending in SUFFIX if one is given),
payloads decrypted like scripts/record_histories.py does. The opening and the actions are
signed with a generated operators' key, the key directory along, as
``treatyflow authority`` sends them (the ``-v2`` histories; the first ones were recorded
before amendments were signed or published on the publisher's queue).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from treatyflow import constants as c  # noqa: E402
from treatyflow.agency import KeyRing, PublicKey, SigningKey  # noqa: E402
from treatyflow.agency.signing import sign_directory  # noqa: E402
from treatyflow.codec import EncryptionCodec, decrypted_history, generate_keys  # noqa: E402
from treatyflow.hub import Signed, signed_by_operators  # noqa: E402
from treatyflow.schemas.amendment import (  # noqa: E402
    AmendmentInput,
    ApplyChange,
    AuthorityChange,
    Communication,
    NewAuthority,
    Notification,
    Withdrawal,
)
from treatyflow.schemas.published import ProfileRef  # noqa: E402
from treatyflow.temporal import (  # noqa: E402
    data_converter,
    register_search_attributes,
    workflow_runner,
)
from treatyflow.workflows.amendment_workflow import AmendmentOfAuthorities  # noqa: E402

OUT = ROOT / "tests" / "histories"
TASK_QUEUE = "record-amendment-histories"
RECEIVED = date(2026, 3, 2)
CHANGE = AuthorityChange(
    treaty="sco-2010", change="add", authority_id="KZ-AFM",
    authority=NewAuthority(id="KZ-AFM", state="KZ", name="Financial Monitoring Agency",
                           source="Notified to the depositary on 2026-03-02 (art. 2.2)"))


@activity.defn(name="apply_amendment")
async def apply(request: ApplyChange) -> ProfileRef:
    """Publishing answered, nothing written: the history is what is kept."""
    return ProfileRef(treaty=request.change.treaty, version=2, digest="ab" * 32)


class Operators:
    """A generated operators' key, and a hub key's directory listing it."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.key = SigningKey.generate(f"{c.OPERATOR_SIGNER}-record-1")
        hub = SigningKey.generate(f"{c.HUB_SENDER}-record-1")
        ring = KeyRing(keys=[PublicKey(key_id=k.key_id, owner=owner, public_key=k.public_key,
                                       valid_from=now)
                             for owner, k in ((c.OPERATOR_SIGNER, self.key),
                                              (c.HUB_SENDER, hub))])
        self.directory = (sign_directory(ring, [hub], now), now)

    def __call__(self, action: Signed) -> Signed:
        return signed_by_operators(action, self.key, lambda: self.directory)


async def main() -> None:
    keys = generate_keys()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(keys),
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"))
    try:
        await register_search_attributes(env.client)
        async with Worker(env.client, task_queue=TASK_QUEUE,
                          workflows=[AmendmentOfAuthorities],
                          workflow_runner=workflow_runner()), \
                Worker(env.client, task_queue=c.publisher_queue(TASK_QUEUE),
                       activities=[apply]):
            await _record(env, keys, sys.argv[1] if len(sys.argv) > 1 else "")
    finally:
        await env.shutdown()


async def _record(env: WorkflowEnvironment, keys: Any, suffix: str) -> None:
    client: Client = env.client
    codec = EncryptionCodec(keys)
    signed = Operators()
    for name, withdrawn in (("amendment-in-effect", False), ("amendment-withdrawn", True)):
        amendment_id = f"KZ-AMD-{'WITHDRAWN' if withdrawn else 'INEFFECT'}{suffix.upper()}"
        notification = Notification(
            amendment_id=amendment_id, change=CHANGE, changed_on=RECEIVED - timedelta(days=5),
            received_on=RECEIVED, effective_on=RECEIVED + timedelta(days=10))
        handle = await client.start_workflow(
            AmendmentOfAuthorities.run,
            signed(AmendmentInput(notification=notification, recorded_on=RECEIVED)),
            id=c.workflow_id("sco-2010", amendment_id), task_queue=TASK_QUEUE)
        await env.sleep(timedelta(days=2))
        await handle.execute_update(AmendmentOfAuthorities.communicate, signed(
            Communication(operator="A. Operator", note="note verbale to every party")))
        if withdrawn:
            await handle.execute_update(AmendmentOfAuthorities.withdraw, signed(
                Withdrawal(operator="A. Operator", reason="the party withdrew its note")))
        state = await handle.result()
        print(name, state.status.value)
        history = decrypted_history(await handle.fetch_history(), codec)
        (OUT / f"{name}{'-' + suffix if suffix else ''}.json").write_text(history.to_json())
        print("recorded", name, len(history.events), "events")


if __name__ == "__main__":
    asyncio.run(main())

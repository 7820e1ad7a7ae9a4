"""Record demo workflow histories for the replay test (tests/test_replay.py).

    TREATYFLOW_STATE_DIR=... python scripts/record_histories.py DEMO-PREFIX [SUFFIX [NAME...]]

Run after `make demo`, once executed requests have left their art. 7 consent phase
(`consent_window_days` treaty days: 90 s on the local stack), since only completed
workflows are recorded; writes one history per demo scenario into tests/histories/, with
the payloads decrypted (the tests replay them without the stack's payload key). With a
SUFFIX, only the scenarios NAMEd (file stems) are recorded, as ``<name><suffix>.json``
beside the older recordings, which keep replaying what earlier code wrote.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from treatyflow.codec import EncryptionCodec, decrypted_history, load_keys
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import demo_scenarios
from treatyflow.temporal import connect

OUT = Path(__file__).resolve().parent.parent / "tests" / "histories"


async def main(prefix: str, suffix: str = "", only: list[str] | None = None) -> None:
    settings = Settings.from_env()
    client = await connect(settings)
    codec = EncryptionCodec(load_keys(settings))
    names = [s.name for s in demo_scenarios()]
    async for wf in client.list_workflows(f"WorkflowId STARTS_WITH 'sco-2010.{prefix}'"):
        match = re.search(r"-(\d{2})00$", wf.id)
        if not match or wf.status is None or wf.status.name != "COMPLETED" and "overdue" not in \
                names[int(match.group(1))]:
            continue
        name = re.sub(r"[^a-z0-9]+", "-", names[int(match.group(1))].lower()).strip("-")
        if only and name not in only:
            continue
        history = decrypted_history(
            await client.get_workflow_handle(wf.id).fetch_history(), codec)
        (OUT / f"{name}{suffix}.json").write_text(history.to_json())
        print("recorded", name, len(history.events), "events")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "",
                     only=sys.argv[3:] or None))

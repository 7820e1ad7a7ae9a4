"""``make chaos`` carries transfers of convicted persons (KZ–UAE 2018) among its requests and
holds them to the same both-sides check: the prescribed final status, every message put on
the diplomatic channel delivered (art. 5.1, 6.1), and the requester told. It checks the
hub's record too: one entry per accepted message and delivered notice, the log consistent
with the hub's checkpoints, on planted records (a SQLite file, no stack); and its
mid-write kill waits for a write under way. The transfer states come from the lifecycle."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from tests.conftest import RECORD_KEYS, TEST_KEYS
from tests.factories import message, new_request_id
from tests.transfer_factories import AE, AE_MFA, KZ, enforcing_case
from treatyflow import constants as c
from treatyflow.agency.signing import sign
from treatyflow.chaos import faults
from treatyflow.chaos.__main__ import _stuck, scenarios, transfer_satisfied, transfer_told
from treatyflow.chaos.record import Owed, accepted, delivered, log_problems, tally
from treatyflow.local import stack
from treatyflow.record import Entry, Record, SignedCheckpoint
from treatyflow.record.writers import Recorder
from treatyflow.schemas.messages import NoticeBody, NoticeMessage
from treatyflow.settings import Settings
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


# --- the record after the faults ---------------------------------------------------------

RU = "RU-MIA"
HUB_KEY = TEST_KEYS.private[c.HUB_SENDER]


@dataclass
class Planted:
    """A record on a SQLite file holding one request's messages and notices, what it owes,
    and a checkpoint the hub signed after the first two entries and one after all."""

    record: Record
    owed: list[Owed]

    async def entries(self) -> list[Entry]:
        return await self.record.log()

    async def checkpoints(self) -> list[SignedCheckpoint]:
        return await self.record.checkpoints()

    async def sql(self, statement: str) -> None:
        async with self.record.engine.begin() as connection:
            await connection.execute(text(statement))


@pytest_asyncio.fixture
async def planted(tmp_path: Path) -> AsyncIterator[Planted]:
    async with await Record.open(f"sqlite+aiosqlite:///{tmp_path / 'record.sqlite3'}",
                                 RECORD_KEYS) as record:
        recorder, owed = Recorder(record), []
        rid = new_request_id()
        for n, (kind, sender, recipient) in enumerate(
                (("request", KZ, RU), ("receipt", RU, KZ), ("execution_report", RU, KZ))):
            body = None if kind == "request" else (
                {} if kind == "receipt" else {"extent": "full", "summary": "Done.",
                                              "confidentiality": "restricted"})
            sent = message(kind, request_id=rid, sender=sender, recipient=recipient, body=body)
            await recorder.accepted(sent, TEST_KEYS.sign(sent))
            owed.append(accepted(sent))
            notice = NoticeMessage(
                kind="notice", message_id=str(uuid.uuid4()), request_id=rid,
                treaty_id=sent.treaty_id, sender=c.HUB_SENDER, recipient=recipient,
                sent_at=datetime.now(UTC),
                body=NoticeBody(event="request_delivered", status="sent", requesting=KZ,
                                requested=RU))
            await recorder.delivered(notice, sign(notice, HUB_KEY))
            owed.append(delivered(notice))
            if n == 0:
                await record.checkpoint(HUB_KEY)
        await record.checkpoint(HUB_KEY)
        yield Planted(record, owed)


async def test_a_whole_record_owes_nothing_and_verifies(planted: Planted) -> None:
    entries = await planted.entries()
    assert len(entries) == len(planted.owed) == 6
    found = tally(entries, planted.owed)
    assert (found.lost, found.duplicated) == ([], [])
    assert log_problems(entries, await planted.checkpoints(), TEST_KEYS.ring) == []


async def test_a_missing_entry_is_lost_and_leaves_a_hole_in_the_log(planted: Planted) -> None:
    await planted.sql("DELETE FROM record_entries WHERE log_index = 2")  # the receipt
    entries = await planted.entries()
    found = tally(entries, planted.owed)
    assert len(found.lost) == 1 and found.lost[0].startswith("receipt ")
    assert found.duplicated == []
    assert log_problems(entries, await planted.checkpoints(), TEST_KEYS.ring) == [
        "the log has no entry at index 2 (next is 3)"]


async def test_an_entry_of_the_wrong_actor_does_not_count(planted: Planted) -> None:
    await planted.sql(f"UPDATE record_entries SET actor = '{KZ}' WHERE log_index = 2")
    [lost] = tally(await planted.entries(), planted.owed).lost
    assert lost.startswith("receipt ") and lost.endswith(f"(only receipt by {KZ})")


async def test_an_entry_twice_is_duplicated(planted: Planted) -> None:
    entries = await planted.entries()
    receipt = entries[2]
    again = receipt.model_copy(update={"index": len(entries)})  # the same row appended again
    found = tally([*entries, again], planted.owed)
    assert found.lost == []
    assert found.duplicated == [f"{planted.owed[2].what}: 2 entries, at 2, {len(entries)}"]
    # The same message under an entry id of its own: a second write, not a retry.
    other = receipt.model_copy(update={"index": len(entries), "entry_id": "e-another"})
    [twice] = tally([*entries, other], planted.owed).duplicated
    assert twice == f"receipt of {receipt.request_id} by {RU} under 2 entry ids"


async def test_a_rewritten_row_fails_the_log(planted: Planted) -> None:
    await planted.sql(f"UPDATE record_entries SET actor = '{AE}' WHERE log_index = 0")
    problems = log_problems(await planted.entries(), await planted.checkpoints(),
                            TEST_KEYS.ring)
    cp2, cp6 = [s.checkpoint for s in await planted.checkpoints()]
    assert problems == [
        f"the rows no longer hash to the root of the checkpoint of {cp.time} "
        f"({cp.tree_size} entries): a row before it was rewritten" for cp in (cp2, cp6)] + [
        f"from the checkpoint of {cp2.time} (2) to now (6): the consistency proof does not "
        "lead to the root of size 6: that tree does not extend the one of size 2"]


async def test_every_checkpoint_must_be_signed_by_the_hub(planted: Planted) -> None:
    await planted.record.checkpoint(TEST_KEYS.private[KZ])  # an authority's key, not the hub's
    problems = log_problems(await planted.entries(), await planted.checkpoints(),
                            TEST_KEYS.ring)
    assert len(problems) == 1 and "is not the hub's" in problems[0]
    # Only the checkpoints signed during the run count; none at all is a failure.
    assert log_problems(await planted.entries(), await planted.checkpoints(), TEST_KEYS.ring,
                        since="9999")[-1:] == [
        "no checkpoint of a non-empty log was signed during the run"]


def test_the_mid_write_kill_waits_for_a_write_under_way(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    paths = stack.Paths(tmp_path)
    paths.run.mkdir(parents=True)
    writers = {name: subprocess.Popen(["sleep", "60"], start_new_session=True)
               for name in ("gateway", "worker")}
    for name, process in writers.items():
        paths.pid(name).write_text(str(process.pid))
    database = tmp_path / "record.sqlite3"
    sqlite3.connect(database).execute("PRAGMA journal_mode=WAL").connection.close()
    writing = threading.Event()

    def write_later() -> None:
        writer = sqlite3.connect(database, isolation_level=None)
        threading.Event().wait(0.3)
        writer.execute("BEGIN IMMEDIATE")
        writing.set()
        threading.Event().wait(2)
        writer.execute("ROLLBACK")
        writer.close()

    thread = threading.Thread(target=write_later)
    thread.start()
    try:
        with pytest.raises(faults.ProbeFailed, match="no write to the record began"):
            faults.kill_mid_write(settings, timeout=0.1)  # before the write: nobody killed
        assert all(stack._alive(paths.pid(name)) for name in writers)
        waited = faults.kill_mid_write(settings, timeout=10)
        assert writing.is_set() and waited >= 0.1
        assert not any(stack._alive(paths.pid(name)) for name in writers)
    finally:
        thread.join()
        for process in writers.values():
            process.kill()
            process.wait()

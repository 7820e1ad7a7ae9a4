"""Facts read from entries the hub's own Recorder wrote, and history that keeps the log whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import RECORD_KEYS, TEST_KEYS
from treatyflow.chaos.record import log_problems
from treatyflow.constants import HUB_SENDER
from treatyflow.contract.examples import request_body
from treatyflow.record import Record
from treatyflow.record.writers import Recorder
from treatyflow.schemas.messages import INBOUND, NoticeBody, NoticeMessage
from treatyflow.statistics import AmbiguousCase, case_of, fit_forecasts, read_facts
from treatyflow.statistics.cases import waiting_longest_of
from treatyflow.statistics.facts import Fact
from treatyflow.statistics.history import generate_history

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
RID = "KZ-GPO-2025-0001"


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


async def _send(recorder: Recorder, n: int, kind: str, sender: str, at: datetime,
                body: dict[str, Any]) -> None:
    recipient = "RU-MIA" if sender == "KZ-GPO" else "KZ-GPO"
    message = INBOUND.validate_python({
        "kind": kind, "message_id": f"{RID}-m{n}", "request_id": RID, "treaty_id": "sco-2010",
        "sender": sender, "recipient": recipient, "sent_at": at, "body": body})
    await recorder.accepted(message, TEST_KEYS.sign(message), at=at)


async def test_a_request_as_its_entries_tell_it(tmp_path: object) -> None:
    async with await Record.open(f"sqlite+aiosqlite:///{tmp_path}/r.sqlite3",
                                 RECORD_KEYS) as record:
        recorder = Recorder(record)
        await _send(recorder, 0, "request", "KZ-GPO", day(0),
                    request_body(form_of_cooperation="identification", domestic_case="KZ-77"))
        await _send(recorder, 1, "receipt", "RU-MIA", day(2), {})
        notice = NoticeMessage(
            kind="notice", message_id=f"{RID}-n1", request_id=RID, treaty_id="sco-2010",
            sender=HUB_SENDER, recipient="KZ-GPO", sent_at=day(2),
            body=NoticeBody(event="received", status="received", deadline=day(32),
                            requesting="KZ-GPO", requested="RU-MIA"))
        await recorder.delivered(notice, TEST_KEYS.sign(notice), at=day(2))
        await _send(recorder, 2, "clarification_request", "RU-MIA", day(5),
                    {"topic": "additional_information", "questions": "Which period?"})
        await _send(recorder, 3, "clarification", "KZ-GPO", day(8), {"answer": "2024."})
        await _send(recorder, 4, "execution_report", "RU-MIA", day(40),
                    {"extent": "full", "summary": "Done.", "confidentiality": "restricted"})
        facts = await read_facts(record, seconds_per_day=1.0, now=day(50))
        before = await read_facts(record, now=day(20))
    [fact] = facts
    assert (fact.form, fact.domestic_case, fact.requested_state) == ("identification",
                                                                      "KZ-77", "RU")
    assert fact.outcome == "executed_full" and fact.clarifications == 1
    # The hub's notice states the real clock, whatever the declared one is.
    assert fact.clock_from_record and fact.seconds_per_day == 86_400
    assert fact.waited(day(50)) == 40
    # Term: 30 days from receipt (day 2), the clock paused 3 days for the clarification.
    assert fact.deadline(day(50)) == day(35) and fact.overdue(day(50))
    # As of day 20 it was open, within its term, waiting 20 days.
    [early] = before
    assert early.outcome == "open" and not early.overdue(day(20))
    assert early.waited(day(20)) == 20


async def test_history_leaves_a_log_that_verifies(tmp_path: object) -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    async with await Record.open(f"sqlite+aiosqlite:///{tmp_path}/h.sqlite3",
                                 RECORD_KEYS) as record:
        made = await generate_history(record, TEST_KEYS.private.__getitem__, years=1,
                                      per_year=150, seed=3, end=end)
        await record.checkpoint(TEST_KEYS.private[HUB_SENDER])
        entries, checkpoints = await record.log(), await record.checkpoints()
        facts = await read_facts(record, now=end)
    assert made.summary.entries == len(entries) > made.summary.requests > 100
    assert log_problems(entries, checkpoints, TEST_KEYS.ring) == []
    assert len(facts) == made.summary.requests
    # Each request's latent answer shows in the record when it came before the end.
    plans = {p.request_id: p for p in made.requests}
    for fact in facts:
        plan = plans[fact.request_id]
        if fact.final_at is not None:
            assert abs(fact.waited(end) - (plan.answer_days or -1)) < 1e-3
    waiting = next(f for f in facts if f.ended_at is None and f.domestic_case)
    view = case_of(facts, waiting.domestic_case or "", fit_forecasts(facts, now=end), now=end)
    mine = next(r for r in view.requests if r.request_id == waiting.request_id)
    assert mine.outcome == "open" and mine.days_waited == round(waiting.waited(end), 3)


def test_another_states_request_never_joins_a_domestic_case() -> None:
    """A case number is its requesting state's: a request of RU that carries KZ's number
    (the pattern lets any state write any number) is RU's case, not part of KZ's view
    nor of its wait."""
    now = day(400)
    kz = [Fact(request_id=f"KZ-GPO-2025-000{i}", treaty="sco-2010",
               requesting_authority="KZ-GPO", requested_authority="CN-MPS",
               form="identification", sent_at=day(300 + i), domestic_case="KZ-77")
          for i in range(2)]
    hostile = Fact(request_id="RU-MIA-2020-0001", treaty="sco-2010",
                   requesting_authority="RU-MIA", requested_authority="CN-MPS",
                   form="identification", sent_at=day(0), domestic_case="KZ-77")
    facts = [*kz, hostile]
    model = fit_forecasts(facts, now=now)
    view = case_of(facts, "KZ-77", model, state="KZ", now=now)
    assert [r.request_id for r in view.requests] == [f.request_id for f in kz]
    assert view.longest_wait_days == 100
    with pytest.raises(AmbiguousCase, match="KZ, RU"):
        case_of(facts, "KZ-77", model, now=now)
    longest = waiting_longest_of(facts, model, 5, now=now)
    assert [(c.requesting_state, c.case_no, c.requests) for c in longest] == [
        ("RU", "KZ-77", 1), ("KZ", "KZ-77", 2)]


async def test_a_follower_folds_in_what_the_record_gained_as_a_whole_read_would(
        tmp_path: object) -> None:
    """The gateway's gauges follow the record: read after each step, a follower holds the
    facts a read of the whole record gives, having read each entry once."""
    from treatyflow.statistics.facts import FactsFollower

    async with await Record.open(f"sqlite+aiosqlite:///{tmp_path}/f.sqlite3",
                                 RECORD_KEYS) as record:
        recorder, follower = Recorder(record), FactsFollower(1.0)
        await _send(recorder, 0, "request", "KZ-GPO", day(0), request_body())
        [opened] = await follower.read(record)
        assert opened.outcome == "open" and opened.received_at is None
        await _send(recorder, 1, "receipt", "RU-MIA", day(2), {})
        await _send(recorder, 2, "execution_report", "RU-MIA", day(9),
                    {"extent": "full", "summary": "Done.", "confidentiality": "restricted"})
        [followed] = await follower.read(record)
        [whole] = await read_facts(record, seconds_per_day=1.0)
        read = follower.read_up_to
    assert followed == whole and followed.outcome == "executed_full"
    assert read == 3  # each entry folded in once

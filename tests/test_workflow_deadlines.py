"""The request workflow on the time-skipping server with real treaty durations."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import KZ, RU, Assistance
from tests.factories import message, request_body

REPORT = {"extent": "full", "summary": "Statements attached.", "confidentiality": "restricted"}
ORAL = {"urgent": True, "oral": True, "signed_by": None}  # an urgent oral request (art. 5.2)


async def test_overdue_after_thirty_days_with_reminders(assistance: Assistance) -> None:
    rid = await assistance.received()
    await assistance.env.sleep(timedelta(days=29, hours=12))
    state = await assistance.state(rid)
    assert not state.overdue
    assert assistance.outbox.events(KZ).count("deadline_reminder") == 2
    await assistance.env.sleep(timedelta(days=1))
    state = await assistance.state(rid)
    assert state.overdue and state.status == "received"
    assert assistance.both_told("overdue")


async def test_oral_request_lapses_after_72_hours_unconfirmed(assistance: Assistance) -> None:
    rid = await assistance.open(**ORAL)
    await assistance.env.sleep(timedelta(hours=71))
    assert (await assistance.state(rid)).status == "sent"
    await assistance.env.sleep(timedelta(hours=2))
    state = await assistance.state(rid)
    assert state.status == "lapsed"
    assert assistance.both_told("lapsed")


async def test_written_confirmation_within_72_hours_keeps_the_request_alive(
    assistance: Assistance,
) -> None:
    rid = await assistance.open(**ORAL)
    await assistance.env.sleep(timedelta(hours=48))
    confirmation = message("confirmation", request_id=rid, sender=KZ, recipient=RU,
                           body={"request": request_body(urgent=True)})
    await assistance.submit(confirmation)
    await assistance.env.sleep(timedelta(days=2))
    state = await assistance.state(rid)
    assert state.status == "sent" and not state.oral_unconfirmed
    assert "request_confirmed" in assistance.outbox.events(RU)
    assert "lapsed" not in assistance.outbox.events()


async def test_clock_stops_while_clarification_is_awaited(assistance: Assistance) -> None:
    rid = await assistance.received()
    await assistance.env.sleep(timedelta(days=10))
    ask = message("clarification_request", request_id=rid, sender=RU, recipient=KZ,
                  body={"topic": "additional_information", "questions": "Which period?"})
    await assistance.submit(ask)
    await assistance.env.sleep(timedelta(days=25))  # waiting on the requester: clock paused
    state = await assistance.state(rid)
    assert not state.overdue and "overdue" not in assistance.outbox.events()
    await assistance.submit(message("clarification", request_id=rid, sender=KZ, recipient=RU,
                                    in_reply_to=ask.message_id,
                                    body={"answer": "March to June 2025."}))
    await assistance.env.sleep(timedelta(days=19))
    assert not (await assistance.state(rid)).overdue
    await assistance.env.sleep(timedelta(days=2))  # 10 + 20 days of running clock: overdue
    assert (await assistance.state(rid)).overdue


async def test_final_state_ends_the_workflow_with_its_outcome(assistance: Assistance) -> None:
    rid = await assistance.received()
    await assistance.submit(message(
        "refusal", request_id=rid, sender=RU, recipient=KZ,
        body={"extent": "whole", "grounds": ["no_offence"],
              "reason": "The act is not an offence under the law of the requested state."}))
    outcome = await assistance.outcome(rid)
    assert (outcome.status, outcome.outcome) == ("refused", "whole")


async def test_silent_requested_authority_is_deemed_to_have_received_and_goes_overdue(
    assistance: Assistance,
) -> None:
    rid = await assistance.open()
    await assistance.env.sleep(timedelta(days=4))
    assert (await assistance.state(rid)).status == "sent"
    await assistance.env.sleep(timedelta(days=2))
    state = await assistance.state(rid)
    assert state.status == "received" and state.received_at == state.opened_at
    assert assistance.both_told("receipt_deemed")
    await assistance.env.sleep(timedelta(days=25))  # 31 days after delivery
    assert (await assistance.state(rid)).overdue


async def _overdue_then_report(assistance: Assistance, before_deadline: timedelta) -> str:
    """A request past its deadline (the overdue timer fired), then a report that reached
    the gateway ``before_deadline`` before the deadline (negative: after it) and was
    applied only now, as after an outage of Temporal."""
    rid = await assistance.received()
    await assistance.env.sleep(timedelta(days=30, minutes=5))
    state = await assistance.state(rid)
    assert state.overdue and state.deadline is not None
    arrived = state.deadline - before_deadline
    report = message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                     body=REPORT, sent_at=arrived - timedelta(seconds=2))
    await assistance.submit(report, received_at=arrived)
    await assistance.env.sleep(timedelta(minutes=1))  # the notices go out
    return rid


async def test_a_report_that_arrived_before_the_deadline_is_on_time_though_applied_after(
    assistance: Assistance,
) -> None:
    rid = await _overdue_then_report(assistance, timedelta(seconds=24))
    state = await assistance.state(rid)
    assert state.status == "executed" and not state.overdue
    events = [e.event for e in state.timeline]
    assert events[-3:] == ["overdue", "overdue_withdrawn", "execution_report"]
    assert assistance.both_told("overdue_withdrawn")
    executed = next(d.message for d in assistance.outbox.sent
                    if d.message.body.event == "executed")
    assert executed.body.overdue is False


async def test_a_report_that_arrived_after_the_deadline_stays_overdue(
    assistance: Assistance,
) -> None:
    rid = await _overdue_then_report(assistance, -timedelta(seconds=24))
    state = await assistance.state(rid)
    assert state.status == "executed" and state.overdue
    assert "overdue_withdrawn" not in assistance.outbox.events()


async def test_a_confirmation_that_arrived_within_72_hours_undoes_a_lapse_applied_before_it(
    assistance: Assistance,
) -> None:
    """Art. 5.2 judged by arrival: the lapse timer fired while a written confirmation that
    had reached the hub 24 s before the 72 hours waited (Temporal away). The request is
    open again, as it was, and both sides are told the lapse is withdrawn."""
    rid = await assistance.open(**ORAL)
    await assistance.env.sleep(timedelta(hours=72, minutes=1))
    lapsed = await assistance.state(rid)
    assert lapsed.status == "lapsed" and lapsed.confirm_by is not None
    arrived = lapsed.confirm_by - timedelta(seconds=24)
    confirmation = message("confirmation", request_id=rid, sender=KZ, recipient=RU,
                           body={"request": request_body(urgent=True)},
                           sent_at=arrived - timedelta(seconds=2))
    await assistance.submit(confirmation, received_at=arrived)
    await assistance.env.sleep(timedelta(minutes=1))  # the notices go out
    state = await assistance.state(rid)
    assert state.status == "sent" and not state.oral_unconfirmed
    assert [e.event for e in state.timeline][-3:] == ["lapsed", "lapse_withdrawn",
                                                      "confirmation"]
    assert assistance.both_told("lapse_withdrawn")
    assert "request_confirmed" in assistance.outbox.events(RU)
    # It goes on as any confirmed request: received, then executed.
    await assistance.receipt(rid)
    assert (await assistance.state(rid)).status == "received"

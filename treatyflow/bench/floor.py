"""The floor: bare Temporal doing what one typical request lifecycle does (three updates,
the first an update-with-start, and four notice activities), with no RabbitMQ, no
validation, no treaty logic. Its worker runs as its own process, like treatyflow's, and
hosts the storm's floor too (``floor_storm.py``), whose notices go through RabbitMQ.

    python -m treatyflow.bench.floor --task-queue Q   # the floor's worker
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from temporalio.worker import Worker

    from treatyflow import process
    from treatyflow.bench.floor_contract import (
        FloorAccepted,
        FloorDelivered,
        FloorDone,
        FloorNotice,
        FloorStart,
        FloorStep,
    )
    from treatyflow.settings import Settings

# Notices per step of a typical lifecycle (request: delivered + accepted; receipt:
# received; execution report: executed), as the lifecycle sends them.
STEPS: tuple[tuple[str, int], ...] = (("request", 2), ("receipt", 1), ("execution_report", 1))


@activity.defn(name="floor_notify")
async def notify(notice: FloorNotice) -> FloorDelivered:
    """Delivers nothing: the floor measures Temporal alone."""
    return FloorDelivered(request_id=notice.request_id)


@workflow.defn(name="FloorLifecycle")
class FloorLifecycle:
    """One lifecycle's worth of Temporal work."""

    @workflow.init
    def __init__(self, start: FloorStart) -> None:
        self._request_id = start.request_id
        self._steps = 0
        self._final = False

    @workflow.run
    async def run(self, start: FloorStart) -> FloorDone:
        await workflow.wait_condition(lambda: self._final)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return FloorDone(request_id=self._request_id, steps=self._steps)

    @workflow.update
    async def submit(self, step: FloorStep) -> FloorAccepted:
        self._steps += 1
        for index in range(step.notices):
            await workflow.execute_activity(
                notify, FloorNotice(request_id=self._request_id, kind=step.kind, index=index),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5)),
            )
        self._final = self._final or step.final
        return FloorAccepted(kind=step.kind)


async def run(settings: Settings, stop: asyncio.Event, task_queue: str) -> None:
    import aio_pika

    # Registered from the module by its name, even when this file runs as __main__.
    from treatyflow.bench import floor, floor_storm
    from treatyflow.constants import HUB_SENDER, HUB_USER
    from treatyflow.keys import signing_key
    from treatyflow.temporal import connect, workflow_runner
    from treatyflow.topology import read_passwords

    client = await connect(settings)
    # The storm floor's notices: the hub's broker user and key, a channel with confirms.
    broker = await aio_pika.connect(settings.amqp_url(
        HUB_USER, read_passwords(settings.secrets_dir)[HUB_USER]))
    channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
    notices = floor_storm.FloorNotices(channel, signing_key(settings.secrets_dir, HUB_SENDER))
    # The same sandbox settings as treatyflow's worker: the models and the workflow
    # modules are shared with the sandbox, not re-imported for each run.
    async with broker, Worker(
            client, task_queue=task_queue,
            workflows=[floor.FloorLifecycle, floor_storm.FloorStorm],
            activities=[floor.notify, notices.notify],
            workflow_runner=workflow_runner("treatyflow.bench.floor_contract",
                                            "treatyflow.bench.floor",
                                            "treatyflow.bench.floor_storm"),
            max_cached_workflows=settings.worker_cached_workflows,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.worker_sticky_seconds)):
        ready = settings.state_dir / "run" / f"floor-{task_queue}.ready"
        ready.parent.mkdir(parents=True, exist_ok=True)
        ready.touch()
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    process.serve(lambda settings, stop: run(settings, stop, args.task_queue))


if __name__ == "__main__":
    main()

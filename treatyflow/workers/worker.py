"""The Temporal worker: hosts the workflows of every procedure and the delivery activity
(an amendment's change is published by the gateway, ``workers.publisher``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aio_pika.abc import AbstractConnection
from temporalio.worker import Worker

from treatyflow import amqp, logs, metrics, process
from treatyflow.activities.amendment import Amendments
from treatyflow.activities.delivery import Delivery
from treatyflow.authorities import Onboarding
from treatyflow.codec import load_keys
from treatyflow.constants import HUB_SENDER, HUB_USER, TASK_QUEUE
from treatyflow.keys import CurrentKey, RegistryFile
from treatyflow.procedures import REGISTRY
from treatyflow.profile_store import ProfileStore
from treatyflow.record import Record
from treatyflow.record.writers import Recorder
from treatyflow.schemas import published
from treatyflow.settings import Settings
from treatyflow.temporal import connect, workflow_runner
from treatyflow.topology import read_passwords

WORKFLOWS = [procedure.workflow for procedure in REGISTRY.values()]  # every procedure's


async def run(settings: Settings, stop: asyncio.Event, task_queue: str = TASK_QUEUE) -> None:
    log = logs.get("treatyflow.worker")
    client = await connect(settings, runtime=metrics.sdk_runtime(settings.metrics_host,
                                                                 settings.sdk_metrics_port))
    metrics.serve(settings.metrics_host, settings.worker_metrics_port)
    password = read_passwords(settings.secrets_dir)[HUB_USER]
    hub_key = CurrentKey(settings.secrets_dir, HUB_SENDER)
    record = await Record.open(settings.record_database_url, load_keys(settings))
    # Workflows read their profile version and key directory from the gateway's store.
    published.install_loader(ProfileStore(settings.published_dir).read)
    delivery: Delivery | None = None
    connected = asyncio.Event()

    async def session(connection: AbstractConnection) -> None:
        """The delivery channel, opened anew on each connection (amqp.py says why)."""
        nonlocal delivery
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        if delivery is None:
            delivery = Delivery(channel, hub_key, RegistryFile(settings.secrets_dir),
                                Recorder(record))
        delivery.channel = channel
        connected.set()

    broker = asyncio.create_task(amqp.stay_connected(
        settings.amqp_url(HUB_USER, password), "treatyflow-worker", session, stop))
    waiting = asyncio.ensure_future(connected.wait())
    await asyncio.wait({waiting, broker}, return_when=asyncio.FIRST_COMPLETED)
    if delivery is None:  # stopped before the broker answered
        waiting.cancel()
        await broker
        await record.close()
        return
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        # An amendment's change is published by the gateway (workers.publisher); this one
        # serves only a change scheduled here before that, still retrying (a worker that
        # may write published/, as the local stack's).
        activities=[delivery.deliver, Amendments(Onboarding(settings),
                                                 RegistryFile(settings.secrets_dir)).apply],
        workflow_runner=workflow_runner(),
        max_cached_workflows=settings.worker_cached_workflows,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.worker_sticky_seconds),
    ):
        log.info("worker ready", task_queue=task_queue, hub_key=hub_key().key_id,
                 metrics=f"{settings.metrics_host}:{settings.worker_metrics_port}",
                 sdk_metrics=f"{settings.metrics_host}:{settings.sdk_metrics_port}")
        (settings.state_dir / "run").mkdir(parents=True, exist_ok=True)
        (settings.state_dir / "run" / f"{settings.instance or 'worker'}.ready").touch()
        await stop.wait()
        log.info("worker stopping")
    await broker
    await record.close()


def main() -> None:
    process.serve(run)


if __name__ == "__main__":
    main()

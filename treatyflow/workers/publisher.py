"""The publisher's activities: what only the process owning ``published/`` runs (the
gateway, which publishes every profile version and key directory there), on its own
task queue, ``constants.publisher_queue``. An amendment's change (SCO 2010 art. 2.2)
takes effect as a profile version published here: the workers only read that folder
(docker-compose mounts it read-only into them). The publisher publishes only what the
operators' key, as the hub's own registry holds it, opened."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from treatyflow import constants as c
from treatyflow.activities.amendment import Amendments
from treatyflow.authorities import Onboarding
from treatyflow.keys import RegistryFile
from treatyflow.settings import Settings

# Amendments are rare; one at a time keeps their versions in the order they took effect.
MAX_CONCURRENT = 1


def publisher(client: Client, settings: Settings, task_queue: str = c.TASK_QUEUE) -> Worker:
    """The activity worker beside the workflows of ``task_queue``, on its publisher queue."""
    return Worker(client, task_queue=c.publisher_queue(task_queue),
                  activities=[Amendments(Onboarding(settings),
                                         RegistryFile(settings.secrets_dir)).apply],
                  max_concurrent_activities=MAX_CONCURRENT)

"""What each thing a workflow asks of Temporal costs the server, per lifecycle.

    python -m treatyflow.bench.costs [--lifecycles N]

The floor's lifecycle (three updates, four activities) in variants that add one thing
each: a 5 KB input, search-attribute upserts, a timer set and cancelled at every step,
or staying open on a long timer instead of completing. For each it prints the Temporal
server's CPU time per lifecycle (its whole process), measured on one fresh stack. CPU
time, not wall time, so it says what the server did whatever else the machine is doing.
It is how BENCHMARKS.md found where treatyflow's overhead in the server came from.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
import uuid
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey, WorkflowIDConflictPolicy

with workflow.unsafe.imports_passed_through():
    from temporalio.client import Client, WithStartWorkflowOperation
    from temporalio.worker import Worker

    from treatyflow import constants as c
    from treatyflow.bench.harness import bounded, drive
    from treatyflow.process import finish
    from treatyflow.settings import Settings

STEPS = (("sent", 2), ("received", 1), ("executed", 1))
SA_STATUS = SearchAttributeKey.for_keyword(c.SA_STATUS)
SA_TREATY = SearchAttributeKey.for_keyword(c.SA_TREATY)
SA_DEADLINE = SearchAttributeKey.for_datetime(c.SA_DEADLINE)
SA_OVERDUE = SearchAttributeKey.for_bool(c.SA_OVERDUE)


class Variant(BaseModel):
    """One lifecycle's input: what it adds to the floor's."""

    request_id: str
    blob: str = ""
    upserts: bool = False
    timers: bool = False
    stay_open: bool = False


class Step(BaseModel):
    """One update: its new state and how many notices it sends."""

    status: str
    notices: int
    final: bool = False


class Done(BaseModel):
    """An answer: which request, which step."""

    request_id: str
    step: int


@activity.defn(name="costs_notify")
async def notify(done: Done) -> Done:
    """Delivers nothing: only Temporal's work is measured."""
    return done


@workflow.defn(name="CostsLifecycle")
class CostsLifecycle:
    """The floor's lifecycle, plus whatever its input asks for."""

    @workflow.init
    def __init__(self, variant: Variant) -> None:
        self._variant = variant
        self._steps = 0
        self._final = False

    @workflow.run
    async def run(self, variant: Variant) -> Done:
        while not self._final:
            seen = self._steps
            timeout = timedelta(days=5) if variant.timers else None
            try:
                await workflow.wait_condition(
                    lambda seen=seen: self._steps != seen or self._final,  # type: ignore[misc]
                    timeout=timeout)
            except TimeoutError:
                pass
        if variant.stay_open:
            try:
                await workflow.wait_condition(lambda: False, timeout=timedelta(days=90))
            except TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return Done(request_id=variant.request_id, step=self._steps)

    @workflow.update
    async def submit(self, step: Step) -> Done:
        self._steps += 1
        if self._variant.upserts:
            workflow.upsert_search_attributes([
                SA_STATUS.value_set(step.status), SA_TREATY.value_set("costs"),
                SA_OVERDUE.value_set(False),
                SA_DEADLINE.value_set(workflow.now() + timedelta(days=30))])
        for _ in range(step.notices):
            await workflow.execute_activity(
                notify, Done(request_id=self._variant.request_id, step=self._steps),
                start_to_close_timeout=timedelta(seconds=30))
        self._final = self._final or step.final
        return Done(request_id=self._variant.request_id, step=self._steps)


VARIANTS: dict[str, dict[str, object]] = {
    "floor": {},
    "5 KB input": {"blob": os.urandom(2600).hex()},
    "upsert at every step (3)": {"upserts": True},
    "timer set and cancelled at every step": {"timers": True},
    "left open on a 90-day timer": {"stay_open": True},
}


async def lifecycles(client: Client, task_queue: str, n: int, concurrency: int,
                     extra: dict[str, object]) -> None:
    run = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        wf_id = f"costs-{run}-{i}"
        start = WithStartWorkflowOperation(
            CostsLifecycle.run, Variant(request_id=wf_id, **extra),  # type: ignore[arg-type]
            id=wf_id, task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        await drive(client, start, CostsLifecycle.submit, STEPS,
                    lambda status, notices, final: Step(status=status, notices=notices,
                                                        final=final))

    await bounded(n, concurrency, one)


async def measure(settings: Settings, n: int, concurrency: int = 25) -> dict[str, float]:
    """Server CPU milliseconds per lifecycle, by variant."""
    from treatyflow.bench import costs
    from treatyflow.bench.harness import _group_cpu_seconds
    from treatyflow.local import stack
    from treatyflow.temporal import connect, workflow_runner

    client = await connect(settings)
    server = stack._alive(stack.Paths(settings.state_dir).pid("temporal"))
    assert server is not None, "the Temporal server is not running"
    out: dict[str, float] = {}
    async with Worker(client, task_queue="bench-costs", workflows=[costs.CostsLifecycle],
                      activities=[costs.notify], workflow_runner=workflow_runner(__name__)):
        await lifecycles(client, "bench-costs", max(10, n // 10), concurrency, {})  # warm-up
        for name, extra in VARIANTS.items():
            before = _group_cpu_seconds(server)
            await lifecycles(client, "bench-costs", n, concurrency, extra)
            out[name] = round(1000 * (_group_cpu_seconds(server) - before) / n, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    from treatyflow.bench.run import bench_settings
    from treatyflow.local import stack

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lifecycles", type=int, default=300)
    args = parser.parse_args(argv)
    settings = bench_settings(Settings.from_env(), "bench-costs")
    stack.up(settings)
    started = time.perf_counter()
    try:
        figures = asyncio.run(measure(settings, args.lifecycles))
    finally:
        stack.down(settings)
        shutil.rmtree(settings.state_dir, ignore_errors=True)
    floor = figures["floor"]
    print(f"Temporal server CPU per lifecycle ({args.lifecycles} lifecycles each, "
          f"{time.perf_counter() - started:.0f} s):")
    for name, ms in figures.items():
        print(f"  {name:40s} {ms:6.1f} ms  ({ms / floor:.2f} × floor)")
    return 0


if __name__ == "__main__":
    finish(main())

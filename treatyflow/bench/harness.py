"""The phases of ``make bench``, each measured on the same Temporal server in one run.

- floor: bare Temporal lifecycles (``floor.py``): three updates and four activities each;
- treatyflow: full lifecycles (request, receipt, execution report; four notices) published
  by simulated authorities through RabbitMQ, the gateway and the worker;
- offered load: lifecycles started at a fixed rate (open loop), timing each authority's
  publish to the resulting notice in the recipient's inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from treatyflow.bench.floor import STEPS, FloorLifecycle
from treatyflow.bench.floor_contract import FloorStart, FloorStep
from treatyflow.local import stack
from treatyflow.schemas.messages import NoticeMessage, OutboundMessage
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import TREATY, request_content
from treatyflow.simulation.simulator import Simulation

# Requesting → requested authority, across parties, taken in turn.
PAIRS = (("KZ-GPO", "RU-MIA"), ("CN-MPS", "KZ-NSC"), ("RU-GPO", "KZ-GPO"),
         ("KG-MIA", "KZ-MIA"), ("UZ-MIA", "CN-MPS"), ("TJ-MIA", "RU-GPO"))
MESSAGES_PER_LIFECYCLE = len(STEPS) + sum(n for _, n in STEPS)  # 3 in + 4 notices
REPORT = {"extent": "full", "confidentiality": "restricted",
          "summary": "Account statements attached."}


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    lifecycles: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    offered_per_s: float | None = None
    cpu_cores: dict[str, float] = field(default_factory=dict)

    @property
    def lifecycles_per_s(self) -> float:
        return self.lifecycles / self.seconds if self.seconds else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.lifecycles_per_s * MESSAGES_PER_LIFECYCLE

    def percentile(self, p: int) -> float | None:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]

    def summary(self) -> dict[str, object]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        out |= {"lifecycles_per_s": round(self.lifecycles_per_s, 2),
                "messages_per_s": round(self.messages_per_s, 2)}
        if self.latencies_ms:
            out |= {f"p{p}_ms": round(self.percentile(p) or 0, 1) for p in (50, 95, 99)}
        return out


async def bounded(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``one(i)`` for i < n, at most ``concurrency`` at once; the seconds it took."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(i: int) -> None:
        async with gate:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(gated(i) for i in range(n)))
    return time.perf_counter() - started


async def drive(client: Client, start: WithStartWorkflowOperation[Any, Any], submit: Any,
                steps: Sequence[tuple[str, int]],
                step: Callable[[str, int, bool], BaseModel]) -> None:
    """One lifecycle: its workflow started by the update of the first of ``steps`` (a name
    and how many notices it causes), then one update ``submit`` per step left, the last
    one final."""
    (first, notices), *rest = steps
    await client.execute_update_with_start_workflow(
        submit, step(first, notices, False), start_workflow_operation=start)
    handle = await start.workflow_handle()
    for index, (name, notices) in enumerate(rest):
        await handle.execute_update(submit, step(name, notices, index == len(rest) - 1))


# --- floor --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def floor_worker(settings: Settings, task_queue: str) -> AsyncIterator[None]:
    """The floor's worker as its own process, like treatyflow's worker."""
    paths = stack.Paths(settings.state_dir)
    ready = paths.run / f"floor-{task_queue}.ready"
    ready.unlink(missing_ok=True)
    name = f"floor-{task_queue}"
    stack.spawn(name, [sys.executable, "-m", "treatyflow.bench.floor",
                        "--task-queue", task_queue], paths, settings.to_env())
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if time.monotonic() > deadline or not stack._alive(paths.pid(name)):
                raise RuntimeError(f"floor worker did not start; see {paths.logs}/{name}.log")
            await asyncio.sleep(0.1)
        yield
    finally:
        stack.stop_pid(paths.pid(name))


async def floor_phase(client: Client, task_queue: str, n: int, concurrency: int) -> Phase:
    """``n`` bare lifecycles, at most ``concurrency`` at once."""
    run = uuid.uuid4().hex[:8]

    async def one(i: int) -> None:
        wf_id = f"floor-{run}-{i}"
        start = WithStartWorkflowOperation(
            FloorLifecycle.run, FloorStart(request_id=wf_id), id=wf_id, task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        await drive(client, start, FloorLifecycle.submit, STEPS,
                    lambda kind, notices, final: FloorStep(kind=kind, notices=notices,
                                                          final=final))

    return Phase("floor", n, await bounded(n, concurrency, one))


# --- treatyflow -----------------------------------------------------------------------


class EventCount:
    """Counts one kind of notice as it reaches the inboxes; ``wait_for(k)`` returns the
    moment (``time.perf_counter``) the k-th arrived."""

    def __init__(self, event: str, marker: str) -> None:
        self.event, self.marker = event, marker
        self.times: list[float] = []
        self._changed = asyncio.Event()

    def add(self, at: float) -> None:
        self.times.append(at)
        self._changed.set()

    async def wait_for(self, k: int, timeout: float = 120) -> float:
        async with asyncio.timeout(timeout):
            while len(self.times) < k:
                self._changed.clear()
                await self._changed.wait()
        return self.times[k - 1]


class Authorities:
    """Simulated authorities that run bench lifecycles and time what reaches their inboxes."""

    def __init__(self, settings: Settings, *, pairs: Sequence[tuple[str, str]] = PAIRS,
                 treaty: str = TREATY, acknowledge_retrievals: bool = True) -> None:
        self.sim = Simulation(settings, settings.seconds_per_day,
                              acknowledge_retrievals=acknowledge_retrievals)
        self.pairs, self.treaty = tuple(pairs), treaty
        self._waiting: dict[tuple[str, str], asyncio.Future[float]] = {}
        self._counts: list[EventCount] = []
        self.sim.listeners.append(self._arrived)
        self.run = uuid.uuid4().hex[:6].upper()
        self._numbers = itertools.count()

    async def __aenter__(self) -> Authorities:
        await self.sim.connect({a for pair in self.pairs for a in pair})
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sim.close()

    def _arrived(self, authority: str, message: OutboundMessage) -> None:
        if isinstance(message, NoticeMessage):
            now = time.perf_counter()
            waiter = self._waiting.pop((message.request_id, message.body.event), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
            for count in self._counts:
                if (message.body.event == count.event
                        and count.marker in message.request_id):
                    count.add(now)

    def _expect(self, request_id: str, event: str) -> asyncio.Future[float]:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[(request_id, event)] = waiter
        return waiter

    def count_events(self, event: str, marker: str) -> EventCount:
        """Count the ``event`` notices of requests whose id holds ``marker`` (after the
        requesting authority's id, with which every request id begins)."""
        count = EventCount(event, marker)
        self._counts.append(count)
        return count

    def request_id(self, number: int) -> str:
        """The id of this run's ``number``-th request (0: the first)."""
        requester = self.pairs[number % len(self.pairs)][0]
        return f"{requester}-BENCH-{self.run}-{number:06d}"

    def _next(self) -> tuple[str, str, str]:
        number = next(self._numbers)
        requester, requested = self.pairs[number % len(self.pairs)]
        return self.request_id(number), requester, requested

    async def open_request(self, timeout: float = 300) -> str:
        """One request sent and delivered to both sides, then left waiting for its receipt."""
        rid, requester, requested = self._next()
        notices = [self._expect(rid, "request_delivered"), self._expect(rid, "request_accepted")]
        await self.sim.send(requester, "request", rid, requested, request_content(),
                            treaty=self.treaty)
        await asyncio.wait_for(asyncio.gather(*notices), timeout)
        return rid

    async def lifecycle(self, timeout: float = 120) -> list[float]:
        """One request from sending to execution; the publish-to-notice latencies (ms)."""
        rid, requester, requested = self._next()
        delivered = self._expect(rid, "request_delivered")
        received = self._expect(rid, "received")
        executed = self._expect(rid, "executed")
        sent = time.perf_counter()
        await self.sim.send(requester, "request", rid, requested, request_content(),
                            treaty=self.treaty)
        first = await asyncio.wait_for(delivered, timeout) - sent
        await self.sim.send(requested, "receipt", rid, requester, {}, treaty=self.treaty)
        await asyncio.wait_for(received, timeout)
        sent = time.perf_counter()
        await self.sim.send(requested, "execution_report", rid, requester, REPORT,
                            treaty=self.treaty)
        last = await asyncio.wait_for(executed, timeout) - sent
        return [first * 1000, last * 1000]


async def treatyflow_phase(authorities: Authorities, n: int, concurrency: int) -> Phase:
    """``n`` full lifecycles through the hub, at most ``concurrency`` at once."""
    phase = Phase("treatyflow", n, 0.0)

    async def one(_: int) -> None:
        phase.latencies_ms += await authorities.lifecycle()

    phase.seconds = await bounded(n, concurrency, one)
    return phase


async def offered_phase(authorities: Authorities, rate: float, n: int) -> Phase:
    """``n`` lifecycles started at ``rate`` per second whatever the hub's pace (open loop):
    latency at a known load."""
    phase = Phase(f"offered {rate:.1f}/s", n, 0.0, offered_per_s=rate)

    async def one() -> None:
        phase.latencies_ms += await authorities.lifecycle()

    started = time.perf_counter()
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    phase.seconds = time.perf_counter() - started
    return phase


COMPONENTS = ("temporal", "rabbitmq", "worker", "gateway", "codec")
_TICK = os.sysconf("SC_CLK_TCK")


def _group(pgid: int) -> Iterator[tuple[Path, list[str]]]:
    """Each live process of process group ``pgid``: its /proc folder and the fields of its
    stat after the command name."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid:  # pgrp
            yield stat.parent, fields


def _group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in process group ``pgid``."""
    return sum(int(f[11]) + int(f[12]) for _, f in _group(pgid)) / _TICK  # utime, stime


class CpuMeter:
    """Cores each stack component (its whole process group: RabbitMQ's Erlang VM, the
    Temporal server…) and this driver used over a phase. The stack starts each component
    in its own session, so its pid is its group id."""

    def __init__(self, settings: Settings, extra: tuple[str, ...] = ()) -> None:
        paths = stack.Paths(settings.state_dir)
        self._groups = {name: pid for name in (*COMPONENTS, *extra)
                        if (pid := stack._alive(paths.pid(name))) is not None}
        self._start: dict[str, float] = {}
        self._started = 0.0

    def _now(self) -> dict[str, float]:
        times = os.times()
        return {"driver": times.user + times.system,
                **{name: _group_cpu_seconds(pid) for name, pid in self._groups.items()}}

    def __enter__(self) -> CpuMeter:
        self._start, self._started = self._now(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._started
        end = self._now()
        self.cores = {name: round((end[name] - self._start[name]) / wall, 2) for name in end}
        self.cores["total"] = round(sum(self.cores.values()), 2)


def rss_mb(settings: Settings, name: str) -> float | None:
    """Resident memory of one of the stack's components, in MiB: its whole process group
    (RabbitMQ's Erlang VM runs under a wrapper, the Temporal server is one process)."""
    pid = stack._alive(stack.Paths(settings.state_dir).pid(name))
    if pid is None:
        return None
    total = 0
    for folder, _ in _group(pid):
        try:
            lines = (folder / "status").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return round(total / 1024, 1)

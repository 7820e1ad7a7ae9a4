"""``make chaos``: requests through a fresh local stack while faults are injected, then a
check from both sides that nothing was lost, applied twice or left stuck.

    python -m treatyflow.chaos [--requests N] [--rate R] [--seed S] [--gateways N] [--workers M]

Simulated authorities (acking each notice only once handled) run scenarios with known
final states: requests for assistance (SCO 2010) and, about one in twenty, transfers of
convicted persons (KZ–UAE 2018) carried through the two foreign ministries as in the demo;
a bounded injector kills the worker, the gateway, both at once while one of them is
writing to the hub's record, RabbitMQ (kill -9 and a graceful restart, then waits for
every consumer) and the Temporal dev server (restarted on its SQLite file while deadline
timers are pending), crashes an authority holding an unacked notice, republishes
messages, and runs the poison and unroutable probes. With ``--gateways 2 --workers 2`` the
stack runs replicas (docs/operators/scale-out.md): each kill takes one of them, and a killed
gateway's lanes must have an active consumer again (a standby's) within seconds, before it
is restarted. At the end each workflow's state and
history are compared with what each authority recorded (for a transfer also: every
message it put on the diplomatic channel reached its recipient, and the requester was
told the final state), and the record is checked: one entry for every message a workflow
applied and every notice an authority received, and the whole Merkle log consistent with
every checkpoint the hub signed during the run (treatyflow.chaos.record). The last line
reads ``requests=N faults=K lost=0 duplicated_effects=0 stuck=0 record_lost=0
record_duplicated=0 log_verified=yes``; any other figure, or a guarantee a probe found
broken, exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aio_pika
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from treatyflow import constants as c
from treatyflow import logs
from treatyflow.activities.delivery import Deliver
from treatyflow.chaos import faults
from treatyflow.chaos import record as chaos_record
from treatyflow.hub import request_state, state_of, transfer_state
from treatyflow.keys import RegistryFile
from treatyflow.local import stack
from treatyflow.local.replicas import replica_names
from treatyflow.process import finish
from treatyflow.record import record_time
from treatyflow.schemas.messages import NoticeMessage
from treatyflow.schemas.treaty import all_authorities
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import (
    TREATY,
    Behaviour,
    Context,
    Expectation,
    Scenario,
    execute,
    refuse,
    silent,
)
from treatyflow.simulation.simulator import Simulation
from treatyflow.simulation.transfer import (
    KZ_MFA,
    TRANSFER_TREATY,
    TransferExpectation,
    TransferScenario,
    transfer_authorities,
    transfer_scenarios,
)
from treatyflow.temporal import connect
from treatyflow.topology import read_passwords
from treatyflow.workflows.lifecycle import RequestState
from treatyflow.workflows.transfer import TransferState

PAIRS = (("KZ-GPO", "RU-MIA"), ("CN-MPS", "KZ-NSC"), ("RU-GPO", "KZ-GPO"),
         ("KG-MIA", "KZ-MIA"), ("UZ-MIA", "CN-MPS"), ("TJ-MIA", "RU-GPO"))
ORAL = {"urgent": True, "oral": True, "signed_by": None}
# The faults of one run, each once per entry, at random moments of the sending window.
FAULT_PLAN = ("kill_worker", "kill_gateway", "kill_rabbitmq", "crash_authority", "duplicate",
              "kill_temporal", "kill_worker", "restart_rabbitmq", "kill_gateway",
              "crash_authority", "duplicate", "poison", "unroutable",
              "temporal_outage_over_deadline", "kill_record_writers")
# How often the chaos stack's gateway signs a checkpoint of the record: many in one run.
CHECKPOINT_SECONDS = 5.0
# At least this many faults, one gateway kill and one worker kill among them, or it fails.
MIN_FAULTS = 12
# A killed gateway's lanes must have an active consumer (a standby) again within this.
TAKEOVER_S = 15.0


def out_of_order() -> Behaviour:
    """The execution report published before the receipt it follows: the hub refuses it
    (``not_allowed_now``), and once the error arrives the authority sends it again."""
    async def run(ctx: Context) -> None:
        report = {"extent": "full", "confidentiality": "confidential",
                  "summary": "Account statements attached."}
        early = await ctx.send("execution_report", report)
        await ctx.send("receipt", {})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        run_ = ctx.sim.runs[ctx.request_id]
        while loop.time() < deadline:
            if any(e.body.refused_message_id == early for e in run_.errors):
                await ctx.send("execution_report", report)
                return
            await asyncio.sleep(0.2)
    return run


def transfer_mix() -> list[tuple[TransferScenario, int]]:
    """(scenario, weight) of the transfers (KZ–UAE 2018), each through both foreign
    ministries (art. 5.1, 6.1): granted and carried to enforcement (art. 8.6, 10), refused
    on a mandatory ground (art. 9.1), a document of the art. 7.1 checklist missing then
    supplied, and a granted one whose every message (relays included) is published twice.
    The ministries relay a quarter of a treaty day after being asked."""
    by_name = {s.name: s for s in transfer_scenarios()}

    def like(name: str, new_name: str) -> TransferScenario:
        return replace(by_name[name], name=new_name, relay_after_days=0.25)

    return [
        (like("transfer: granted and transferred", "transfer granted"), 2),
        (like("transfer: refused, mandatory ground", "transfer refused"), 1),
        (like("transfer: document missing, then transferred",
              "transfer documents missing, then completed"), 1),
        (like("transfer: granted and transferred", "transfer duplicated"), 1),
    ]


def scenarios() -> list[tuple[Scenario | TransferScenario, int]]:
    """(scenario, weight): mostly executed requests; timers that must fire (deemed receipt,
    lapse); duplicates and out-of-order replies; about 5% transfers (``transfer_mix``)."""
    def on(pair: int, name: str, behaviour: Behaviour, expect: Expectation,
           **extra: Any) -> Scenario:
        requester, requested = PAIRS[pair % len(PAIRS)]
        return Scenario(name, requester, requested, {requested: behaviour}, expect, **extra)

    return [
        (on(0, "executed", execute(2), Expectation("executed", "full")), 60),
        (on(1, "refused", refuse("security"), Expectation("refused", "whole")), 6),
        (on(2, "withdrawn", silent(), Expectation("withdrawn"), withdraw_after_days=1), 6),
        (on(3, "lapsed", silent(), Expectation("lapsed"), content=ORAL), 6),
        (on(4, "receipt deemed", silent(), Expectation("received")), 6),
        (on(5, "duplicated", execute(2), Expectation("executed", "full")), 8),
        (on(0, "out of order", out_of_order(), Expectation("executed", "full")), 8),
        *transfer_mix(),
    ]


class ChaosSimulation(Simulation):
    """The simulation, recording every envelope sent and publishing the messages of
    ``duplicated`` requests twice."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.seconds_per_day)
        self.sent: list[tuple[str, Any]] = []
        self.duplicated: set[str] = set()

    async def publish(self, sender: str, envelope: Any, patience: float = 120) -> None:
        await super().publish(sender, envelope, patience)
        self.sent.append((sender, envelope))
        if envelope.request_id in self.duplicated:
            await super().publish(sender, envelope, patience)


@dataclass
class Injector:
    """Runs ``plan`` at random moments within ``window`` seconds; bounded by both."""

    settings: Settings
    sim: ChaosSimulation
    plan: tuple[str, ...]
    window: float
    rng: random.Random
    start_timers: Callable[[], Awaitable[None]]
    done: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=lambda: defaultdict(list))

    async def run(self) -> None:
        moments = sorted(self.rng.uniform(3, self.window) for _ in self.plan)
        kinds = list(self.plan)
        self.rng.shuffle(kinds)
        started = time.monotonic()
        for moment, kind in zip(moments, kinds, strict=True):
            await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
            at = time.monotonic() - started
            say(f"fault {sum(self.done.values()) + 1}: {kind} at {at:.0f} s")
            try:
                await getattr(self, kind)()
                self.done[kind] += 1
            except Exception as err:  # noqa: BLE001 - reported, fails the run
                self.failed.append(f"{kind}: {err}")
                say(f"fault {kind} FAILED: {err}")
                await faults.restore(self.settings)

    async def _kill_and_restore(self, name: str, pause: float) -> None:
        if faults.kill(self.settings, name) is None:
            raise RuntimeError(f"{name} was not running")
        await asyncio.sleep(pause)
        await faults.restore(self.settings)

    def _one_of(self, service: str) -> str:
        """The replicas in turn from a random one: two kills of two gateways take both,
        the lead among them."""
        count = self.settings.gateways if service == "gateway" else self.settings.workers
        names = replica_names(service, max(1, count))
        first = self.notes.setdefault(f"first_{service}", self.rng.randrange(len(names)))
        turn = sum(1 for name in self.notes["killed"] if name.startswith(service))
        return names[(first + turn) % len(names)]

    async def kill_worker(self) -> None:
        name = self._one_of("worker")
        self.notes["killed"].append(name)
        await self._kill_and_restore(name, self.rng.uniform(0, 2))

    async def kill_gateway(self) -> None:
        name = self._one_of("gateway")
        self.notes["killed"].append(name)
        if self.settings.gateways < 2:
            await self._kill_and_restore(name, self.rng.uniform(0, 2))
            return
        # Its lanes go to a standby at once, and the lead's queues (replays, the old
        # inbound queue) to the next lead: every one consumed again before the restart.
        lanes = {c.inbound_queue(a) for a in all_authorities()} | {c.QUEUE_REPLAY,
                                                                   c.QUEUE_INBOUND}
        if faults.kill(self.settings, name) is None:
            raise RuntimeError(f"{name} was not running")
        took = await faults.await_active(self.settings, lanes, TAKEOVER_S)
        self.notes["lanes_taken_over_s"].append(round(took, 1))
        await asyncio.sleep(self.rng.uniform(0, 2))
        await faults.restore(self.settings)

    async def kill_record_writers(self) -> None:
        writers = (*replica_names("gateway", max(1, self.settings.gateways)),
                   *replica_names("worker", max(1, self.settings.workers)))
        waited = await asyncio.to_thread(faults.kill_mid_write, self.settings, writers)
        self.notes["killed_mid_write_after_s"].append(round(waited, 2))
        await faults.restore(self.settings)

    def _consumed_queues(self) -> set[str]:
        # Each authority's lane into the hub (the gateway reads every one) and its inbox.
        return ({c.inbound_queue(a) for a in self.sim.authorities}
                | {c.inbox_queue(a) for a in self.sim.authorities})

    async def kill_rabbitmq(self) -> None:
        await self._kill_and_restore("rabbitmq", 1)
        took = await faults.await_consumers(self.settings, self._consumed_queues())
        self.notes["consumers_back_s"].append(round(took, 1))

    async def restart_rabbitmq(self) -> None:
        await asyncio.to_thread(faults.stop_rabbitmq_gracefully, self.settings)
        await faults.restore(self.settings)
        took = await faults.await_consumers(self.settings, self._consumed_queues())
        self.notes["consumers_back_s"].append(round(took, 1))

    async def kill_temporal(self) -> None:
        await self.start_timers()  # deemed receipt and lapse timers pending through it
        await asyncio.sleep(2)
        await self._kill_and_restore("temporal", 3)

    async def temporal_outage_over_deadline(self) -> None:
        self.notes["outage_over_deadline"].append(
            await faults.outage_over_deadline_probe(self.settings))

    async def crash_authority(self) -> None:
        # The first requested authority, or the ministry every Kazakh transfer message
        # passes, to receive a message: late in the run, one chosen alone may receive none.
        authorities = sorted({p[1] for p in PAIRS} | {KZ_MFA})
        before = self.sim.crashes
        self.sim.crash_next(*authorities)
        deadline = time.monotonic() + 30
        while self.sim.crashes == before and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.sim.crashes == before:
            self.sim.crash_next()
            raise RuntimeError(f"none of {', '.join(authorities)} received anything to crash on")

    async def duplicate(self) -> None:
        sender, envelope = self.rng.choice(self.sim.sent)
        await self.sim.publish(sender, envelope)
        self.notes["republished"].append(envelope.message_id)

    async def poison(self) -> None:
        result = await faults.poison_probe(self.settings)
        self.notes["poison"].append(f"{result.deliveries} deliveries, then {result.reason}")

    async def unroutable(self) -> None:
        self.notes["unroutable"].append(await faults.unroutable_probe(self.settings))


def say(text: str) -> None:
    print(f"[chaos] {text}", flush=True)


def chaos_settings(base: Settings, gateways: int = 1, workers: int = 1) -> Settings:
    state = base.state_dir / "chaos"
    if state.exists():
        stack.down(base.with_(state_dir=state))
        shutil.rmtree(state)
    # The record is the fresh state folder's own SQLite file, whatever the environment says.
    return stack.on_free_ports(base.with_(state_dir=state, log_level="warning",
                                          seconds_per_day=c.CHAOS_SECONDS_PER_DAY,
                                          record_url="",
                                          record_checkpoint_seconds=CHECKPOINT_SECONDS,
                                          gateways=gateways, workers=workers))


def satisfied(state: RequestState, expect: Expectation) -> bool:
    if state.status.value != expect.status:
        return False
    if expect.status == "received":  # deemed: the timer fired, no receipt was sent
        return any(e.event == "receipt_deemed" for e in state.timeline)
    return expect.outcome is None or state.outcome == expect.outcome


def transfer_satisfied(state: TransferState, expect: TransferExpectation) -> bool:
    """The prescribed final status, no deadline overdue, and every message put on the
    diplomatic channel delivered to its recipient (art. 5.1: none left with a ministry)."""
    return (state.status.value == expect.status and state.overdue == expect.overdue
            and all(d.delivered_at is not None for d in state.dispatches))


def transfer_told(sim: ChaosSimulation, rid: str, state: TransferState) -> bool:
    """The requester's own record holds a notice of the final status."""
    return any(isinstance(m, NoticeMessage) and m.request_id == rid
               and m.body.status == state.status.value
               for m in sim.inbox[state.requesting])


async def delivered_notices(client: Client, wf_id: str) -> list[tuple[str, str]]:
    """(message id, recipient) of every notice the workflow's history records as delivered
    (a completed ``deliver`` activity)."""
    scheduled: dict[int, tuple[str, str]] = {}
    out = []
    async for event in client.get_workflow_handle(wf_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "deliver":
                [deliver] = await client.data_converter.decode(attrs.input.payloads, [Deliver])
                scheduled[event.event_id] = (deliver.message.message_id,
                                             deliver.message.recipient)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id)
            if done:
                out.append(done)
    return out


async def dead_letters(settings: Settings) -> Counter[str]:
    """What ``hub.dead-letter`` holds at the end, by problem (the gateway's refusals) or
    ``x-death`` reason (the broker's: ``delivery_limit`` for a message requeued too often)."""
    password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    counts: Counter[str] = Counter()
    connection = await aio_pika.connect(settings.amqp_url(c.HUB_USER, password))
    async with connection:
        await faults.dead_letter_lock(connection, 30)  # the gateway's gauges read it too
        channel = await connection.channel()
        queue = await channel.get_queue(c.QUEUE_DEAD_LETTER, ensure=False)
        while (got := await queue.get(fail=False, no_ack=True)) is not None:
            headers = got.headers or {}
            reason = faults.death_reason(headers)
            counts[str(reason or headers.get(c.HEADER_PROBLEM) or "unknown")] += 1
    return counts


async def _state_of(client: Client, rid: str, transfer: bool
                    ) -> RequestState | TransferState | None:
    try:
        if transfer:
            return await transfer_state(client, TRANSFER_TREATY, rid)
        return await request_state(client, TREATY, rid)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return None


async def verify(client: Client, sim: ChaosSimulation,
                 expected: dict[str, Expectation | TransferExpectation],
                 grace: float) -> dict[str, Any]:
    """Both sides compared: each workflow's state and history, each authority's record."""
    loop = asyncio.get_running_loop()
    states: dict[str, RequestState | TransferState | None] = {}
    pending = set(expected)
    deadline = loop.time() + grace
    while pending and loop.time() < deadline:
        for rid in sorted(pending):
            expect = expected[rid]
            state = states[rid] = await _state_of(client, rid,
                                                  isinstance(expect, TransferExpectation))
            if isinstance(state, TransferState) and isinstance(expect, TransferExpectation):
                if transfer_satisfied(state, expect) and transfer_told(sim, rid, state):
                    pending.discard(rid)
            elif (isinstance(state, RequestState) and isinstance(expect, Expectation)
                  and satisfied(state, expect)):
                pending.discard(rid)
        if pending:
            say(f"waiting for {len(pending)} requests to reach their final state")
            await asyncio.sleep(3)
    missing = [rid for rid in pending if states.get(rid) is None]
    stuck = [rid for rid in pending if rid not in missing]
    # A transfer that reached its state but whose requester was never told is a lost notice.
    untold = [rid for rid in stuck if isinstance(states[rid], TransferState)
              and transfer_satisfied(states[rid], expected[rid])]  # type: ignore[arg-type]
    stuck = [rid for rid in stuck if rid not in untold]
    duplicated: list[str] = []
    for rid, state in states.items():
        if state is None:
            continue
        applied = Counter(state.applied)
        duplicated += [f"{rid}: {m} applied {n} times" for m, n in applied.items() if n > 1]
        entries = Counter((e.event, e.message_id) for e in state.timeline if e.message_id)
        duplicated += [f"{rid}: {e} in the timeline {n} times" for e, n in entries.items() if n > 1]
    # Notices the hub recorded as delivered that the recipient never handled.
    undelivered: list[tuple[str, str]] = []
    for rid, state in states.items():
        if state is not None:
            treaty = TRANSFER_TREATY if isinstance(state, TransferState) else TREATY
            undelivered += await delivered_notices(client, c.workflow_id(treaty, rid))
    end = loop.time() + 30
    while True:
        undelivered = [(m, r) for m, r in undelivered if m not in sim.handled[r]]
        if not undelivered or loop.time() > end:
            break
        await asyncio.sleep(1)
    # The authorities' side: one effect per notice (same event about the same message,
    # under two message ids, is a second effect) and one behaviour per request.
    for authority, received in sim.inbox.items():
        effects: dict[tuple[str, str, str | None, str], set[str]] = defaultdict(set)
        for m in received:
            if isinstance(m, NoticeMessage):
                key = (m.request_id, m.body.event, m.body.about_message_id,
                       json.dumps(m.body.detail, sort_keys=True, default=str))
                effects[key].add(m.message_id)
        duplicated += [f"{authority}: {k[:3]} under {len(v)} message ids"
                       for k, v in effects.items() if len(v) > 1]
        counts = Counter(m.message_id for m in received)
        duplicated += [f"{authority}: {m} handled {n} times" for m, n in counts.items() if n > 1]
    return {"lost": missing + [f"{m} → {r}" for m, r in undelivered]
            + [f"{rid}: the requester was not told" for rid in untold],
            "stuck": [_stuck(rid, states[rid]) for rid in stuck], "duplicated": duplicated}


def _stuck(rid: str, state: RequestState | TransferState | None) -> str:
    if isinstance(state, TransferState):
        held = [f"{d.kind} with {d.hops[-1].to}" for d in state.dispatches
                if d.delivered_at is None]
        return (f"{rid}: {state.status.value}" + (" + overdue" if state.overdue else "")
                + (f"; on the channel: {', '.join(held)}" if held else ""))
    return f"{rid}: {state.status.value if state else None}"


async def owed_entries(client: Client, sim: ChaosSimulation) -> list[chaos_record.Owed]:
    """The entries the record owes: every message sent that its workflow applied, every
    notice an authority received."""
    applied: dict[tuple[str, str], set[str]] = {}
    owed = []
    for _, envelope in sim.sent:
        key = (envelope.treaty_id, envelope.request_id)
        if key not in applied:
            try:
                applied[key] = set((await state_of(client, *key)).applied)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                applied[key] = set()
        if envelope.message_id in applied[key]:
            owed.append(chaos_record.accepted(envelope))
    return owed + [chaos_record.delivered(m) for received in sim.inbox.values()
                   for m in received if isinstance(m, NoticeMessage)]


async def run(args: argparse.Namespace) -> int:
    settings = chaos_settings(Settings.from_env(), args.gateways, args.workers)
    # The authorities' reconnect warnings go to a file; the terminal gets the story.
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    logs.configure("critical", file=settings.logs_dir / "chaos.log", file_level="warning")
    rng = random.Random(args.seed)
    since = record_time(datetime.now(UTC))
    say(f"fresh stack under {settings.state_dir} (seed {args.seed}, "
        f"{settings.seconds_per_day:g} s per treaty day, {settings.gateways} gateway(s), "
        f"{settings.workers} worker(s))")
    await asyncio.to_thread(stack.up, settings)
    client = await connect(settings)
    sim = ChaosSimulation(settings)
    mix = scenarios()
    transfers = [s for s, _ in mix if isinstance(s, TransferScenario)]
    await sim.connect({a for pair in PAIRS for a in pair} | transfer_authorities(transfers))
    expected: dict[str, Expectation | TransferExpectation] = {}
    tag = uuid.uuid4().hex[:6].upper()
    numbers = iter(range(10**6))

    async def start(scenario: Scenario | TransferScenario) -> None:
        rid = f"{scenario.requester}-CHAOS-{tag}-{next(numbers):05d}"
        expected[rid] = scenario.expect
        if scenario.name in ("duplicated", "transfer duplicated"):
            sim.duplicated.add(rid)
        if isinstance(scenario, TransferScenario):
            await sim.transfers.start(scenario, rid)
        else:
            await sim.start(scenario, rid)

    async def start_timers() -> None:
        for scenario, _ in mix:
            if isinstance(scenario, Scenario) and scenario.name in ("lapsed", "receipt deemed"):
                for _ in range(3):
                    await start(scenario)

    window = args.requests / args.rate
    injector = Injector(settings, sim, FAULT_PLAN if args.faults else (), window, rng,
                        start_timers)
    injecting = asyncio.create_task(injector.run())
    started = time.monotonic()
    sending = []
    for i in range(args.requests):
        scenario = rng.choices([s for s, _ in mix], [w for _, w in mix])[0]
        sending.append(asyncio.create_task(start(scenario)))
        await asyncio.sleep(max(0.0, started + (i + 1) / args.rate - time.monotonic()))
    await asyncio.gather(*sending)
    await injecting
    say(f"{len(expected)} requests sent in {time.monotonic() - started:.0f} s; "
        f"{sum(injector.done.values())} faults injected")
    await faults.restore(settings)  # every component running for the check
    report = await verify(client, sim, expected, grace=args.grace)
    owed = await owed_entries(client, sim)
    await sim.close()
    found = await chaos_record.check(settings, owed, RegistryFile(settings.secrets_dir), since)
    dlq = await dead_letters(settings)
    figures = {
        "gateways": settings.gateways, "workers": settings.workers,
        "faults": dict(injector.done), "failed_faults": injector.failed,
        **{k: v for k, v in injector.notes.items()
           if k != "republished" and not k.startswith("first_")},
        "republished": len(injector.notes["republished"]),
        "authority_crashes": sim.crashes, "redelivered_to_authorities": sim.redelivered,
        "dropped_by_clients": sim.dropped + sim.dropped_now,
        "dead_letters": dict(dlq),
        "scenarios": dict(Counter([s.scenario.name for s in sim.runs.values()]
                                  + [t.scenario.name for t in sim.transfers.runs.values()])),
        "transfer_messages_refused": [f"{e.request_id}: {e.body.problem}" for t in
                                      sim.transfers.runs.values() for e in t.errors][:10],
        "lost": report["lost"][:10], "stuck": report["stuck"][:10],
        "duplicated_effects": report["duplicated"][:10],
        "record": {"entries": found.entries, "owed": len(owed),
                   "checkpoints": found.checkpoints, "after_last_checkpoint": found.uncovered,
                   "lost": found.tally.lost[:10], "duplicated": found.tally.duplicated[:10],
                   "log": found.log[:10]},
    }
    print(json.dumps(figures, indent=1, default=str), flush=True)
    if not args.keep:
        await asyncio.to_thread(stack.down, settings)
    lost, dup, stuck = len(report["lost"]), len(report["duplicated"]), len(report["stuck"])
    faults_done = sum(injector.done.values())
    record_lost, record_dup = len(found.tally.lost), len(found.tally.duplicated)
    print(f"requests={len(expected)} faults={faults_done} lost={lost} "
          f"duplicated_effects={dup} stuck={stuck} record_lost={record_lost} "
          f"record_duplicated={record_dup} log_verified={'yes' if found.verified else 'no'}",
          flush=True)
    ok = (lost == dup == stuck == record_lost == record_dup == 0 and found.verified
          and not injector.failed
          and len(expected) >= args.requests
          and (not args.faults or (faults_done >= MIN_FAULTS and injector.done["kill_gateway"]
                                   and injector.done["kill_worker"])))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m treatyflow.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0, help="requests started per second")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--grace", type=float, default=180,
                        help="seconds the requests get to reach their final state")
    parser.add_argument("--no-faults", dest="faults", action="store_false")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--gateways", type=int, default=1, help="gateways side by side")
    parser.add_argument("--workers", type=int, default=1, help="workers side by side")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    finish(main())

"""The scale phases of ``make bench`` (issue 4): what one machine carries.

- open requests: N requests published through RabbitMQ and the gateway, each delivered and
  then waiting for its receipt (real treaty time: nothing falls due); then the resident
  memory of the worker, the gateway, Temporal and RabbitMQ, the database's size, and what
  the idle stack costs with them open;
- a deadline storm: N more requests whose art. 6.1 execution deadline (30 days from
  receipt) falls due at one instant; the time until every "overdue" notice is in both
  parties' inboxes; and first its floor, N bare workflows whose timers fire at one
  instant, each then publishing a signed notice to both parties (``floor_storm.py``);
- a registry of many authorities (``registry_phase``): a second stack whose broker,
  key registry and gateway serve that many authorities (Europol's SIENA connects about
  3,000), its start-up time and its throughput.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from treatyflow import constants as c
from treatyflow.agency.signing import SigningKey, sign
from treatyflow.bench.floor_contract import FloorStormStart
from treatyflow.bench.floor_storm import FloorStorm
from treatyflow.bench.harness import (
    Authorities,
    CpuMeter,
    EventCount,
    bounded,
    rss_mb,
    treatyflow_phase,
)
from treatyflow.keys import signed_directory, signing_key
from treatyflow.local import stack
from treatyflow.profile_store import ProfileStore, in_memory
from treatyflow.schemas.messages import INBOUND, ReceiptMessage, RequestMessage, message_digest
from treatyflow.schemas.treaty import TreatyProfile, load_profile, use_folder
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import TREATY, request_content
from treatyflow.temporal import connect
from treatyflow.workflows import lifecycle
from treatyflow.workflows.contract import INPUT_VERSION, RequestInput
from treatyflow.workflows.request import RequestForAssistance, search_attributes
from treatyflow.workflows.shell import typed

Say = Callable[[str], None]
# The storm floor's parties: authorities the bench's lifecycles leave alone, so that their
# inboxes hold only the floor's notices.
FLOOR_PAIRS = (("KZ-SPS", "CN-SPP"), ("KG-GPO", "UZ-GPO"), ("KZ-ACA", "KZ-SRC"))



def storm_request_id(requester: str, run: str, i: int) -> str:
    """The id of the storm's ``i``-th request of ``run`` (in its requester's namespace)."""
    return f"{requester}-STORM-{run}-{i:06d}"

def database_mb(settings: Settings) -> float:
    """The Temporal dev server's SQLite file with its write-ahead log, in MiB."""
    db = stack.Paths(settings.state_dir).temporal_db
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return round(sum(f.stat().st_size for f in files if f.exists()) / 2**20, 1)


def memory(settings: Settings) -> dict[str, float | None]:
    """Resident memory (MiB) of each long-running part of the stack."""
    return {name: rss_mb(settings, name) for name in ("worker", "gateway", "temporal",
                                                      "rabbitmq")}


async def open_phase(authorities: Authorities, n: int, concurrency: int,
                     say: Say) -> dict[str, Any]:
    """``n`` requests sent and delivered, left waiting for their receipt."""
    done = 0
    started = time.perf_counter()

    async def one(_: int) -> None:
        nonlocal done
        await authorities.open_request()
        done += 1
        if done % 5000 == 0:
            say(f"{done} requests open ({done / (time.perf_counter() - started):.0f}/s)")

    seconds = await bounded(n, concurrency, one)
    return {"open_requests": n, "open_seconds": round(seconds, 1),
            "open_per_s": round(n / seconds, 1)}


async def idle_cost(settings: Settings, seconds: float = 20.0) -> dict[str, float]:
    """Cores each component uses while the open requests just wait."""
    with CpuMeter(settings) as cpu:
        await asyncio.sleep(seconds)
    return cpu.cores


def storm_input(profile_id: str, run: str, i: int, pair: tuple[str, str],
                due: datetime, signer: Callable[[str], SigningKey], directory: str,
                store: ProfileStore | None = None) -> tuple[str, RequestInput]:
    """A request received 30 treaty days before ``due`` and not executed since: its state
    as a continue-as-new would carry it, built by the lifecycle's own rules, with the
    reminders already sent so that only the deadline remains. Its messages are signed by
    their senders' keys (``signer``) and it holds the key directory, as a request the hub
    opened does: the hub signs notices only for such a request. Its profile version and
    directory are by reference, published in ``store`` (the stack's) as the hub does."""
    ref, profile = (store or in_memory()).profile(profile_id, TreatyProfile)
    requester, requested = pair
    rid = storm_request_id(requester, run, i)
    received = due - timedelta(days=profile.deadlines.execution_days)

    def envelope(kind: str, sender: str, recipient: str, body: dict[str, Any]) -> Any:
        return INBOUND.validate_python({
            "schema_version": "2", "message_id": str(uuid.uuid4()), "kind": kind,
            "request_id": rid, "treaty_id": profile_id, "sender": sender,
            "recipient": recipient, "sent_at": received, "body": body})

    request = envelope("request", requester, requested, request_content())
    assert isinstance(request, RequestMessage)
    opened = lifecycle.open_request(profile, request, received)
    receipt = envelope("receipt", requested, requester, {})
    assert isinstance(receipt, ReceiptMessage)
    state = lifecycle.apply(opened.state, profile, receipt, received).state
    state.reminders_done = list(profile.deadlines.reminder_days_before)
    assert state.deadline == due, (state.deadline, due)
    signed = {m.message_id: sign(m, signer(m.sender)) for m in (request, receipt)}
    return rid, RequestInput(profile_ref=ref, version=INPUT_VERSION, state=state,
                             digests={m.message_id: message_digest(m) for m in (request, receipt)},
                             signed=signed,
                             directory_digest=(store or in_memory()).directory(directory))


async def storm_phase(client: Client, authorities: Authorities, n: int, concurrency: int,
                      say: Say, settings: Settings, treaty: str = TREATY,
                      lead: float | None = None) -> dict[str, Any]:
    """``n`` execution deadlines that fall due at one instant, ``lead`` seconds from now;
    how long until every one has been noticed and both parties hold its "overdue"
    notice."""
    run = uuid.uuid4().hex[:6].upper()
    due = storm_instant(n, lead)
    pairs = authorities.pairs
    arrived = authorities.count_events("overdue", marker=f"-STORM-{run}-")

    directory = signed_directory(settings.secrets_dir)
    signer = functools.cache(partial(signing_key, settings.secrets_dir))
    store = ProfileStore(settings.published_dir)
    profile = store.profile(treaty, TreatyProfile)[1]

    async def seed(i: int) -> None:
        rid, start = storm_input(treaty, run, i, pairs[i % len(pairs)], due, signer, directory,
                                 store)
        assert start.state is not None
        await client.start_workflow(
            RequestForAssistance.run, start, id=c.workflow_id(treaty, rid),
            task_queue=c.TASK_QUEUE, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"bench storm {rid}",
            # As the hub starts a request: with its search attributes, so that only what
            # the deadline changes is upserted when it falls due.
            search_attributes=typed(search_attributes(profile, start.state)))

    figures = await fall_due(n, concurrency, seed, due, arrived, say, settings)
    return {"storm_run": run, **{f"storm_{k}": v for k, v in figures.items()}}


async def floor_storm_phase(client: Client, parties: Authorities, task_queue: str, n: int,
                            concurrency: int, say: Say, settings: Settings,
                            treaty: str = TREATY, lead: float | None = None,
                            ) -> dict[str, Any]:
    """The storm's floor (``floor_storm.py``): ``n`` bare workflows whose timer fires at
    one instant, each then publishing a signed notice to both of its parties, timed as
    the storm is."""
    run = uuid.uuid4().hex[:6].upper()
    due = storm_instant(n, lead)
    pairs = parties.pairs
    arrived = parties.count_events("overdue", marker=f"-FLOOR-{run}-")

    async def seed(i: int) -> None:
        requesting, requested = pairs[i % len(pairs)]
        rid = f"{requesting}-FLOOR-{run}-{i:06d}"
        await client.start_workflow(
            FloorStorm.run, FloorStormStart(request_id=rid, treaty_id=treaty,
                                            requesting=requesting, requested=requested,
                                            due=due),
            id=f"floor-storm-{rid}", task_queue=task_queue)

    figures = await fall_due(n, concurrency, seed, due, arrived, say, settings,
                             extra=(f"floor-{task_queue}",))
    return {"storm_floor_run": run, **{f"storm_floor_{k}": v for k, v in figures.items()}}


def storm_instant(n: int, lead: float | None) -> datetime:
    """When a storm of ``n`` falls due: ``lead`` seconds from now, by default time enough
    to seed them (about a hundred starts a second)."""
    lead = 30 + n / 50 if lead is None else lead
    return (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)


async def fall_due(n: int, concurrency: int, seed: Callable[[int], Awaitable[None]],
                   due: datetime, arrived: EventCount, say: Say, settings: Settings,
                   extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Seed ``n`` deadlines due at ``due``, then time from that instant until both parties
    of each hold its notice (``arrived`` counts them), with the cores each part used."""
    seeded_s = await bounded(n, concurrency, seed)
    left = (due - datetime.now(UTC)).total_seconds()
    say(f"{n} deadlines seeded in {seeded_s:.0f} s; they fall due in {left:.0f} s")
    await asyncio.sleep(max(0.0, left))
    started = time.perf_counter()
    with CpuMeter(settings, extra=extra) as cpu:
        first = await arrived.wait_for(1)
        await arrived.wait_for(2 * n, timeout=max(600.0, n / 5))
    seconds = time.perf_counter() - started
    return {"deadlines": n, "seeded_s": round(seeded_s, 1),
            "seeded_late_s": round(max(0.0, -left), 1),
            "first_notice_s": round(first - started, 2), "seconds": round(seconds, 1),
            "deadlines_per_s": round(n / seconds, 1), "cpu_cores": cpu.cores,
            # What each part costs a deadline, however busy the machine was.
            "cpu_ms_per_deadline": {part: round(1000 * used * seconds / n, 1)
                                    for part, used in cpu.cores.items() if used},
            "rss_mb": {name: rss_mb(settings, name) for name in ("worker", *extra)}}


REGISTRY_TREATY = "bench-registry"


def write_registry(folder: Path, authorities: int, treaty_id: str = REGISTRY_TREATY,
                   base: str = TREATY) -> list[tuple[str, str]]:
    """A profile carrying ``authorities`` competent authorities spread over the parties
    of ``base`` (its rules unchanged), written into ``folder``; six pairs across parties
    for the throughput run."""
    profile = load_profile(base)
    parties = list(profile.parties)
    made = [{"id": f"{parties[i % len(parties)]}-B{i:05d}", "state": parties[i % len(parties)],
             "name": f"Bench authority {i} of {parties[i % len(parties)]}",
             "source": "generated by make bench"} for i in range(authorities)]
    copy = profile.model_copy(update={"id": treaty_id, "authorities": tuple(
        type(profile.authorities[0]).model_validate(a) for a in made)})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{treaty_id}.json").write_text(copy.model_dump_json(indent=1))
    ids = [a["id"] for a in made]
    step = len(ids) // 7
    return [(ids[k * step], ids[k * step + 1 + (k % 5)]) for k in range(6)]


async def input_bytes(client: Client, workflow_id: str) -> dict[str, int]:
    """The start input of one request's workflow as Temporal holds it: its JSON as the
    pydantic converter wrote it, and the payload stored (compressed, encrypted)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    stored = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    codec = client.data_converter.payload_codec
    plain = (await codec.decode([stored]))[0] if codec is not None else stored
    return {"json": len(plain.data), "stored": stored.ByteSize()}


def registry_phase(settings: Settings, n: int, lifecycles: int, concurrency: int,
                   say: Say, rounds: int = 1) -> dict[str, Any]:
    """A fresh stack whose registry holds ``n`` more authorities: start-up time, memory
    after as many lifecycles as the base stack ran (``rounds`` of ``lifecycles``),
    throughput, and the size of a request's workflow input (``settings`` name a stack
    that is down; it is left down)."""
    folder = settings.state_dir / "treaties"
    pairs = write_registry(folder, n)
    settings = settings.with_(treaties_dir=folder)
    started = time.perf_counter()
    stack.up(settings)
    startup = time.perf_counter() - started
    say(f"stack with {n} more authorities up in {startup:.1f} s")

    async def throughput() -> tuple[float, dict[str, int]]:
        async with Authorities(settings, pairs=pairs, treaty=REGISTRY_TREATY) as authorities:
            await treatyflow_phase(authorities, max(5, lifecycles // 20), concurrency)
            phases = [await treatyflow_phase(authorities, lifecycles, concurrency)
                      for _ in range(rounds)]
            first = authorities.request_id(0)
        size = await input_bytes(await connect(settings), c.workflow_id(REGISTRY_TREATY, first))
        return sum(p.lifecycles for p in phases) / sum(p.seconds for p in phases), size

    try:
        per_s, size = asyncio.run(throughput())
        figures = {"registry_authorities": n, "registry_stack_startup_s": round(startup, 1),
                   "registry_lifecycles_per_s": round(per_s, 2),
                   "registry_rss_mb": memory(settings),
                   "registry_input_bytes": size["json"],
                   "registry_input_stored_bytes": size["stored"]}
        say(f"with {n} more authorities: {per_s:.1f} lifecycles/s; RSS "
            f"{figures['registry_rss_mb']} MiB; a request's workflow input {size['json']} "
            f"bytes of JSON ({size['stored']} stored)")
    finally:
        stack.down(settings)
        use_folder(None)
    return figures

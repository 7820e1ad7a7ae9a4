"""``make bench``: treatyflow against its floor, measured in one run on one machine.

    python -m treatyflow.bench.run [--lifecycles N] [--concurrency C] [--out DIR]

Starts a fresh local stack (its own state folder and free ports, real treaty time so no
deadline fires), measures the floor and treatyflow on the same Temporal server, then
latency at fixed offered loads; writes ``DIR/latest.json`` and a chart, and prints one JSON
line. Figures, never assertions: it exits non-zero only if a phase could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from treatyflow import constants as c
from treatyflow import logs
from treatyflow.bench import scale
from treatyflow.bench.harness import (
    MESSAGES_PER_LIFECYCLE,
    Authorities,
    CpuMeter,
    Phase,
    floor_phase,
    floor_worker,
    offered_phase,
    treatyflow_phase,
)
from treatyflow.local import stack
from treatyflow.process import finish
from treatyflow.settings import SECONDS_PER_DAY, Settings
from treatyflow.temporal import connect

LOADS = (0.25, 0.5, 0.75, 1.0)  # offered load, as a share of the measured maximum
FLOOR_QUEUE = "bench-floor"


def bench_settings(base: Settings, name: str = "bench") -> Settings:
    """A fresh stack for this run: its own state folder and free ports, real time."""
    state = base.state_dir / name
    if state.exists():
        stack.down(base.with_(state_dir=state))
        shutil.rmtree(state)
    return stack.on_free_ports(base.with_(state_dir=state, seconds_per_day=SECONDS_PER_DAY,
                                          log_level="warning"))


async def measure(settings: Settings, lifecycles: int, concurrency: int,
                  say: Callable[[str], None] = print, *, loads: tuple[float, ...] = LOADS,
                  seconds_per_load: float = 15.0, least_per_load: int = 20,
                  open_requests: int = 0, storm: int = 0, rounds: int = 3) -> dict[str, Any]:
    """Every phase against a running stack; the figures as one dict. ``loads`` are shares
    of the measured maximum and must include 0.5 (the latency figures); then, if asked,
    ``open_requests`` left open and a ``storm`` of deadlines falling due together, after
    its floor. ``rounds`` 0 skips the throughput and latency phases."""
    def note(text: str) -> None:
        say(f"[bench] {text}")

    client = await connect(settings)
    figures: dict[str, Any] = {}
    at_scale: dict[str, Any] = {"rss_mb_50k_open": None}
    async with floor_worker(settings, FLOOR_QUEUE), Authorities(settings) as authorities:
        if rounds:
            figures = await throughput(client, authorities, settings, lifecycles, concurrency,
                                       note, loads=loads, seconds_per_load=seconds_per_load,
                                       least_per_load=least_per_load, rounds=rounds)
        if open_requests:
            at_scale |= await scale.open_phase(authorities, open_requests, 4 * concurrency,
                                               note)
            at_scale |= {"rss_mb_open": scale.memory(settings),
                         "database_mb_open": scale.database_mb(settings),
                         "idle_cores_open": await scale.idle_cost(settings)}
            at_scale["rss_mb_50k_open"] = at_scale["rss_mb_open"]["worker"]
            note(f"{open_requests} requests open: RSS {at_scale['rss_mb_open']} MiB, "
                 f"database {at_scale['database_mb_open']} MiB, idle cores "
                 f"{_cores(at_scale['idle_cores_open'])}")
        if storm:
            at_scale |= await storms(client, authorities, settings, storm, 4 * concurrency,
                                     note)
    phases = figures.pop("phases", [])
    return {**figures, **at_scale, "lifecycles": lifecycles, "concurrency": concurrency,
            "messages_per_lifecycle": MESSAGES_PER_LIFECYCLE, "phases": phases}


async def throughput(client: Client, authorities: Authorities, settings: Settings,
                     lifecycles: int, concurrency: int, note: Callable[[str], None], *,
                     loads: tuple[float, ...], seconds_per_load: float, least_per_load: int,
                     rounds: int) -> dict[str, Any]:
    """The floor's and treatyflow's throughput in rounds taken in turn, then latency at
    fixed offered loads."""
    warm = max(5, lifecycles // 20)
    floors: list[Phase] = []
    ourses: list[Phase] = []
    await floor_phase(client, FLOOR_QUEUE, warm, concurrency)
    await treatyflow_phase(authorities, warm, concurrency)
    # Rounds taken in turn, so that a slow spell of the machine or of the server's
    # database falls on both: the figures are the sums over the rounds.
    for _ in range(rounds):
        with CpuMeter(settings, extra=(f"floor-{FLOOR_QUEUE}",)) as cpu:
            floors.append(await floor_phase(client, FLOOR_QUEUE, lifecycles, concurrency))
        floors[-1].cpu_cores = cpu.cores
        with CpuMeter(settings, extra=(f"floor-{FLOOR_QUEUE}",)) as cpu:
            ourses.append(await treatyflow_phase(authorities, lifecycles, concurrency))
        ourses[-1].cpu_cores = cpu.cores
        note(f"round {len(floors)}: floor {floors[-1].lifecycles_per_s:.1f}, treatyflow "
             f"{ourses[-1].lifecycles_per_s:.1f} lifecycles/s")
    floor, ours = combined("floor", floors), combined("treatyflow", ourses)
    note(f"floor: {floor.lifecycles_per_s:.1f} lifecycles/s; cores used "
         f"{_cores(floor.cpu_cores)}")
    note(f"treatyflow: {ours.lifecycles_per_s:.1f} lifecycles/s; cores used "
         f"{_cores(ours.cpu_cores)}")
    memory = scale.memory(settings)
    size = await scale.input_bytes(client, c.workflow_id(authorities.treaty,
                                                          authorities.request_id(0)))
    offered: list[Phase] = []
    for share in loads:
        rate = share * ours.lifecycles_per_s
        n = max(least_per_load, round(rate * seconds_per_load))
        offered.append(await offered_phase(authorities, rate, n))
        note(f"offered {rate:.1f}/s: achieved {offered[-1].lifecycles_per_s:.1f}/s, "
             f"p99 {offered[-1].percentile(99):.0f} ms")
    half = offered[loads.index(0.5)]
    return {
        "ratio_vs_floor": round(ours.lifecycles_per_s / floor.lifecycles_per_s, 3),
        "ratio_by_round": [round(o.lifecycles_per_s / f.lifecycles_per_s, 3)
                           for f, o in zip(floors, ourses, strict=True)],
        "rounds": rounds,
        "cpu_ms_per_lifecycle_floor": _per_lifecycle(floor),
        "cpu_ms_per_lifecycle_treatyflow": _per_lifecycle(ours),
        "lifecycles_per_s": round(ours.lifecycles_per_s, 2),
        "messages_per_s": round(ours.messages_per_s, 2),
        "floor_lifecycles_per_s": round(floor.lifecycles_per_s, 2),
        "floor_messages_per_s": round(floor.messages_per_s, 2),
        "p50_ms": round(half.percentile(50) or 0, 1),
        "p95_ms": round(half.percentile(95) or 0, 1),
        "p99_ms": round(half.percentile(99) or 0, 1),
        "latency_at_per_s": round(half.offered_per_s or 0, 2),
        "cpu_cores_floor": floor.cpu_cores,
        "cpu_cores_treatyflow": ours.cpu_cores,
        "rss_mb_worker": memory["worker"],
        "rss_mb_gateway": memory["gateway"],
        "input_bytes": size["json"],
        "input_stored_bytes": size["stored"],
        "phases": [p.summary() for p in (floor, ours, *offered)],
    }


async def storms(client: Client, authorities: Authorities, settings: Settings, n: int,
                 concurrency: int, note: Callable[[str], None]) -> dict[str, Any]:
    """The storm's floor, then treatyflow's storm of as many deadlines, one after the other
    so that their timers never overlap; the ratio of their deadlines per second."""
    async with Authorities(settings, pairs=scale.FLOOR_PAIRS,
                           acknowledge_retrievals=False) as parties:
        figures = await scale.floor_storm_phase(client, parties, FLOOR_QUEUE, n, concurrency,
                                                note, settings)
    note(f"storm floor of {n} deadlines: every notice delivered in "
         f"{figures['storm_floor_seconds']} s ({figures['storm_floor_deadlines_per_s']}/s); "
         f"CPU ms per deadline {_cores(figures['storm_floor_cpu_ms_per_deadline'], 1)}")
    figures |= await scale.storm_phase(client, authorities, n, concurrency, note, settings)
    figures["storm_ratio_vs_floor"] = round(
        figures["storm_deadlines_per_s"] / figures["storm_floor_deadlines_per_s"], 3)
    note(f"storm of {n} deadlines: every overdue notice delivered in "
         f"{figures['storm_seconds']} s ({figures['storm_deadlines_per_s']}/s, "
         f"{figures['storm_ratio_vs_floor']} of the floor); CPU ms per deadline "
         f"{_cores(figures['storm_cpu_ms_per_deadline'], 1)}")
    return figures


def combined(name: str, phases: list[Phase]) -> Phase:
    """Several rounds of one phase as one: lifecycles and seconds summed, cores and
    latencies over all of them."""
    seconds = sum(p.seconds for p in phases)
    cores: dict[str, float] = {}
    for p in phases:
        for part, used in p.cpu_cores.items():
            cores[part] = cores.get(part, 0.0) + used * p.seconds / seconds
    return Phase(name, sum(p.lifecycles for p in phases), seconds,
                 [ms for p in phases for ms in p.latencies_ms],
                 cpu_cores={part: round(used, 2) for part, used in cores.items()})


def _per_lifecycle(phase: Phase) -> dict[str, float]:
    """CPU milliseconds per lifecycle by component: what each part costs, whatever the
    machine's load."""
    return {part: round(1000 * used / phase.lifecycles_per_s, 1)
            for part, used in phase.cpu_cores.items() if used}


def _cores(cores: dict[str, float], digits: int = 2) -> str:
    return ", ".join(f"{name} {used:.{digits}f}" for name, used in cores.items()
                     if used >= 10 ** -digits)


def chart(figures: dict[str, Any], path: Path) -> Path | None:
    """Throughput and p50/p99 latency against offered load (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    loads = [p for p in figures["phases"] if p.get("offered_per_s")]
    offered = [p["offered_per_s"] for p in loads]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(offered, [p["lifecycles_per_s"] for p in loads], "o-", label="achieved")
    left.plot(offered, offered, ":", color="grey", label="offered")
    left.axhline(figures["floor_lifecycles_per_s"], color="red", ls="--", label="floor max")
    left.set(xlabel="offered lifecycles/s", ylabel="lifecycles/s", title="Throughput")
    left.legend()
    for p, style in (("p50_ms", "o-"), ("p99_ms", "s-")):
        right.plot(offered, [x[p] for x in loads], style, label=p.removesuffix("_ms"))
    right.set(xlabel="offered lifecycles/s", ylabel="ms",
              title="Publish → notice in the recipient's inbox")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lifecycles", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--rounds", type=int, default=3,
                        help="floor and treatyflow throughput runs, taken in turn "
                             "(0: skip them and the latency phases)")
    parser.add_argument("--open", type=int, default=50_000,
                        help="requests left open for the scale figures (0: skip)")
    parser.add_argument("--storm", type=int, default=10_000,
                        help="deadlines falling due together (0: skip)")
    parser.add_argument("--registry", type=int, default=3_000,
                        help="authorities in the registry stack (0: skip)")
    args = parser.parse_args(argv)
    logs.configure("warning")
    settings = bench_settings(Settings.from_env())
    started = time.perf_counter()
    try:
        stack.up(settings)
    except stack.StackError as err:
        print(f"treatyflow: {err}", file=sys.stderr)
        return 1
    startup = time.perf_counter() - started
    try:
        figures = asyncio.run(measure(settings, args.lifecycles, args.concurrency,
                                      open_requests=args.open, storm=args.storm,
                                      rounds=args.rounds))
    finally:
        stack.down(settings)
    if args.registry:
        registry = bench_settings(settings.with_(state_dir=settings.state_dir.parent),
                                  "bench-registry")
        figures |= scale.registry_phase(registry, args.registry, args.lifecycles,
                                        args.concurrency, lambda text: print(f"[bench] {text}"),
                                        rounds=max(1, args.rounds))
        if "lifecycles_per_s" in figures:
            figures["registry_ratio_vs_base"] = round(
                figures["registry_lifecycles_per_s"] / figures["lifecycles_per_s"], 3)
            # The worker's memory after as many lifecycles on each stack (issue 16: ≤ 1.15).
            worker = figures["registry_rss_mb"]["worker"]
            figures["registry_worker_memory_ratio"] = (
                round(worker / figures["rss_mb_worker"], 3)
                if worker and figures["rss_mb_worker"] else None)
            print(f"[bench] registry of {args.registry}: worker memory "
                  f"{figures['registry_worker_memory_ratio']} of the base stack's, a request's "
                  f"input {figures['registry_input_bytes']} bytes")
    figures |= {
        "stack_startup_s": round(startup, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(figures, indent=2) + "\n")
    drawn = (chart(figures, args.out / "throughput-latency.png")
             if "floor_lifecycles_per_s" in figures else None)
    print(f"[bench] figures: {args.out / 'latest.json'}"
          + (f", chart: {drawn}" if drawn else " (no chart)"))
    print(json.dumps({k: v for k, v in figures.items() if k not in ("phases", "machine")}))
    return 0


if __name__ == "__main__":
    finish(main())

"""The demo: simulated competent authorities of the SCO parties exchange requests through
RabbitMQ on the local stack, and the central authorities of Kazakhstan and the UAE
transfer convicted persons through their foreign ministries (KZ–UAE 2018); every
scenario must reach the state it should.

    python -m treatyflow.local.demo [--copies N]

Exits 0 only when every request reached its expected state and each side received the
notices that say so, and the hub's record of an executed request and of a transfer
exports as evidence that verifies offline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client

from treatyflow import logs
from treatyflow.hub import request_state, transfer_state
from treatyflow.local import stack
from treatyflow.process import finish
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import TREATY, Run, demo_scenarios, scenario_authorities
from treatyflow.simulation.simulator import Simulation
from treatyflow.simulation.transfer import (
    TRANSFER_TREATY,
    TransferRun,
    transfer_authorities,
    transfer_scenarios,
)
from treatyflow.temporal import connect
from treatyflow.workflows.lifecycle import RequestState
from treatyflow.workflows.transfer import TransferState

# What each side must have received when a request ends in a given way.
EVIDENCE = {
    "executed": ("requester", "executed"),
    "refused": ("requester", "refused"),
    "lapsed": ("requested", "lapsed"),
    "withdrawn": ("requested", "withdrawn"),
    "overdue": ("requester", "overdue"),
}


async def _state(client: Client, run: Run) -> RequestState | None:
    try:
        return await request_state(client, TREATY, run.request_id)
    except Exception:  # noqa: BLE001 - not started yet, or refused at the gateway
        return None


def _settled(run: Run, state: RequestState | None) -> bool:
    expect = run.scenario.expect
    if expect.error:
        return any(e.body.problem == expect.error for e in run.errors)
    return (
        state is not None
        and state.status.value == expect.status
        and state.overdue == expect.overdue
        and (expect.outcome is None or state.outcome == expect.outcome)
        and (expect.transferred_to is None or (
            state.results is not None
            and any(t.to_authority == expect.transferred_to for t in state.results.transfers)))
    )


def _evidence_ok(run: Run, state: RequestState | None) -> bool:
    """The authorities' side: the notice that tells the outcome reached the right inbox."""
    expect = run.scenario.expect
    if expect.error:
        return bool(run.errors) and all(e.body.reasons for e in run.errors)
    if expect.transferred_to and not any(
            getattr(m.body, "event", None) == "results_transferred"
            and m.recipient == expect.transferred_to for m in run.received):
        return False
    key = "overdue" if expect.overdue else (expect.status or "")
    if key not in EVIDENCE:
        return True
    side, event = EVIDENCE[key]
    who = run.scenario.requester if side == "requester" else (state.requested if state else "")
    return any(getattr(m.body, "event", None) == event and m.recipient == who
               for m in run.received)


async def _transfer(client: Client, run: TransferRun) -> TransferState | None:
    try:
        return await transfer_state(client, TRANSFER_TREATY, run.request_id)
    except Exception:  # noqa: BLE001 - not started yet
        return None


def _transfer_settled(run: TransferRun, state: TransferState | None) -> bool:
    e = run.scenario.expect
    return (state is not None and state.status.value == e.status and state.overdue == e.overdue
            and (e.transit is None or state.transits.get(e.transit) == "granted"))


def _transfer_evidence_ok(run: TransferRun, state: TransferState | None) -> bool:
    """The requester was told: the last notice it got carries the expected status (or an
    overdue notice), and nothing it sent was refused."""
    if state is None or run.errors:
        return False
    mine = [m for m in run.received if m.recipient == run.scenario.requester
            and m.request_id == run.request_id and hasattr(m.body, "event")]
    if run.scenario.expect.overdue:
        return any(m.body.event == "overdue" for m in mine)  # type: ignore[union-attr]
    return any(m.body.status == state.status.value for m in mine)  # type: ignore[union-attr]


def _transfer_label(state: TransferState | None) -> str:
    if state is None:
        return "not opened"
    transits = "".join(f" + transit {t} {v}" for t, v in sorted(state.transits.items()))
    return state.status.value + transits + (" + overdue" if state.overdue else "")


def _label(state: RequestState | None) -> str:
    if state is None:
        return "returned"
    label = state.status.value + (f" ({state.outcome})" if state.outcome else "")
    return label + (" + overdue" if state.overdue else "")


async def run_demo(settings: Settings, copies: int, console: Console) -> bool:
    scenarios = demo_scenarios()
    transfers = transfer_scenarios()
    sim = Simulation(settings, settings.seconds_per_day)
    await sim.connect(scenario_authorities(scenarios) | transfer_authorities(transfers))
    client = await connect(settings)
    stamp = datetime.now(UTC).strftime("%y%m%d%H%M%S")
    runs: list[Run] = []
    for n in range(copies):
        for i, scenario in enumerate(scenarios):
            rid = f"{scenario.requester}-DEMO-{stamp}-{i:02d}{n:02d}"
            runs.append(await sim.start(scenario, rid))
    transfer_runs: list[TransferRun] = []
    for n in range(copies):
        for i, ts in enumerate(transfers):
            rid = f"{ts.requester}-DEMO-TR-{stamp}-{i:02d}{n:02d}"
            transfer_runs.append(await sim.transfers.start(ts, rid))
    longest_days = 45
    timeout = longest_days * settings.seconds_per_day + 60
    states: dict[str, RequestState | None] = {}
    tstates: dict[str, TransferState | None] = {}
    started = time.monotonic()
    with Progress(TextColumn("[bold]requests settled"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("", total=len(runs) + len(transfer_runs))
        while True:
            for run in runs:
                states[run.request_id] = await _state(client, run)
            for trun in transfer_runs:
                tstates[trun.request_id] = await _transfer(client, trun)
            done = [r for r in runs if _settled(r, states[r.request_id])]
            tdone = [r for r in transfer_runs if _transfer_settled(r, tstates[r.request_id])]
            live = Counter(_label(s) for s in states.values() if s is not None)
            bar.update(task, completed=len(done) + len(tdone),
                       description=", ".join(f"{k}: {v}" for k, v in sorted(live.items())))
            if (len(done) == len(runs) and len(tdone) == len(transfer_runs)
                    or time.monotonic() - started > timeout):
                break
            await asyncio.sleep(0.5)
    # Let the last notices land in the inboxes before checking each side's evidence.
    await asyncio.sleep(min(2.0, 2 * settings.seconds_per_day))
    await sim.close()

    table = Table(title="treatyflow demo: requests for assistance under the SCO 2010 agreement; "
                        "transfers of convicted persons under the KZ–UAE 2018 agreement")
    for col in ("scenario", "expected", "reached", "requests", "notices", "ok"):
        table.add_column(col, justify="right" if col in ("requests", "notices") else "left")
    all_ok = True
    for scenario in scenarios:
        mine = [r for r in runs if r.scenario is scenario]
        reached = Counter(_label(states[r.request_id]) for r in mine)
        ok = all(_settled(r, states[r.request_id]) and _evidence_ok(r, states[r.request_id])
                 for r in mine)
        all_ok &= ok
        e = scenario.expect
        expected = (f"error: {e.error}" if e.error else
                    f"{e.status}" + (f" ({e.outcome})" if e.outcome else "")
                    + (" + overdue" if e.overdue else ""))
        table.add_row(scenario.name, expected, ", ".join(f"{k} ×{v}" for k, v in reached.items()),
                      str(len(mine)), str(sum(len(r.received) for r in mine)),
                      "[green]yes[/]" if ok else "[red]NO[/]")
    for ts in transfers:
        tmine = [r for r in transfer_runs if r.scenario is ts]
        treached = Counter(_transfer_label(tstates[r.request_id]) for r in tmine)
        ok = all(_transfer_settled(r, tstates[r.request_id])
                 and _transfer_evidence_ok(r, tstates[r.request_id]) for r in tmine)
        all_ok &= ok
        te = ts.expect
        texpected = (te.status + (f" + transit {te.transit} granted" if te.transit else "")
                     + (" + overdue" if te.overdue else ""))
        table.add_row(ts.name, texpected, ", ".join(f"{k} ×{v}" for k, v in treached.items()),
                      str(len(tmine)), str(sum(len(r.received) for r in tmine)),
                      "[green]yes[/]" if ok else "[red]NO[/]")
    console.print(table)
    settled = (sum(1 for r in runs if _settled(r, states[r.request_id]))
               + sum(1 for r in transfer_runs if _transfer_settled(r, tstates[r.request_id])))
    console.print(f"{settled}/{len(runs) + len(transfer_runs)} "
                  f"requests reached their expected state in {time.monotonic() - started:.0f} s "
                  f"(one treaty day = {settings.seconds_per_day:g} s)")
    console.print(f"Temporal UI: {settings.temporal_ui_url}/namespaces/default/workflows")
    executed = next((r.request_id for r in runs if (st := states[r.request_id]) is not None
                     and st.status.value == "executed"), None)
    transferred = next((r.request_id for r in transfer_runs
                        if (t := tstates[r.request_id]) is not None and t.final), None)
    return _evidence(settings, console, [rid for rid in (executed, transferred) if rid]) \
        and all_ok


def _evidence(settings: Settings, console: Console, request_ids: list[str]) -> bool:
    """Each request's evidence, as a party gets and checks it: `treatyflow evidence
    export`, then `verify` offline (docs/reference/evidence.md)."""
    folder = settings.state_dir / "evidence"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # bundles hold request contents
    ok = bool(request_ids)
    for rid in request_ids:
        bundle = folder / f"{rid}.json"
        for args in (("export", rid, "-o", str(bundle)), ("verify", str(bundle))):
            done = subprocess.run([sys.executable, "-m", "treatyflow.cli", "evidence", *args],
                                  env={**os.environ, **settings.to_env()}, capture_output=True,
                                  text=True, timeout=120, check=False)
            said = (done.stdout.strip() or done.stderr.strip()).splitlines()
            console.print(f"treatyflow evidence {' '.join(args)} → exit {done.returncode}: "
                          f"{said[-1] if said else ''}")
            ok &= done.returncode == 0
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=2, help="requests per scenario")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    # The simulated authorities' lines go to demo.log, beside the gateway's and the
    # worker's: one grep for a request id follows it across all of them.
    logs.configure("warning", file=settings.logs_dir / "demo.log")
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        stack.up(settings)
    except stack.StackError as err:
        console.print(f"[red]treatyflow: {err}[/]")
        return 1
    ok = asyncio.run(run_demo(settings, args.copies, console))
    console.print("[green]demo passed[/]" if ok else "[red]demo FAILED[/]")
    console.print(f"logs (JSON lines; grep a request id): {settings.logs_dir}/*.log")
    return 0 if ok else 1


if __name__ == "__main__":
    finish(main())

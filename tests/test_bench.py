"""A tiny run of the benchmark harness on the real stack: it measures, it does not judge
(figures are read in `make bench`, never asserted as timings here)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from treatyflow import constants as c
from treatyflow.bench import record as record_bench
from treatyflow.bench import run as bench_run
from treatyflow.bench import scale
from treatyflow.bench.harness import Authorities, floor_worker
from treatyflow.bench.run import chart, measure
from treatyflow.hub import request_state
from treatyflow.local import stack
from treatyflow.schemas.messages import NoticeMessage
from treatyflow.schemas.treaty import all_authorities, known_treaties, load_profile, use_folder
from treatyflow.settings import Settings
from treatyflow.topology import definitions


@pytest.mark.stack
async def test_the_harness_runs_every_phase_and_reports_its_figures(
    stack_settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    figures = await measure(stack_settings, lifecycles=6, concurrency=3, say=lambda _: None,
                            loads=(0.5,), seconds_per_load=0, least_per_load=4, rounds=2)
    for key in ("ratio_vs_floor", "lifecycles_per_s", "floor_lifecycles_per_s", "p99_ms",
                "rss_mb_50k_open", "messages_per_s"):
        assert key in figures
    assert figures["lifecycles_per_s"] > 0 and figures["floor_lifecycles_per_s"] > 0
    assert figures["ratio_vs_floor"] == pytest.approx(
        figures["lifecycles_per_s"] / figures["floor_lifecycles_per_s"], rel=0.01)
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert figures["rss_mb_worker"] and figures["rss_mb_gateway"]
    # A request's start input, read back from Temporal: the profile by reference.
    assert 0 < figures["input_bytes"] < 8 * 1024 and figures["input_stored_bytes"] > 0
    # Where the CPU went, per component of the stack and the driver.
    for phase in ("cpu_cores_floor", "cpu_cores_treatyflow"):
        cores = figures[phase]
        assert {"temporal", "rabbitmq", "worker", "gateway", "driver"} <= set(cores)
        assert cores["total"] == pytest.approx(sum(v for k, v in cores.items() if k != "total"),
                                               abs=0.02)
        assert cores["temporal"] > 0
    assert "floor-bench-floor" in figures["cpu_cores_floor"]
    floor, ours, half = figures["phases"]
    assert (floor["lifecycles"], ours["lifecycles"], half["lifecycles"]) == (12, 12, 4)
    # Two rounds taken in turn; the ratio is that of the sums.
    assert len(figures["ratio_by_round"]) == figures["rounds"] == 2
    assert min(figures["ratio_by_round"]) <= figures["ratio_vs_floor"] <= max(
        figures["ratio_by_round"])
    for phase in ("cpu_ms_per_lifecycle_floor", "cpu_ms_per_lifecycle_treatyflow"):
        assert figures[phase]["temporal"] > 0
    assert half["offered_per_s"] == pytest.approx(ours["lifecycles_per_s"] / 2, rel=0.01)
    json.dumps(figures)  # what `make bench` writes
    assert chart(figures, tmp_path / "chart.png") in (None, tmp_path / "chart.png")
    # The floor's worker process is gone once measured.
    assert not list((stack_settings.state_dir / "run").glob("floor-*.pid"))
    assert stack.is_up(stack_settings)


@pytest.mark.stack
async def test_open_requests_and_a_storm_of_deadlines_are_measured(
    stack_settings: Settings, stack_client: Client
) -> None:
    """The scale phases on the real stack: requests left open, then deadlines falling due
    together, each one seen overdue by Temporal and by both parties."""
    async with Authorities(stack_settings) as authorities:
        opened = await scale.open_phase(authorities, 6, 3, lambda _: None)
        storm = await scale.storm_phase(stack_client, authorities, 4, 4, lambda _: None,
                                        stack_settings, lead=3)
    assert opened["open_requests"] == 6 and opened["open_per_s"] > 0
    assert scale.database_mb(stack_settings) > 0
    assert all(scale.memory(stack_settings).values())
    assert storm["storm_deadlines"] == 4
    assert 0 <= storm["storm_first_notice_s"] <= storm["storm_seconds"]
    for i in range(4):
        requester = authorities.pairs[i % len(authorities.pairs)][0]
        rid = scale.storm_request_id(requester, storm["storm_run"], i)
        state = await request_state(stack_client, "sco-2010", rid)
        assert state.overdue and state.status.value == "received"
        assert [e.event for e in state.timeline].count("overdue") == 1


@pytest.mark.stack
async def test_the_storm_floor_fires_its_timers_and_signs_a_notice_to_each_party(
    stack_settings: Settings, stack_client: Client, task_queue: str
) -> None:
    """The storm's floor: each bare workflow's timer fires at the instant, then one
    activity per party publishes a notice the party's client verifies as the hub's."""
    async with floor_worker(stack_settings, task_queue), Authorities(
            stack_settings, pairs=scale.FLOOR_PAIRS, acknowledge_retrievals=False) as parties:
        storm = await scale.floor_storm_phase(stack_client, parties, task_queue, 4, 4,
                                              lambda _: None, stack_settings, lead=3)
        inboxes = {a: list(parties.sim.inbox[a]) for pair in parties.pairs for a in pair}
    assert storm["storm_floor_deadlines"] == 4
    assert 0 <= storm["storm_floor_first_notice_s"] <= storm["storm_floor_seconds"]
    assert "floor-" + task_queue in storm["storm_floor_cpu_cores"]
    assert storm["storm_floor_cpu_ms_per_deadline"]["temporal"] > 0
    marker = f"-FLOOR-{storm['storm_floor_run']}-"
    for i in range(4):
        requesting, requested = scale.FLOOR_PAIRS[i % len(scale.FLOOR_PAIRS)]
        rid = f"{requesting}{marker}{i:06d}"
        for party in (requesting, requested):
            got = [m for m in inboxes[party] if m.request_id == rid]
            assert len(got) == 1 and isinstance(got[0], NoticeMessage)
            assert got[0].body.event == "overdue" and got[0].sender == c.HUB_SENDER
        events = [e.event_type async for e in stack_client.get_workflow_handle(
            f"floor-storm-{rid}").fetch_history_events()]
        assert events.count(EventType.EVENT_TYPE_TIMER_FIRED) == 1
        assert events.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 2


async def test_the_storm_and_its_floor_are_printed_with_their_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``make bench`` runs the storm's floor, then treatyflow's storm of as many
    deadlines, and prints both with their ratio."""
    calls: list[tuple[str, int]] = []

    async def floor(client: object, parties: object, queue: str, n: int, *rest: object
                    ) -> dict[str, object]:
        calls.append(("floor", n))
        return {"storm_floor_seconds": n / 40, "storm_floor_deadlines_per_s": 40.0,
                "storm_floor_cpu_ms_per_deadline": {"temporal": 25.0}}

    async def ours(client: object, authorities: object, n: int, *rest: object
                   ) -> dict[str, object]:
        calls.append(("treatyflow", n))
        return {"storm_seconds": n / 30, "storm_deadlines_per_s": 30.0,
                "storm_cpu_ms_per_deadline": {"worker": 16.0}}

    @contextlib.asynccontextmanager
    async def parties(settings: Settings, **options: object) -> AsyncIterator[object]:
        assert options == {"pairs": scale.FLOOR_PAIRS, "acknowledge_retrievals": False}
        yield object()

    monkeypatch.setattr(scale, "floor_storm_phase", floor)
    monkeypatch.setattr(scale, "storm_phase", ours)
    monkeypatch.setattr(bench_run, "Authorities", parties)
    said: list[str] = []
    figures = await bench_run.storms(object(), object(), Settings(), 200, 8,  # type: ignore[arg-type]
                                     said.append)
    assert calls == [("floor", 200), ("treatyflow", 200)]  # the floor first, as many
    assert figures["storm_ratio_vs_floor"] == 0.75
    assert figures["storm_floor_deadlines_per_s"] == 40.0
    assert "(30.0/s, 0.75 of the floor)" in said[-1] and "worker 16.0" in said[-1]
    assert "(40.0/s)" in said[0] and "temporal 25.0" in said[0]


def test_a_registry_of_generated_authorities_is_served_from_the_treaties_folder(
    tmp_path: Path,
) -> None:
    pairs = scale.write_registry(tmp_path, 12)
    try:
        use_folder(tmp_path)
        authorities = all_authorities()
        assert len([a for a in authorities if "-B0" in a]) == 12
        assert {a for pair in pairs for a in pair} <= set(authorities)
        assert all(authorities[x].state != authorities[y].state for x, y in pairs)
        assert "bench-registry" in known_treaties()
        assert load_profile("bench-registry").deadlines == load_profile("sco-2010").deadlines
        queues = {q["name"] for q in definitions({u: "pw" for u in [c.HUB_USER,
                                                                     *authorities]})["queues"]}
        assert {c.inbox_queue(a) for a in authorities} <= queues
    finally:
        use_folder(None)
    assert "bench-registry" not in known_treaties()
    assert not [a for a in all_authorities() if "-B0" in a]


def test_a_treaties_folder_may_not_shadow_a_shipped_treaty(tmp_path: Path) -> None:
    (tmp_path / "sco-2010.json").write_text("{}")
    with pytest.raises(ValueError, match="sco-2010"):
        use_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        use_folder(tmp_path / "missing")
    use_folder(None)
    assert Settings.from_env({"TREATYFLOW_TREATIES_DIR": str(tmp_path)}).treaties_dir == tmp_path


@pytest.mark.stack
def test_a_stack_serves_a_registry_of_many_authorities(tmp_path: Path) -> None:
    """The registry phase: a second stack whose broker, keys and gateway carry the
    generated authorities, with lifecycles between them."""
    settings = stack.on_free_ports(Settings(state_dir=tmp_path / "registry",
                                            log_level="warning"))
    figures = scale.registry_phase(settings, 18, lifecycles=3, concurrency=3,
                                   say=lambda _: None)
    assert figures["registry_authorities"] == 18
    assert figures["registry_lifecycles_per_s"] > 0 and figures["registry_stack_startup_s"] > 0
    assert figures["registry_rss_mb"]["rabbitmq"]
    # Issue 16: the input does not grow with the registry (it carried the profile whole).
    assert 0 < figures["registry_input_bytes"] < 8 * 1024
    assert not stack.is_up(settings.with_(treaties_dir=settings.state_dir / "treaties"))
    assert "bench-registry" not in known_treaties()


def test_the_record_bench_appends_and_reports_cpu_per_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record_bench.main(["--entries", "20"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(figures) == {"cpu_ms_per_entry_one_at_a_time", "cpu_ms_per_entry_batches_of_10",
                            "cpu_ms_per_entry_sqlite3_floor", "ratio_floor_to_one_at_a_time"}
    assert all(value > 0 for value in figures.values())

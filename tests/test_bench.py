"""A tiny run of the benchmark harness on the real stack: it measures, it does not judge
(figures are read in `make bench`, never asserted as timings here)."""

from __future__ import annotations

import json

import pytest

from treatyflow.bench.run import chart, measure
from treatyflow.settings import Settings
from treatyflow.workers import stack

pytestmark = pytest.mark.stack


async def test_the_harness_runs_every_phase_and_reports_its_figures(
    stack_settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    figures = await measure(stack_settings, lifecycles=6, concurrency=3, say=lambda _: None,
                            loads=(0.5,), seconds_per_load=0, least_per_load=4)
    for key in ("ratio_vs_floor", "lifecycles_per_s", "floor_lifecycles_per_s", "p99_ms",
                "rss_mb_50k_open", "messages_per_s"):
        assert key in figures
    assert figures["lifecycles_per_s"] > 0 and figures["floor_lifecycles_per_s"] > 0
    assert figures["ratio_vs_floor"] == pytest.approx(
        figures["lifecycles_per_s"] / figures["floor_lifecycles_per_s"], rel=0.01)
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert figures["rss_mb_worker"] and figures["rss_mb_gateway"]
    # Where the CPU went, per component of the stack and the driver.
    for phase in ("cpu_cores_floor", "cpu_cores_treatyflow"):
        cores = figures[phase]
        assert {"temporal", "rabbitmq", "worker", "gateway", "driver"} <= set(cores)
        assert cores["total"] == pytest.approx(sum(v for k, v in cores.items() if k != "total"),
                                               abs=0.02)
        assert cores["temporal"] > 0
    assert "floor-bench-floor" in figures["cpu_cores_floor"]
    floor, ours, half = figures["phases"]
    assert (floor["lifecycles"], ours["lifecycles"], half["lifecycles"]) == (6, 6, 4)
    assert half["offered_per_s"] == pytest.approx(ours["lifecycles_per_s"] / 2, rel=0.01)
    json.dumps(figures)  # what `make bench` writes
    assert chart(figures, tmp_path / "chart.png") in (None, tmp_path / "chart.png")
    # The floor's worker process is gone once measured.
    assert not list((stack_settings.state_dir / "run").glob("floor-*.pid"))
    assert stack.is_up(stack_settings)

"""The gateway's gauges from the record (treatyflow/statistics/gauges.py): cases waiting
by requesting state and requests open by age band, on the metrics endpoint with the values
a known history gives, the same as ``treatyflow stats`` counts."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from treatyflow import metrics
from treatyflow.statistics import figures_of
from treatyflow.statistics.facts import Fact
from treatyflow.statistics.gauges import GaugeValues, publish, values_of

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def fact(n: int, requested: str, days_ago: float, *, case: str | None = None,
         requesting: str = "KZ-GPO", treaty: str = "sco-2010", answered: bool = False) -> Fact:
    sent = NOW - timedelta(days=days_ago)
    done = sent + timedelta(days=days_ago / 2) if answered else None
    return Fact(request_id=f"{requesting}-2025-{n:04d}", treaty=treaty,
                requesting_authority=requesting, requested_authority=requested,
                form="interrogation", sent_at=sent, domestic_case=case, final_at=done,
                outcome="executed_full" if answered else "open")


def history() -> list[Fact]:
    """KZ waits on RU for two cases (three requests: 10, 45 and 400 days), on CN for one
    of them (200 days); RU waits on KZ for one (5 days); one answered request of KZ."""
    return [
        fact(1, "RU-MIA", 10, case="KZ-1"), fact(2, "RU-GPO", 45, case="KZ-1"),
        fact(3, "RU-MIA", 400, case="KZ-2"), fact(4, "CN-MPS", 200, case="KZ-2"),
        fact(5, "KZ-GPO", 5, case="RU-9", requesting="RU-MIA"),
        fact(6, "CN-MPS", 300, case="KZ-3", answered=True),
        fact(7, "RU-MIA", 20),  # no domestic case: open, waiting for no case
    ]


def test_the_gauges_of_a_known_history() -> None:
    values = values_of(history(), NOW)
    assert values.cases_waiting == {"KZ": 2, "RU": 1}  # KZ-3 has its answer
    open_ru = {band: values.open_by_age[("sco-2010", "RU", band)]
               for band in ("0-30", "31-90", "91-180", "181-365", "366+")}
    assert open_ru == {"0-30": 2, "31-90": 1, "91-180": 0, "181-365": 0, "366+": 1}
    assert values.open_by_age[("sco-2010", "CN", "181-365")] == 1
    assert values.open_by_age[("sco-2010", "CN", "366+")] == 0  # the answered one is not open
    assert values.open_by_age[("sco-2010", "KZ", "0-30")] == 1


def test_the_gauges_add_up_to_the_figures_of_stats() -> None:
    facts = history()
    values = values_of(facts, NOW)
    figures = figures_of(facts, now=NOW)
    assert sum(values.cases_waiting.values()) == figures.cases_waiting
    for band in figures.open_by_age:
        assert sum(n for (_, _, b), n in values.open_by_age.items() if b == band.band) == (
            band.open), band.band


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_gauges_are_on_the_metrics_endpoint_and_a_gone_series_goes() -> None:
    port = _free_port()
    metrics.serve("127.0.0.1", port)
    publish(values_of(history(), NOW))
    samples = _scrape(port)
    assert samples[("treatyflow_cases_waiting", frozenset({("requesting_state", "KZ")}))] == 2
    key = ("treatyflow_requests_open_by_age",
           frozenset({("treaty", "sco-2010"), ("requested_state", "RU"), ("band", "366+")}))
    assert samples[key] == 1
    assert samples[("treatyflow_statistics_refreshed_timestamp_seconds", frozenset())] > 0
    # A later round without RU's requests: its series leave the endpoint.
    publish(GaugeValues({"KZ": 0}, {("sco-2010", "CN", "0-30"): 3}))
    samples = _scrape(port)
    assert samples[("treatyflow_cases_waiting", frozenset({("requesting_state", "KZ")}))] == 0
    assert key not in samples
    assert not any(n == "treatyflow_cases_waiting" and ("requesting_state", "RU") in ls
                   for n, ls in samples)

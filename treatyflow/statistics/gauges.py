"""The gateway's gauges from the record: domestic cases waiting, and requests open by age
band (treatyflow.metrics.CASES_WAITING, REQUESTS_OPEN_BY_AGE).

Counted from the record's facts, the bands those of ``treatyflow stats``
(``ages.open_by_age``: days since sending). The facts follow the record
(``FactsFollower``): every ``interval`` seconds the entries appended since the last round
are folded in, or less often so that a round takes at most ``max_share`` of the time, in
a thread of its own with its own connection to the record: folding entries into facts
never holds up the gateway's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Gauge

from treatyflow import logs, metrics
from treatyflow.codec import PayloadKeys
from treatyflow.record import Record
from treatyflow.settings import SECONDS_PER_DAY
from treatyflow.statistics.ages import open_by_age
from treatyflow.statistics.facts import Fact, FactsFollower, read_facts

_log = logs.get("treatyflow.statistics")


@dataclass(frozen=True)
class GaugeValues:
    """One round of the gauges: cases waiting by requesting state; open requests by
    (treaty, requested state, band). Every state and pair the record knows is there, at
    0 when nothing of it is open (a series that drops to 0, not one that vanishes)."""

    cases_waiting: dict[str, int] = field(default_factory=dict)
    open_by_age: dict[tuple[str, str, str], int] = field(default_factory=dict)


def values_of(facts: Sequence[Fact], now: datetime) -> GaugeValues:
    """The gauges of ``facts`` as of ``now``."""
    cases: dict[str, set[str]] = defaultdict(set)
    groups: dict[tuple[str, str], list[Fact]] = defaultdict(list)
    for fact in facts:
        cases.setdefault(fact.requesting_state, set())
        if fact.domestic_case and fact.ended_at is None:
            cases[fact.requesting_state].add(fact.domestic_case)
        groups[(fact.treaty, fact.requested_state)].append(fact)
    ages = {(treaty, state, band.band): band.open
            for (treaty, state), chosen in groups.items()
            for band in open_by_age(chosen, now)}
    return GaugeValues({state: len(numbers) for state, numbers in cases.items()}, ages)


def publish(values: GaugeValues) -> None:
    """Set the gauges to ``values``; series of a previous round not in it are removed."""
    _replace(metrics.CASES_WAITING, {(s,): n for s, n in values.cases_waiting.items()})
    _replace(metrics.REQUESTS_OPEN_BY_AGE, dict(values.open_by_age.items()))
    metrics.STATISTICS_REFRESHED.set(time.time())


def _replace(gauge: Gauge, series: dict[tuple[str, ...], int]) -> None:
    for labels, value in series.items():
        gauge.labels(*labels).set(value)
    for sample in [s for family in gauge.collect() for s in family.samples]:
        labels = tuple(sample.labels[name] for name in gauge._labelnames)  # noqa: SLF001
        if labels not in series:
            gauge.remove(*labels)


async def refresh(record: Record, seconds_per_day: float = SECONDS_PER_DAY,
                  now: datetime | None = None, follower: FactsFollower | None = None,
                  ) -> GaugeValues:
    """Publish the gauges of the record as of ``now``, read whole, or as ``follower``
    holds it once it folded in what was appended since its last read; their values."""
    now = now or datetime.now(UTC)
    facts = (await follower.read(record) if follower is not None else
             await read_facts(record, seconds_per_day=seconds_per_day, now=now))
    values = values_of(facts, now)
    publish(values)
    return values


class GaugeWatcher:
    """``refresh`` every ``interval`` seconds in a thread with its own event loop and its
    own connection to the record at ``url``, until ``stop``."""

    def __init__(self, url: str, keys: PayloadKeys, *, interval: float,
                 seconds_per_day: float = SECONDS_PER_DAY, max_share: float = 0.05) -> None:
        self._url, self._keys = url, keys
        self.interval, self.max_share, self.seconds_per_day = interval, max_share, seconds_per_day
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statistics-gauges", daemon=True)
        self.rounds = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        record: Record | None = None
        follower = FactsFollower(self.seconds_per_day)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    record = record or await Record.open(self._url, self._keys)
                    await refresh(record, self.seconds_per_day, follower=follower)
                    self.rounds += 1
                except Exception as err:  # noqa: BLE001 - keep the last figures, try again
                    _log.warning("could not compute the statistics gauges", error=str(err))
                took = time.monotonic() - started
                pause = max(self.interval, took / self.max_share - took)
                await asyncio.to_thread(self._stop.wait, pause)
        finally:
            if record is not None:
                await record.close()

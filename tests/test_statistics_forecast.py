"""The forecasts against simulated history whose true distributions are known: the 80 %
intervals cover 75-85 % of held-out requests, and the medians are within 10 % of the
truth (docs/design.md, "Statistics"; the figures printed are the note's)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, datetime

from tests.conftest import RECORD_KEYS, TEST_KEYS
from treatyflow.record import Record
from treatyflow.statistics import fit_forecasts, read_facts
from treatyflow.statistics.history import BEHAVIOURS, generate_history

END = datetime(2026, 6, 30, tzinfo=UTC)
SEED = 7
MIN_HELD = 200  # held-out answers a state needs for its coverage to be judged
MIN_TRAINED = 100  # training answers a stratum needs for its median to be judged


def _held_out(request_id: str) -> bool:
    return int(hashlib.sha256(request_id.encode()).hexdigest(), 16) % 3 == 0


async def test_forecasts_cover_the_truth(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/record.sqlite3"
    async with await Record.open(url, RECORD_KEYS) as record:
        made = await generate_history(record, TEST_KEYS.private.__getitem__, years=4,
                                      per_year=1500, seed=SEED, end=END)
        facts = await read_facts(record, now=END)
    truth = {p.request_id: p for p in made.requests}
    assert len(facts) == len(truth)
    model = fit_forecasts([f for f in facts if not _held_out(f.request_id)], now=END)
    # Silent states never answer some requests: a log-normal has no room for them
    # (docs/design.md, "Statistics"): judged only where every request is answered.
    judged = {s for s, b in BEHAVIOURS.items() if b.silence == 0}
    covered: dict[str, list[bool]] = defaultdict(list)
    for fact in facts:
        plan = truth[fact.request_id]
        if not _held_out(fact.request_id) or plan.answer_days is None:
            continue
        forecast = model.for_new(fact.requested_state, fact.form)
        assert forecast is not None
        covered[fact.requested_state].append(
            forecast.lower_days <= plan.answer_days <= forecast.upper_days)
    print(f"\n{len(facts)} requests, {made.summary.entries} entries, "
          f"generated in {made.summary.seconds} s")
    for state in sorted(covered):
        hits = covered[state]
        print(f"coverage {state}: {sum(hits) / len(hits):.3f} of {len(hits)} held out")
    everything = [hit for s in judged for hit in covered[s]]
    assert 0.75 <= sum(everything) / len(everything) <= 0.85
    for state in judged:
        if len(covered[state]) >= MIN_HELD:
            assert 0.75 <= sum(covered[state]) / len(covered[state]) <= 0.85, state
    errors = {}
    for state in sorted(judged):
        for form, true_median in BEHAVIOURS[state].truth().median_days.items():
            forecast = model.for_new(state, form)
            assert forecast is not None
            if forecast.stratum != f"{state}/{form}" or forecast.answered < MIN_TRAINED:
                continue
            errors[forecast.stratum] = forecast.median_days / true_median - 1
            print(f"median {forecast.stratum}: {forecast.median_days:.1f} days, true "
                  f"{true_median:.1f} ({errors[forecast.stratum]:+.1%}, "
                  f"{forecast.answered} answers)")
    assert len(errors) >= 10
    assert all(abs(e) <= 0.10 for e in errors.values()), errors

"""Kaplan-Meier with censoring on data a person can check by hand, and the log-normal fit."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import LogNormalFitter

from treatyflow.statistics.survival import Fit, curve, durations, lognormal_mle


def test_censored_requests_are_counted_not_dropped() -> None:
    # Five requests: answered after 1, 2, 4, 5 days; the third still waiting at 3 days.
    # S(1) = 4/5, S(2) = 3/5; at 4 two remain at risk: S(4) = 3/5 * 1/2 = 0.3; S(5) = 0.
    found = durations([1, 2, 3, 4, 5], [True, True, False, True, True])
    assert (found.n, found.events, found.censored) == (5, 4, 1)
    assert found.median_days == 4  # first day the share still waiting is at most 1/2
    assert found.p90_days == 5
    # Dropping the censored request would give S(2) = 0.5 and a median of 2 days.
    assert durations([1, 2, 4, 5], [True] * 4).median_days == 2
    steps = {p.day: p.survival for p in curve([1, 2, 3, 4, 5], [True, True, False, True, True])}
    assert steps[1] == pytest.approx(0.8) and steps[2] == pytest.approx(0.6)
    assert steps[4] == pytest.approx(0.3) and steps[5] == 0


def test_no_median_while_fewer_than_half_answered() -> None:
    found = durations([10, 40, 40, 40], [True, False, False, False])
    assert found.median_days is None and found.p90_days is None and found.events == 1


def test_the_fit_is_lifelines_lognormal_estimate() -> None:
    rng = np.random.default_rng(3)
    answer = rng.lognormal(np.log(40), 0.5, 400)
    cut = rng.uniform(0, 120, 400)  # the end of the record
    seen, ended = np.minimum(answer, cut), answer <= cut
    reference = LogNormalFitter().fit(seen, ended)
    mu, sigma = lognormal_mle(seen, ended)
    assert mu == pytest.approx(reference.mu_, abs=1e-3)
    assert sigma == pytest.approx(reference.sigma_, abs=1e-3)


def test_a_request_that_waited_long_is_forecast_later() -> None:
    fit = Fit("RU", mu=np.log(30), sigma=0.5, fitted_on=100, answered=90, refusal_share=0.1)
    assert fit.quantile(0.5) == pytest.approx(30)
    assert fit.quantile(0.1) < 30 < fit.quantile(0.9)
    assert fit.quantile(0.1, waited=60) > 60  # it is still open after 60 days
    assert fit.quantile(0.5, waited=60) > fit.quantile(0.5)

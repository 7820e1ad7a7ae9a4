"""Kaplan–Meier durations with censoring, and the forecast model (lifelines).

A request still waiting is censored at the instant the figures are as of: it has waited
at least that long, and says nothing more. Kaplan–Meier (``KaplanMeierFitter``) gives the
medians, 90th percentiles and curves of ``treatyflow stats``. Forecasts fit a log-normal
time from sending to the answer per requested state and form of cooperation
(closed and censored requests together), pooled to the state, then to
all requests, when a stratum has fewer than ``MIN_ANSWERS`` answers (the fit is
lifelines' ``LogNormalFitter`` estimate, computed directly: ``lognormal_mle``); a request that has
waited ``w`` days is forecast from the distribution given that it lasted past ``w``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times
from scipy.optimize import minimize
from scipy.stats import norm

from treatyflow.statistics.facts import Fact
from treatyflow.statistics.models import CurvePoint, Durations, Forecast

MIN_ANSWERS = 30  # answers a stratum needs to be fitted on its own
LOWER_Q, UPPER_Q = 0.10, 0.90  # the 80 % interval
CURVE_POINTS = 200  # at most, per curve
_EPSILON = 1e-3  # days: a duration of zero is not one a fitter takes


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 3)


def _kmf(durations: Sequence[float], events: Sequence[bool]) -> KaplanMeierFitter:
    kmf = KaplanMeierFitter()
    kmf.fit(np.maximum(np.asarray(durations, dtype=float), 0.0),
            np.asarray(events, dtype=bool))
    return kmf


def durations(values: Sequence[float], events: Sequence[bool]) -> Durations:
    """Kaplan–Meier median (with its 95 % interval) and 90th percentile of ``values``
    (days), ``events[i]`` False where value ``i`` is censored."""
    n, ended = len(values), int(sum(bool(e) for e in events))
    if n == 0 or ended == 0:
        return Durations(n=n, events=ended, censored=n - ended, median_days=None,
                         median_lower=None, median_upper=None, p90_days=None)
    kmf = _kmf(values, events)
    with warnings.catch_warnings():  # lifelines notes it reads the step function: so do we
        warnings.simplefilter("ignore")
        bounds = median_survival_times(kmf.confidence_interval_)
        p90 = kmf.percentile(1 - 0.90)
    lower, upper = (float(v) for v in np.asarray(bounds).reshape(-1)[:2])
    return Durations(n=n, events=ended, censored=n - ended,
                     median_days=_clean(kmf.median_survival_time_),
                     median_lower=_clean(lower), median_upper=_clean(upper),
                     p90_days=_clean(p90))


def curve(values: Sequence[float], events: Sequence[bool]) -> list[CurvePoint]:
    """The Kaplan–Meier curve of ``values`` with its 95 % band, at most ``CURVE_POINTS``
    steps (evenly thinned; the first and last kept)."""
    if not values or not any(events):
        return []
    kmf = _kmf(values, events)
    days = kmf.survival_function_.index.to_numpy()
    survival = kmf.survival_function_.iloc[:, 0].to_numpy()
    band = kmf.confidence_interval_survival_function_.to_numpy()
    keep = np.unique(np.linspace(0, len(days) - 1, min(len(days), CURVE_POINTS)).astype(int))
    return [CurvePoint(day=round(float(days[i]), 3), survival=round(float(survival[i]), 5),
                       lower=round(float(np.nan_to_num(band[i, 0])), 5),
                       upper=round(float(np.nan_to_num(band[i, 1], nan=1.0)), 5))
            for i in keep]


class Fit:
    """One log-normal fit of the time from sending to the answer."""

    def __init__(self, stratum: str, mu: float, sigma: float, fitted_on: int, answered: int,
                 refusal_share: float | None) -> None:
        self.stratum, self.mu, self.sigma = stratum, mu, sigma
        self.fitted_on, self.answered, self.refusal_share = fitted_on, answered, refusal_share

    def quantile(self, q: float, waited: float = 0.0) -> float:
        """The ``q`` quantile of the time to the answer, given it lasted past ``waited``."""
        survived = 1.0
        if waited > 0:
            survived = float(norm.sf((math.log(waited) - self.mu) / self.sigma))
        # Survival past waited is survived; the quantile q of the rest is where the
        # unconditional survival is (1 - q) of it. Past the model's reach: waited itself.
        left = (1 - q) * survived
        if left <= 0:
            return waited
        return max(waited, math.exp(self.mu + self.sigma * float(norm.isf(left))))


def _fit(stratum: str, facts: Sequence[Fact], now: datetime) -> Fit | None:
    answered = [f for f in facts if f.final_at is not None and f.final_at <= now]
    if len(answered) < MIN_ANSWERS:
        return None
    values = [f.waited(now) for f in facts]
    events = [f.final_at is not None and f.final_at <= now for f in facts]
    mu, sigma = lognormal_mle(values, events)
    refused = sum(f.outcome == "refused" for f in answered)
    return Fit(stratum, mu, sigma, len(facts), len(answered),
               round(refused / len(answered), 4))


def lognormal_mle(values: Sequence[float], events: Sequence[bool]) -> tuple[float, float]:
    """The maximum-likelihood (mu, sigma) of a log-normal from right-censored ``values``
    (days; ``events[i]`` False: censored). The same estimate as lifelines'
    ``LogNormalFitter`` (tests/test_statistics_survival.py compares them), in a few
    milliseconds rather than most of a second (it differentiates through autograd)."""
    logs = np.log(np.maximum(np.asarray(values, dtype=float), _EPSILON))
    ended = np.asarray(events, dtype=bool)
    seen = logs[ended]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        mu, log_sigma = theta
        sigma = math.exp(log_sigma)
        z_seen = (seen - mu) / sigma
        z_cut = (logs[~ended] - mu) / sigma
        tail = norm.logsf(z_cut)
        value = -(np.sum(-0.5 * z_seen ** 2) - seen.size * log_sigma + np.sum(tail))
        hazard = np.exp(norm.logpdf(z_cut) - tail)  # d(-log sf)/dz
        d_mu = -(np.sum(z_seen) + np.sum(hazard)) / sigma
        d_log_sigma = -(np.sum(z_seen ** 2) - seen.size + np.sum(hazard * z_cut))
        return float(value), np.array([d_mu, d_log_sigma])

    start = np.array([float(np.mean(seen)), math.log(max(float(np.std(seen)), 0.05))])
    found = minimize(loss, start, jac=True, method="L-BFGS-B")
    return float(found.x[0]), float(math.exp(found.x[1]))


class ForecastModel:
    """Log-normal fits of the time from sending to the answer, per requested state and
    form of cooperation, fitted as they are first asked for."""

    def __init__(self, facts: Sequence[Fact], now: datetime) -> None:
        self.now = now
        self._facts = list(facts)
        self._fits: dict[str, Fit | None] = {}

    def _stratum(self, key: str) -> Fit | None:
        if key not in self._fits:
            state, _, form = key.partition("/")
            chosen = [f for f in self._facts
                      if key == "all" or (f.requested_state == state
                                          and (not form or f.form == form))]
            self._fits[key] = _fit(key, chosen, self.now)
        return self._fits[key]

    def fit_for(self, requested_state: str, form: str) -> Fit | None:
        """The fit a request to ``requested_state`` in ``form`` is forecast from."""
        for key in (f"{requested_state}/{form}", requested_state, "all"):
            if (found := self._stratum(key)) is not None:
                return found
        return None

    def for_new(self, requested_state: str, form: str) -> Forecast | None:
        """A request not yet sent (its dates unknown: days only)."""
        return self._forecast(None, requested_state, form, None, 0.0)

    def for_fact(self, fact: Fact, now: datetime | None = None) -> Forecast | None:
        """A request in the record: open, given how long it has waited; answered, as it
        would have been forecast when sent."""
        at = (now or self.now).astimezone(UTC)
        waited = fact.waited(at) if fact.ended_at is None else 0.0
        return self._forecast(fact, fact.requested_state, fact.form, fact.sent_at, waited)

    def _forecast(self, fact: Fact | None, state: str, form: str, sent: datetime | None,
                  waited: float) -> Forecast | None:
        fit = self.fit_for(state, form)
        if fit is None:
            return None
        median, low, high = (fit.quantile(q, waited) for q in (0.5, LOWER_Q, UPPER_Q))
        day = fact.seconds_per_day if fact is not None else 86_400.0

        def at(days: float) -> datetime | None:
            return None if sent is None else sent + timedelta(seconds=days * day)

        return Forecast(
            request_id=fact.request_id if fact else None, requested_state=state, form=form,
            stratum=fit.stratum, model="lognormal", fitted_on=fit.fitted_on,
            answered=fit.answered, waited_days=round(waited, 3),
            median_days=round(median, 3), lower_days=round(low, 3),
            upper_days=round(high, 3), expected_at=at(median), lower_at=at(low),
            upper_at=at(high), refusal_share=fit.refusal_share)


def fit_forecasts(facts: Sequence[Fact], *, now: datetime | None = None) -> ForecastModel:
    """The forecast model of ``facts`` as of ``now`` (default: now)."""
    return ForecastModel(facts, (now or datetime.now(UTC)).astimezone(UTC))

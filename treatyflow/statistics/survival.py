"""Kaplan–Meier durations with censoring, and the forecast model (lifelines)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from treatyflow.statistics.facts import Fact
from treatyflow.statistics.models import Forecast


class ForecastModel:
    """Log-normal fits of the time from sending to the answer, per requested state and form."""

    def for_fact(self, fact: Fact, now: datetime | None = None) -> Forecast:
        raise NotImplementedError

    def for_new(self, requested_state: str, form: str) -> Forecast:
        raise NotImplementedError


def fit_forecasts(facts: Sequence[Fact], *, now: datetime | None = None) -> ForecastModel:
    raise NotImplementedError

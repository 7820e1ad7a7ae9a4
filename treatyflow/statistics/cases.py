"""Domestic cases: the requests abroad each waits on, and the cases waiting longest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from treatyflow.statistics.facts import Fact
from treatyflow.statistics.models import CaseSummary, CaseView
from treatyflow.statistics.survival import ForecastModel


def case_of(facts: Sequence[Fact], case_no: str, model: ForecastModel, *,
            now: datetime | None = None) -> CaseView:
    raise NotImplementedError


def waiting_longest_of(facts: Sequence[Fact], model: ForecastModel, limit: int = 10, *,
                       now: datetime | None = None) -> list[CaseSummary]:
    raise NotImplementedError

"""Simulated history written into the record as the hub writes it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from treatyflow.agency.signing import SigningKey
from treatyflow.record import Record
from treatyflow.statistics.models import HistorySummary


async def generate(record: Record, signer: Callable[[str], SigningKey], *, years: float = 5,
                   per_year: int = 2000, seed: int = 15, end: datetime | None = None,
                   ) -> HistorySummary:
    raise NotImplementedError

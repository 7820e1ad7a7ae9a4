"""Art. 8.3's six-month rule as calendar dates: months added, terms and their ends."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

from treatyflow.schemas.transfer import SentenceData, Term


def add_months(day: date, months: int) -> date:
    """``day`` plus calendar months; a day the target month lacks becomes its last day.

    31 Jan + 1 month = 28 Feb (29 Feb in a leap year); 31 Aug + 6 months = 28/29 Feb;
    29 Feb + 12 months = 28 Feb. Monotonic: a later day never gives an earlier result.
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def term_end(counted_from: date, term: Term) -> date:
    """The day a term counted from ``counted_from`` has run: years and months as calendar
    months (see ``add_months``), then days."""
    return add_months(counted_from, 12 * term.years + term.months) + timedelta(days=term.days)


def release_date(sentence: SentenceData) -> date:
    """The end of the term: the date given (credits, remission) or counted_from + term."""
    return sentence.release_date or term_end(sentence.counted_from, sentence.term)


def months_left_threshold(received_on: date, months: int) -> date:
    """The earliest end of term that leaves ``months`` to serve on ``received_on``."""
    return add_months(received_on, months)


def has_months_left(received_on: date, release_on: date, months: int) -> bool:
    """Art. 8.3: on the day the request is received, at least ``months`` remain to be served.

    The term left runs from ``received_on`` to ``release_on``, counted like a sentence
    (``add_months``): exactly six months left (release on received_on + 6 months) counts;
    a day less does not. Received 31 Aug 2025, the term must end on 28 Feb 2026 or later.
    """
    return release_on >= months_left_threshold(received_on, months)

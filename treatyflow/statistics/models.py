"""What the statistics return: figures, curves, domestic cases, forecasts, generated history.

Every model is what ``treatyflow stats --json`` / ``case --json`` print
(``model_dump(mode="json")``) and what the report reads. Durations are in treaty days,
converted from the record's real UTC times with the clock each request ran under
(``Clock``); instants are UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["executed_full", "executed_part", "refused", "withdrawn", "lapsed", "open"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Clock(_Model):
    """The clocks the figures were read with: each request's treaty day is
    ``seconds_per_day`` real seconds, taken from the hub's own notice with a deadline
    when the record holds one, else the declared clock (``TREATYFLOW_SECONDS_PER_DAY``)."""

    declared_seconds_per_day: float = Field(description="The clock of the settings used for "
                                            "requests whose record states none.")
    from_record: int = Field(description="Requests whose clock the record states (a notice "
                             "with a deadline: deadline minus receipt is the treaty's term).")
    declared: int = Field(description="Requests read on the declared clock.")
    seconds_per_day: list[float] = Field(description="The distinct clocks met, ascending.")


class Filters(_Model):
    treaty: str | None = None
    state: str | None = Field(None, description="Requests this state sent or received.")
    since: date | None = Field(None, description="Requests sent on or after this day.")


class Durations(_Model):
    """Kaplan–Meier estimates of one duration: the requests still waiting are censored at
    ``as_of`` (counted as 'not yet', never dropped)."""

    n: int = Field(description="Requests the duration applies to.")
    events: int = Field(description="Of them, the ones whose duration ended.")
    censored: int = Field(description="Still waiting (or ended otherwise): censored.")
    median_days: float | None = Field(description="Median; null when fewer than half ended.")
    median_lower: float | None = Field(description="95 % interval of the median.")
    median_upper: float | None
    p90_days: float | None = Field(description="90th percentile; null when the survival "
                                   "curve never falls to 10 %.")


class Group(_Model):
    """The figures of one group of requests (a treaty, a state, an authority, a form, a
    year), or of them all."""

    dimension: str = Field(description="'all', 'treaty', 'requesting_state', "
                           "'requested_state', 'requesting_authority', "
                           "'requested_authority', 'form', 'year'.")
    value: str = Field(description="The group's value ('all' for the totals).")
    sent: int
    received: int = Field(description="Receipt confirmed by the requested authority.")
    executed_full: int
    executed_part: int
    refused: int = Field(description="Refused in whole.")
    refused_in_part: int = Field(description="Requests with a refusal of a part.")
    deferred: int = Field(description="Requests deferred at least once (art. 6.7).")
    clarifications: int = Field(description="Clarification requests asked (art. 5.3, 6.4).")
    withdrawn: int
    lapsed: int
    open: int
    overdue: int = Field(description="Answered after the term of art. 6.1 or still open "
                         "past it (the clock paused during clarification and deferral).")
    share_overdue: float | None = Field(description="overdue / requests whose term ran.")
    to_receipt: Durations = Field(description="From sending to the receipt.")
    to_final: Durations = Field(description="From sending to the final answer "
                                "(execution report or refusal in whole).")
    receipt_to_final: Durations = Field(description="From the receipt to the final answer.")


class CurvePoint(_Model):
    """One step of a Kaplan–Meier curve: the share still waiting after ``day`` days."""

    day: float
    survival: float
    lower: float = Field(description="95 % confidence band.")
    upper: float


class Curve(_Model):
    """Time from sending to the final answer, for the requests sent to one state."""

    requested_state: str
    n: int
    events: int
    median_days: float | None
    points: list[CurvePoint]


class AgeBand(_Model):
    """Requests still open, by how long they have waited since sending."""

    band: str = Field(examples=["0-30", "31-90", "91-180", "181-365", "366+"])
    lower_days: int
    upper_days: int | None
    open: int


class MonthPoint(_Model):
    """At the end of one month: requests open, and those of them past their term."""

    month: str = Field(examples=["2024-03"])
    open: int
    overdue: int
    share_overdue: float | None


class RefusalCount(_Model):
    """Refusals (in whole or in part) on one ground of one treaty."""

    treaty: str
    ground: str
    article: str | None = Field(description="The article of the treaty the ground is in.")
    whole: int
    part: int


class Forecast(_Model):
    """When the final answer to a request can be expected: the median and the 80 %
    interval of its time from sending, given how long it has waited already."""

    request_id: str | None
    requested_state: str
    form: str
    stratum: str = Field(description="What the model was fitted on: 'RU/identification', "
                         "or pooled 'RU' or 'all' when the stratum had too few answers.")
    model: str = Field(examples=["lognormal"])
    fitted_on: int = Field(description="Requests of the stratum (answered and censored).")
    answered: int = Field(description="Of them, answered.")
    waited_days: float
    median_days: float = Field(description="Expected days from sending to the answer.")
    lower_days: float = Field(description="10th percentile (the 80 % interval's lower end).")
    upper_days: float = Field(description="90th percentile.")
    expected_at: datetime | None = Field(description="Sent + median (null for a request "
                                         "not yet sent).")
    lower_at: datetime | None
    upper_at: datetime | None
    refusal_share: float | None = Field(description="Share of the stratum's answers that "
                                        "were refusals.")


class CaseRequest(_Model):
    """One request abroad a domestic case waits on (or waited on)."""

    request_id: str
    treaty: str
    requesting_authority: str
    requested_authority: str
    requested_state: str
    form: str
    status: str = Field(description="The request's state as its entries show it.")
    outcome: Outcome
    sent_at: datetime
    answered_at: datetime | None
    days_waited: float = Field(description="Treaty days from sending to the answer, or to now.")
    overdue: bool
    forecast: Forecast | None = Field(description="For an open request.")


class CaseView(_Model):
    """A domestic case: every request abroad it carries, and when the open ones can be
    expected to be answered."""

    case_no: str
    requesting_state: str = Field(description="The state whose domestic case it is: a "
                                  "case number is that state's, and only its requests count.")
    as_of: datetime
    requests: list[CaseRequest]
    open: int
    longest_wait_days: float | None = Field(description="Of the open requests.")
    expected_complete_at: datetime | None = Field(
        description="The latest expected answer of the open requests (when the case has "
        "all it waits for, at the median).")


class CaseSummary(_Model):
    """A case in the list of those waiting longest."""

    case_no: str
    requesting_state: str
    requesting_authority: str
    open: int
    requests: int
    longest_wait_days: float
    expected_complete_at: datetime | None


class Figures(_Model):
    """What ``treatyflow stats`` shows and the report draws."""

    as_of: datetime
    filters: Filters
    clock: Clock
    totals: Group
    groups: list[Group] = Field(description="One per value of each dimension.")
    curves: list[Curve] = Field(description="Per requested state.")
    open_by_age: list[AgeBand]
    overdue_by_month: list[MonthPoint]
    refusals: list[RefusalCount]
    cases_waiting: int = Field(description="Domestic cases with a request still open.")
    waiting_longest: list[CaseSummary]


class TrueBehaviour(_Model):
    """A simulated requested state's behaviour: its true distributions."""

    state: str
    median_days: dict[str, float] = Field(description="True median days from sending to "
                                          "the answer, per form of cooperation.")
    sigma: float = Field(description="Log-normal shape of the time to the answer.")
    refusal: float = Field(description="Probability an answer is a refusal in whole.")
    partial: float
    silence: float = Field(description="Probability a request is never answered at all.")
    receipt: float = Field(description="Probability the receipt is confirmed.")
    deferral: float
    clarification: float


class HistorySummary(_Model):
    """What ``history.generate`` wrote."""

    seed: int
    years: float
    start: datetime
    end: datetime
    requests: int
    entries: int
    answered: int
    open: int
    seconds: float = Field(description="Wall time the generation took.")
    behaviours: list[TrueBehaviour]

"""One row per request for assistance, derived from the record's entries alone.

The record is read in log order a slice at a time (``Record.since``: each entry's JWS
unsealed with the payload keys); each entry's signed payload is read as JSON, without
verifying the signature again (the gateway did before it wrote the entry; the log's own
verification is ``treatyflow evidence`` and the chaos record check). Times are the
record's (when the hub recorded each event), real UTC. Durations are treaty days on the
clock the request ran under: from the hub's notice stating the term of art. 6.1 when the
record holds one (its deadline minus the receipt is ``execution_days`` treaty days); for
a request with none yet, the clock of the nearest request sent before it that states one
(``_Reader.done``); with none at all, the declared clock passed in (the settings'
``seconds_per_day``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from treatyflow.agency.entries import DEADLINE, DELIVERED, Entry, signed_payload
from treatyflow.procedures import ASSISTANCE
from treatyflow.record import Record
from treatyflow.schemas.treaty import ClockRule, TreatyProfile, load_profile
from treatyflow.settings import SECONDS_PER_DAY
from treatyflow.statistics.models import Outcome

SLICE = 5000  # entries read from the record at a time
NOTICE_KINDS = frozenset({DELIVERED, DEADLINE})
_SNAP = 0.02  # a clock read from a notice within 2 % of a known one is that one


@dataclass(slots=True)
class Fact:
    """What the record says of one request for assistance."""

    request_id: str
    treaty: str
    requesting_authority: str
    requested_authority: str  # the one it is with now (after a forward, art. 6.3)
    form: str
    sent_at: datetime
    crime_category: str | None = None
    domestic_case: str | None = None
    received_at: datetime | None = None  # the requested authority's receipt (art. 6.1)
    deemed_at: datetime | None = None  # receipt deemed by the hub: as of the delivery
    delivered_at: datetime | None = None  # to the authority it is with now
    final_at: datetime | None = None  # the answer (execution report, refusal in whole)
    closed_at: datetime | None = None  # ended without an answer (withdrawn, lapsed, closed)
    outcome: Outcome = "open"
    status: str = "sent"
    refusals: list[tuple[str, str]] = field(default_factory=list)  # (ground, whole|part)
    deferred: bool = False
    clarifications: int = 0
    paused_seconds: float = 0.0  # the term's clock paused (clarification, deferral)
    paused_since: datetime | None = None
    seconds_per_day: float = SECONDS_PER_DAY
    clock_from_record: bool = False
    term_days: float = 30.0  # the art. 6.1 term in treaty days

    @property
    def term_seconds(self) -> float:
        return self.term_days * self.seconds_per_day

    @property
    def requesting_state(self) -> str:
        return state_of(self.requesting_authority)

    @property
    def requested_state(self) -> str:
        return state_of(self.requested_authority)

    @property
    def answered(self) -> bool:
        return self.final_at is not None

    @property
    def ended_at(self) -> datetime | None:
        """When it stopped waiting, answered or not."""
        return self.final_at or self.closed_at

    def days(self, start: datetime, end: datetime) -> float:
        """Treaty days from ``start`` to ``end`` on this request's clock."""
        return (end - start).total_seconds() / self.seconds_per_day

    def waited(self, now: datetime) -> float:
        """Treaty days from sending to the answer (or the end, or ``now``)."""
        return self.days(self.sent_at, min(self.ended_at or now, now))

    def deadline(self, now: datetime) -> datetime | None:
        """The end of the art. 6.1 term (its pauses added), or None before the receipt."""
        start = self.received_at or self.deemed_at
        if start is None:
            return None
        paused = self.paused_seconds
        if self.paused_since is not None and self.ended_at is None:
            paused += max((now - self.paused_since).total_seconds(), 0.0)
        return start + timedelta(seconds=self.term_seconds + paused)

    def overdue(self, now: datetime) -> bool:
        """Answered after its term, or still open past it (a withdrawal ends the count)."""
        due = self.deadline(now)
        if due is None:
            return False
        if self.final_at is not None:
            return self.final_at > due
        if self.closed_at is not None:
            return self.closed_at > due and self.outcome != "withdrawn"
        return now > due

    def term_ran(self, now: datetime) -> bool:
        """Whether its term has started and either ended or the request was answered."""
        due = self.deadline(now)
        return due is not None and (self.final_at is not None or now > due)


def state_of(authority: str) -> str:
    """The state of an authority id (``KZ-GPO`` → ``KZ``)."""
    return authority.split("-", 1)[0]


def _time(text: str) -> datetime:
    """A record time (``record_time``'s form, ``...Z``) as an aware instant."""
    return datetime.fromisoformat(text)


def _payload(entry: Entry) -> dict[str, Any]:
    assert entry.jws is not None
    data = json.loads(signed_payload(entry.jws))
    return data if isinstance(data, dict) else {}


class _Reader:
    """Folds entries, in log order, into facts."""

    def __init__(self, seconds_per_day: float) -> None:
        self.declared = seconds_per_day
        self.facts: dict[tuple[str, str], Fact] = {}
        self._profiles: dict[str, TreatyProfile | None] = {}

    def profile(self, treaty: str) -> TreatyProfile | None:
        if treaty not in self._profiles:
            try:
                self._profiles[treaty] = load_profile(treaty)
            except (KeyError, FileNotFoundError, ValueError):
                self._profiles[treaty] = None
        return self._profiles[treaty]

    def take(self, entry: Entry, at: datetime | None = None) -> None:
        """Fold in one entry (``at``: its time, parsed)."""
        if entry.procedure != ASSISTANCE.name:
            return
        key = (entry.treaty, entry.request_id)
        at = at or _time(entry.time)
        fact = self.facts.get(key)
        if fact is None:
            if entry.kind != "request":
                return  # a request refused at the door has no entries but the refusal
            message = _payload(entry)
            body = message.get("body", {})
            self.facts[key] = self._new(entry, message, body, at)
            return
        if entry.kind in NOTICE_KINDS:
            self._notice(fact, _payload(entry).get("body", {}), at)
        elif fact.ended_at is None or entry.kind == "execution_report":
            self._message(fact, entry.kind, _payload(entry).get("body", {}), at)

    def _new(self, entry: Entry, message: dict[str, Any], body: dict[str, Any],
             at: datetime) -> Fact:
        profile = self.profile(entry.treaty)
        fact = Fact(request_id=entry.request_id, treaty=entry.treaty,
                    requesting_authority=entry.actor,
                    requested_authority=str(message.get("recipient", "")),
                    form=str(body.get("form_of_cooperation", "other")), sent_at=at,
                    crime_category=body.get("crime_category"),
                    domestic_case=body.get("domestic_case"),
                    seconds_per_day=self.declared, delivered_at=at)
        fact.term_days = profile.deadlines.execution_days if profile else 30
        return fact

    def _pausing(self, fact: Fact, rule: str) -> bool:
        profile = self.profile(fact.treaty)
        if profile is None:
            return True
        deadlines = profile.deadlines
        value = getattr(deadlines, rule)
        return bool(value == ClockRule.PAUSED)

    def _pause(self, fact: Fact, at: datetime) -> None:
        if fact.paused_since is None:
            fact.paused_since = at

    def _resume(self, fact: Fact, at: datetime) -> None:
        if fact.paused_since is not None:
            fact.paused_seconds += max((at - fact.paused_since).total_seconds(), 0.0)
            fact.paused_since = None

    def _message(self, fact: Fact, kind: str, body: dict[str, Any], at: datetime) -> None:
        match kind:
            case "confirmation":
                request = body.get("request", {})
                fact.form = str(request.get("form_of_cooperation", fact.form))
                fact.domestic_case = request.get("domestic_case", fact.domestic_case)
            case "receipt":
                fact.received_at = fact.received_at or at
                fact.status = "received"
            case "clarification_request":
                fact.clarifications += 1
                fact.status = "clarification_requested"
                if self._pausing(fact, "clock_during_clarification"):
                    self._pause(fact, at)
            case "clarification" | "resumption":
                fact.status = "in_execution"
                self._resume(fact, at)
            case "delay":
                fact.status = "in_execution"
            case "forward":
                fact.requested_authority = str(body.get("to_authority",
                                                        fact.requested_authority))
                fact.status = "forwarded"
                fact.received_at = fact.deemed_at = fact.paused_since = None
                fact.delivered_at = at
                fact.paused_seconds = 0.0
            case "deferral":
                fact.deferred = True
                fact.status = "deferred"
                if self._pausing(fact, "clock_during_deferral"):
                    self._pause(fact, at)
            case "refusal":
                extent = "whole" if body.get("extent") == "whole" else "part"
                fact.refusals += [(str(g), extent) for g in body.get("grounds", [])]
                if extent == "whole":
                    self._end(fact, at, "refused", answer=True)
            case "execution_report":
                if fact.ended_at is None:
                    part = body.get("extent") == "partial"
                    self._end(fact, at, "executed_part" if part else "executed_full",
                              answer=True)
            case "withdrawal":
                self._end(fact, at, "withdrawn", answer=False)

    def _end(self, fact: Fact, at: datetime, outcome: Outcome, *, answer: bool) -> None:
        self._resume(fact, at)
        fact.outcome = outcome
        fact.status = {"executed_full": "executed", "executed_part": "executed"}.get(
            outcome, outcome)
        if answer:
            fact.final_at = at
        else:
            fact.closed_at = at

    def _notice(self, fact: Fact, body: dict[str, Any], at: datetime) -> None:
        event, deadline = body.get("event"), body.get("deadline")
        if event == "receipt_deemed" and fact.received_at is None:
            fact.deemed_at = fact.deemed_at or fact.delivered_at or at  # art. 6.1
        if event in ("received", "receipt_deemed") and deadline and not fact.clock_from_record:
            start = fact.received_at or fact.deemed_at or at
            due = datetime.fromisoformat(deadline).astimezone(UTC)
            self._clock(fact, (due - start).total_seconds())
        if fact.ended_at is None and event == "lapsed":
            self._end(fact, at, "lapsed", answer=False)
        elif fact.ended_at is None and body.get("status") == "closed":
            self._end(fact, at, "withdrawn", answer=False)
            fact.status = "closed"

    def _clock(self, fact: Fact, term: float) -> None:
        """The request's clock from its term as the hub's notice states it."""
        if term <= 0 or fact.term_days <= 0:
            return
        seen = term / fact.term_days
        for known in (self.declared, SECONDS_PER_DAY):
            if abs(seen - known) <= _SNAP * known:
                seen = known
                break
        fact.seconds_per_day = seen
        fact.clock_from_record = True

    def done(self) -> list[Fact]:
        """The facts, those whose entries state no clock (no receipt yet) given the clock
        of the nearest request sent before them that states one (a hub runs one clock at
        a time), else of the nearest after, else the declared one."""
        facts = sorted(self.facts.values(), key=lambda f: f.sent_at)
        last: float | None = None
        unstated: list[Fact] = []
        for fact in facts:
            if fact.clock_from_record:
                last = fact.seconds_per_day
                for waiting in unstated:
                    waiting.seconds_per_day = last
                unstated = []
            elif last is not None:
                fact.seconds_per_day = last
            else:
                unstated.append(fact)
        return list(self.facts.values())


def facts_of(entries: Iterable[Entry], seconds_per_day: float = SECONDS_PER_DAY
             ) -> list[Fact]:
    """The facts of ``entries`` (each with its JWS), in log order."""
    reader = _Reader(seconds_per_day)
    for entry in entries:
        reader.take(entry)
    return reader.done()


class FactsFollower:
    """The facts of a growing record, kept up to date: each ``read`` folds in only the
    entries appended since the one before (the log is append-only), so a reader that
    runs every few seconds, the gateway's gauges, costs what the record gained, not what
    it holds."""

    def __init__(self, seconds_per_day: float = SECONDS_PER_DAY) -> None:
        self._reader = _Reader(seconds_per_day)
        self.read_up_to = 0  # the entries folded in so far

    async def read(self, record: Record) -> list[Fact]:
        """Every request for assistance in ``record`` as of now, one fact each."""
        while batch := await record.since(self.read_up_to, SLICE):
            for entry in batch:
                self._reader.take(entry)
            self.read_up_to += len(batch)
        return self._reader.done()


async def read_facts(record: Record, *, seconds_per_day: float = SECONDS_PER_DAY,
                     now: datetime | None = None) -> list[Fact]:
    """Every request for assistance in ``record``, one fact each, read a slice at a time.
    Entries recorded after ``now`` are left out (figures as of a past instant)."""
    reader = _Reader(seconds_per_day)
    start = 0
    cutoff = None if now is None else now.astimezone(UTC)
    while True:
        batch = await record.since(start, SLICE)
        if not batch:
            break
        for entry in batch:
            at = _time(entry.time)
            if cutoff is None or at <= cutoff:
                reader.take(entry, at)
        start += len(batch)
    return reader.done()

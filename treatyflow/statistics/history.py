"""Simulated history written into the record as the hub writes it (``Recorder``).

Years of requests for assistance under SCO 2010, mostly from Kazakhstan's authorities
abroad and some to them, grouped in domestic cases of one to a few requests. Each
requested state behaves by its own true distributions (``BEHAVIOURS``; the vocabulary of
``treatyflow.simulation.assistance``: executes, refuses, defers, asks clarification,
stays silent): the time from sending to the answer is log-normal per state and form of
cooperation, so a forecast can be checked against the truth.

Every message is a valid contract message signed by its sender's key, written through
``Recorder.accepted`` at its past time; the hub's notice of the receipt (real or deemed,
art. 6.1) is signed by the hub and written through ``Recorder.delivered``: it states the
term, so the record says which clock the history ran on (the real one, 86400 s a day).
Entries go in time order, a batch at a time (the recorder's group commit), so the log,
its leaves and checkpoints are the hub's own and verify as the hub's do.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from treatyflow.agency.entries import entry_id
from treatyflow.agency.signing import SigningKey, sign
from treatyflow.constants import HUB_SENDER
from treatyflow.record import Record
from treatyflow.record.writers import Recorder
from treatyflow.schemas.messages import INBOUND, NoticeBody, NoticeMessage
from treatyflow.schemas.treaty import load_profile
from treatyflow.simulation.assistance import TREATY, request_content
from treatyflow.statistics.models import HistorySummary, TrueBehaviour

BATCH = 400  # entries written together (one group commit)
# Forms of cooperation (art. 3) the history uses, how often, and how they scale a state's
# median time to the answer.
FORMS: dict[str, tuple[float, float]] = {
    "information_exchange": (0.45, 1.0),
    "identification": (0.20, 0.8),
    "search_for_persons": (0.20, 1.6),
    "operational_search": (0.15, 1.3),
}


@dataclass(frozen=True)
class Behaviour:
    """How one requested state answers (true values)."""

    state: str
    median: float  # days from sending to the answer, for information exchange
    sigma: float  # log-normal shape
    refusal: float = 0.05  # an answer is a refusal in whole
    partial: float = 0.10  # an execution is partial (after a refusal of a part)
    silence: float = 0.0  # never answered at all (receipt deemed by the hub)
    receipt: float = 0.95  # receipt confirmed (else deemed)
    deferral: float = 0.05
    clarification: float = 0.15

    def median_of(self, form: str) -> float:
        return self.median * FORMS[form][1]

    def truth(self) -> TrueBehaviour:
        return TrueBehaviour(
            state=self.state, median_days={f: round(self.median_of(f), 3) for f in FORMS},
            sigma=self.sigma, refusal=self.refusal, partial=self.partial,
            silence=self.silence, receipt=self.receipt, deferral=self.deferral,
            clarification=self.clarification)


BEHAVIOURS: dict[str, Behaviour] = {b.state: b for b in (
    Behaviour("RU", median=32, sigma=0.45),  # prompt
    Behaviour("CN", median=75, sigma=0.55, clarification=0.3, receipt=0.85),  # slow
    Behaviour("KG", median=40, sigma=0.5, refusal=0.35),  # refuses often
    Behaviour("TJ", median=60, sigma=0.6, silence=0.3, receipt=0.4),  # often silent
    Behaviour("UZ", median=48, sigma=0.5, deferral=0.3),  # defers often
    Behaviour("KZ", median=28, sigma=0.45, refusal=0.08),  # answering the others
)}
# Who asks whom: most requests go out from Kazakhstan (weights of the requested states).
ABROAD = {"RU": 0.35, "CN": 0.2, "KG": 0.15, "TJ": 0.12, "UZ": 0.18}
INBOUND_SHARE = 0.25  # of the cases, those opened abroad that ask Kazakhstan
REQUESTS_PER_CASE = 1.28  # the mean of the case sizes ``_Planner.case`` draws
GROUNDS = ("security", "public_order", "contrary_to_law", "essential_interests", "no_offence")


class HistoryExists(RuntimeError):
    """The record already holds history of this seed: written again, it would conflict."""


@dataclass
class Planned:
    """One request as the generator plans it: its latent truth and its events."""

    request_id: str
    requesting: str
    requested: str
    form: str
    sent: datetime
    answer_days: float | None  # latent: days from sending to the answer (None: never)
    case_no: str
    events: list[tuple[datetime, str, dict[str, Any], str]] = field(default_factory=list)


@dataclass
class History:
    """What was generated: the summary and, per request, its latent truth."""

    summary: HistorySummary
    requests: list[Planned]


def _authorities() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for authority in load_profile(TREATY).authorities:
        out.setdefault(authority.state, []).append(authority.id)
    return out


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class _Planner:
    def __init__(self, rng: random.Random, seed: int, end: datetime,
                 behaviours: dict[str, Behaviour]) -> None:
        self.rng, self.seed, self.end, self.behaviours = rng, seed, end, behaviours
        self.by_state = _authorities()
        self.count = 0

    def case(self, opened: datetime) -> list[Planned]:
        """One domestic case and the requests it sends abroad."""
        rng = self.rng
        inbound = rng.random() < INBOUND_SHARE
        home = _pick(rng, ABROAD) if inbound else "KZ"
        requester = rng.choice(self.by_state[home])
        case_no = f"{home}-{opened.year}-{self.seed:02d}{self.count:06d}"
        targets = ["KZ"] if inbound else rng.sample(list(ABROAD), k=min(
            len(ABROAD), 1 + int(rng.expovariate(1.3))))
        out = []
        for target in targets:
            sent = opened + timedelta(days=rng.uniform(0, 20))
            if sent >= self.end:
                continue
            out.append(self.request(requester, target, sent, case_no))
        return out

    def request(self, requester: str, target: str, sent: datetime, case_no: str) -> Planned:
        rng, b = self.rng, self.behaviours[target]
        self.count += 1
        form = rng.choices(list(FORMS), weights=[w for w, _ in FORMS.values()])[0]
        silent = rng.random() < b.silence
        answer = None if silent else rng.lognormvariate(math.log(b.median_of(form)), b.sigma)
        requested = rng.choice(self.by_state[target])
        rid = f"{requester}-{sent.year}-H{self.seed:02d}{self.count:06d}"
        plan = Planned(rid, requester, requested, form, sent, answer, case_no)
        self._events(plan, b, silent)
        return plan

    def _events(self, plan: Planned, b: Behaviour, silent: bool) -> None:
        rng = self.rng
        ask, answer = plan.requesting, plan.requested

        def at(days: float) -> datetime:
            return plan.sent + timedelta(days=days)

        body = request_content(form_of_cooperation=plan.form, domestic_case=plan.case_no,
                               crime_category=rng.choice(("property", "corruption",
                                                          "narcotics", "human_trafficking")))
        plan.events.append((plan.sent, "request", body, ask))
        total = plan.answer_days
        confirm = not silent and rng.random() < b.receipt
        if confirm and total is not None:
            receipt = min(total * rng.uniform(0.02, 0.12), 10.0)
            plan.events.append((at(receipt), "receipt", {}, answer))
            plan.events.append((at(receipt), "notice:received", {"start": at(receipt)}, ask))
        else:
            receipt = 0.0
            deemed = load_profile(TREATY).deadlines.receipt_deemed_after_days or 5
            if total is None or total > deemed:
                plan.events.append((at(deemed), "notice:receipt_deemed",
                                    {"start": plan.sent}, ask))
        if rng.random() < 0.02:  # the requester withdraws
            when = rng.uniform(15, 240)
            if total is None or when < total:
                plan.events.append((at(when), "withdrawal",
                                    {"reason": "The case was closed domestically."}, ask))
                return
        if total is None:
            return
        span = total - receipt

        def within(share: float) -> datetime:
            return at(receipt + span * share)

        if rng.random() < b.clarification:
            plan.events.append((within(0.2), "clarification_request", {
                "topic": "additional_information",
                "questions": "Which period of the statements is needed (art. 6.4)?"}, answer))
            plan.events.append((within(0.3), "clarification",
                                {"answer": "January to June 2025."}, ask))
        if rng.random() < b.deferral:
            plan.events.append((within(0.4), "deferral", {
                "grounds": ["essential_interests"],
                "reason": "A domestic investigation on the same accounts must conclude "
                          "first (art. 6.7)."}, answer))
            plan.events.append((within(0.6), "resumption",
                                {"note": "Domestic investigation concluded."}, answer))
        if rng.random() < b.refusal:
            ground = rng.choice(GROUNDS)
            plan.events.append((at(total), "refusal", {
                "extent": "whole", "grounds": [ground],
                "reason": "Execution would prejudice the requested state (art. 6.7-6.9)."},
                answer))
        elif rng.random() < b.partial:
            plan.events.append((within(0.8), "refusal", {
                "extent": "part", "grounds": ["contrary_to_law"],
                "refused_part": "statements of account 2",
                "reason": "Banking secrecy bars disclosure without a court order "
                          "(art. 6.7)."}, answer))
            plan.events.append((at(total), "execution_report", {
                "extent": "partial", "confidentiality": "restricted",
                "summary": "Statements of account 1 attached."}, answer))
        else:
            plan.events.append((at(total), "execution_report", {
                "extent": "full", "confidentiality": "confidential",
                "summary": "Account statements attached."}, answer))


class _Writer:
    """Signs and writes planned events through the hub's recorder."""

    def __init__(self, record: Record, signer: Callable[[str], SigningKey]) -> None:
        self.recorder = Recorder(record)
        self._signer = signer
        self._keys: dict[str, SigningKey] = {}
        self.term = load_profile(TREATY).deadlines.execution_days
        self.written = 0

    def key(self, owner: str) -> SigningKey:
        if owner not in self._keys:
            self._keys[owner] = self._signer(owner)
        return self._keys[owner]

    async def write(self, events: Sequence[tuple[datetime, int, Planned, str,
                                                 dict[str, Any], str]]) -> None:
        """Write ``events`` in their order, a batch at a time (signed as each batch goes)."""
        for start in range(0, len(events), BATCH):
            done = await asyncio.gather(*(self._one(*event)
                                          for event in events[start:start + BATCH]))
            self.written += sum(entry is not None for entry in done)

    def _one(self, when: datetime, n: int, plan: Planned, kind: str, body: dict[str, Any],
             sender: str) -> Any:
        requesting, requested = plan.requesting, plan.requested
        if kind.startswith("notice:"):
            event = kind.split(":", 1)[1]
            deadline = body["start"] + timedelta(days=self.term)
            notice = NoticeMessage(
                kind="notice", message_id=f"{plan.request_id}-n{n}-{event}",
                request_id=plan.request_id, treaty_id=TREATY, sender=HUB_SENDER,
                recipient=sender, sent_at=when,
                body=NoticeBody(event=event, status="received", deadline=deadline,
                                requesting=requesting, requested=requested))
            return self.recorder.delivered(notice, sign(notice, self.key(HUB_SENDER)),
                                           at=when)
        recipient = requested if sender == requesting else requesting
        message = INBOUND.validate_python({
            "kind": kind, "message_id": f"{plan.request_id}-m{n}-{kind}",
            "request_id": plan.request_id, "treaty_id": TREATY, "sender": sender,
            "recipient": recipient, "sent_at": when, "body": body,
            "in_reply_to": None if kind == "request" else f"{plan.request_id}-m0-request"})
        return self.recorder.accepted(message, sign(message, self.key(sender)), at=when)


async def generate(record: Record, signer: Callable[[str], SigningKey], *, years: float = 5,
                   per_year: int = 2000, seed: int = 15, end: datetime | None = None,
                   ) -> HistorySummary:
    """Write ``years`` of history up to ``end`` (default: now), about ``per_year``
    requests a year, seeded; ``signer(owner)`` is the key each authority and the hub
    sign with. The summary names the true behaviours."""
    return (await generate_history(record, signer, years=years, per_year=per_year,
                                   seed=seed, end=end)).summary


async def generate_history(record: Record, signer: Callable[[str], SigningKey], *,
                           years: float = 5, per_year: int = 2000, seed: int = 15,
                           end: datetime | None = None,
                           behaviours: dict[str, Behaviour] | None = None) -> History:
    """``generate``, keeping each request's latent truth (what the calibration test
    checks the forecasts against)."""
    began = time.perf_counter()
    end = (end or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(days=365.25 * years)
    rng = random.Random(seed)
    behaviours = behaviours or BEHAVIOURS
    planner = _Planner(rng, seed, end, behaviours)
    cases_per_year = per_year / REQUESTS_PER_CASE
    plans: list[Planned] = []
    opened = start
    while True:
        opened += timedelta(days=rng.expovariate(cases_per_year / 365.25))
        if opened >= end:
            break
        plans += planner.case(opened)
    events = [(when, n, plan, kind, body, sender)
              for plan in plans
              for n, (when, kind, body, sender) in enumerate(sorted(
                  plan.events, key=lambda e: e[0]))
              if when <= end]
    events.sort(key=lambda e: (e[0], e[2].request_id, e[1]))
    if events and await record.entry(entry_id(TREATY, events[0][2].request_id,
                                              f"{events[0][2].request_id}-m0-request")):
        raise HistoryExists(f"the record already holds simulated history of seed {seed} "
                            f"(request {events[0][2].request_id}): generate into another "
                            "record or with another seed")
    writer = _Writer(record, signer)
    await writer.write(events)
    answered = sum(1 for p in plans if p.answer_days is not None
                   and p.sent + timedelta(days=p.answer_days) <= end
                   and not any(k == "withdrawal" for _, k, _, _ in p.events))
    summary = HistorySummary(
        seed=seed, years=years, start=start, end=end, requests=len(plans),
        entries=writer.written, answered=answered, open=len(plans) - answered,
        seconds=round(time.perf_counter() - began, 2),
        behaviours=[behaviours[s].truth() for s in sorted(behaviours)])
    return History(summary, plans)


"""Random histories of a transfer, and the six-month rule over random dates: whatever
arrives, and whenever, the lifecycle's invariants hold."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.transfer_factories import (
    AE,
    AE_MFA,
    KZ,
    KZ_MFA,
    PROFILE,
    SS_DOCS,
    T0,
    consent,
    doc,
    handover,
    message,
    request_body,
    sentence,
)
from treatyflow.schemas.transfer import SENT_BY, TransferInbound
from treatyflow.workflows import transfer as tf
from treatyflow.workflows.lifecycle import Rejected
from treatyflow.workflows.transfer import TransferStatus as S

# --- the six-month rule ---------------------------------------------------------------

dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31))


@given(day=dates, months=st.integers(0, 240))
def test_add_months_lands_in_the_right_month_on_the_same_or_last_day(day: date,
                                                                     months: int) -> None:
    later = tf.add_months(day, months)
    assert (later.year * 12 + later.month) - (day.year * 12 + day.month) == months
    assert later.day == day.day or (later.day < day.day and (later + timedelta(days=1)).day == 1)


@given(a=dates, b=dates, months=st.integers(0, 120))
def test_add_months_is_monotonic(a: date, b: date, months: int) -> None:
    if a <= b:
        assert tf.add_months(a, months) <= tf.add_months(b, months)


@given(received=dates)
def test_exactly_six_months_counts_and_a_day_less_does_not(received: date) -> None:
    end = tf.add_months(received, 6)
    assert tf.has_months_left(received, end, 6)
    assert not tf.has_months_left(received, end - timedelta(days=1), 6)


@given(received=dates, release=dates, earlier=st.integers(0, 400))
def test_what_is_met_on_a_day_is_met_on_any_earlier_day(received: date, release: date,
                                                         earlier: int) -> None:
    if tf.has_months_left(received, release, 6):
        assert tf.has_months_left(received - timedelta(days=earlier), release, 6)


# --- random histories -----------------------------------------------------------------

RELAYS = (KZ_MFA, AE_MFA)
CAS = (KZ, AE)
KINDS = sorted(k for k in SENT_BY if k not in ("transfer_request", "transfer_relay"))
_PROVISION = "UAE Penal Code, art. 451"


def _bodies(kind: str, today: date) -> list[dict[str, Any]]:
    """Valid bodies and ones the lifecycle (not the schema) refuses."""
    return {
        "transfer_documents": [
            {"documents": [doc("final_judgment")]},
            {"documents": [doc(c) for c in SS_DOCS], "sentence": sentence(),
             "consent": consent()},
            {"documents": [doc("medical_social_report")]},
            {"documents": [doc("citizenship_proof", "AE")]},
            {"documents": [doc("dual_criminality_extract", "AE")],
             "executing_state_provision": _PROVISION},
        ],
        "transfer_documents_request": [
            {"documents": ["medical_social_report"], "reason": "Treatment"},
            {"documents": ["citizenship_proof"], "reason": "Proof"},
        ],
        "transfer_consent": [
            {"consent": consent(), "document": doc("consent")},
            {"consent": consent(in_writing=False), "document": doc("consent")},
        ],
        "transfer_decision": [
            {}, {"executing_state_provision": _PROVISION}, {"waive_six_months": True},
            {"executing_state_provision": _PROVISION, "waive_six_months": True},
        ],
        "transfer_refusal": [
            {"grounds": ["national_interests"], "reason": "Public order would suffer."},
            {"conditions_not_met": ["dual_criminality"], "reason": "Not a crime here at all."},
            {"grounds": ["whim"], "reason": "We would rather not, really."},
        ],
        "transfer_withdrawal": [{"reason": "Consent revoked"}],
        "transfer_handover": [
            handover(today + timedelta(days=40)),
            handover(today + timedelta(days=40), mode="land", transit=["UZ"]),
            handover(today + timedelta(days=40), transit=["TR"], landing=False),
        ],
        "transfer_completed": [{"handed_over_on": today.isoformat(), "place": "Almaty"}],
        "transfer_execution_report": [
            {"event": "enforcement_continued", "occurred_on": today.isoformat(),
             "term_imposed": {"years": 5}},
            {"event": "escape", "occurred_on": today.isoformat()},
            {"event": "recapture", "occurred_on": today.isoformat()},
            {"event": "information", "occurred_on": today.isoformat()},
            {"event": "sentence_served", "occurred_on": today.isoformat()},
            {"event": "death", "occurred_on": today.isoformat()},
        ],
        "transfer_sentence_decision": [
            {"decision": "pardon", "effect": "ends_enforcement", "decided_on": "2025-06-01",
             "details": "Pardon decree"},
            {"decision": "review", "effect": "changes_enforcement", "decided_on": "2025-06-01",
             "details": "Term reduced"},
            {"decision": "amnesty", "effect": "none", "decided_on": "2025-06-01",
             "details": "Not covered"},
        ],
        "transfer_enforcement_change": [
            {"action": "ended", "effective_on": "2025-06-03"},
            {"action": "changed", "effective_on": "2025-06-03"},
        ],
        "transfer_information_request": [{"questions": "Where is he held?"}],
    }[kind]


@dataclass(frozen=True)
class Send:
    kind: str  # a kind, or "*": one the table allows now, from the side that may send it
    pick: int
    sender: int  # index into CAS + RELAYS when kind is not "*"
    variant: int
    reply: int
    duplicate: bool


@dataclass(frozen=True)
class Relay:
    pick: int
    wrong: bool  # from the wrong ministry


@dataclass(frozen=True)
class Wait:
    hours: int


sends = st.builds(Send, kind=st.sampled_from([*KINDS, *["*"] * (2 * len(KINDS))]),
                  pick=st.integers(0, 20), sender=st.integers(0, 3), variant=st.integers(0, 6),
                  reply=st.integers(0, 20), duplicate=st.sampled_from([False] * 12 + [True]))
relays = st.builds(Relay, pick=st.integers(0, 10), wrong=st.sampled_from([False] * 6 + [True]))
waits = st.builds(Wait, hours=st.sampled_from([1, 24, 48, 24 * 3, 24 * 11, 24 * 31]))
steps = st.one_of(sends, sends, relays, relays, relays, waits)

REACHED: set[S] = set()
OUTCOMES: Counter[str] = Counter()


def _sender(kind: str, step: Send, state: tf.TransferState) -> str:
    if step.kind != "*":
        return (*CAS, *RELAYS)[step.sender % 4]
    who = SENT_BY[kind]
    if who == "either":
        return CAS[step.sender % 2]
    return state.authority_of(tf.Role(who))


def _compose(kind: str, step: Send, state: tf.TransferState, now: datetime,
             new_id: str) -> TransferInbound:
    """The message of one step; for "*", the first variant (from ``step.variant`` on) and
    sender the lifecycle accepts, so random histories get somewhere."""
    variants = _bodies(kind, now.date())
    reply = state.applied[step.reply % len(state.applied)]
    reuse = step.duplicate and step.kind != "*"
    tries = len(variants) * 2 if step.kind == "*" else 1
    m: TransferInbound | None = None
    for i in range(tries):
        sender = _sender(kind, Send(step.kind, step.pick, step.sender + i // len(variants),
                                    step.variant, step.reply, step.duplicate), state)
        recipient = state.counterpart(sender) if sender in CAS else (
            AE_MFA if sender == KZ_MFA else KZ_MFA)
        m = message(kind, sender, recipient, variants[(step.variant + i) % len(variants)],
                    message_id=reply if reuse else new_id, request_id=state.request_id,
                    sent_at=now, in_reply_to=reply if step.reply % 3 else None)
        if not tf.check(state, PROFILE, m):
            break
    assert m is not None
    return m


def _check_invariants(state: tf.TransferState, now: Any) -> None:
    assert len(state.applied) == len(set(state.applied))
    for d in state.dispatches:
        assert [h.by for h in d.hops] == d.route[: len(d.hops)]
        assert all(a.to == b.by for a, b in itertools.pairwise(d.hops))
        assert (d.delivered_at is not None) == (len(d.hops) == len(d.route) - 1)
    if state.overdue:
        assert any(d.open and d.overdue and d.due <= now for d in state.deadlines)
    if state.status in tf.BEFORE_AGREEMENT:
        received = state.received_at is not None
        missing = bool(tf.missing_documents(state, PROFILE))
        assert (state.status is S.REQUESTED) == (not received)
        assert (state.status is S.DOCUMENTS_REQUESTED) == (received and missing)
    if state.status in tf.AFTER_TRANSFER | {S.AGREED, S.HANDOVER_ARRANGED}:
        assert all(c.status in ("met", "waived") for c in state.conditions), state.conditions
    entries = [e for e in state.timeline if e.event.startswith("transfer_")]
    assert all(e.hop for e in entries), "a message without its first hop"


def _run(body: dict[str, Any], history: list[Send | Relay | Wait]) -> None:
    ids = (f"msg-{i:06d}" for i in itertools.count())
    opening = message("transfer_request", KZ, AE, body, message_id=next(ids), sent_at=T0)
    tr = tf.open_transfer(PROFILE, opening, T0)  # type: ignore[arg-type]
    state, now = tr.state, T0
    seen = {n.message_id for n in tr.notices}
    assert len(seen) == len(tr.notices)
    for step in history:
        before = state
        notices = []
        if isinstance(step, Wait):
            now += timedelta(hours=step.hours)
            tr = tf.advance(state, PROFILE, now)
            state, notices = tr.state, tr.notices
            due = tf.next_due(state, PROFILE)
            assert due is None or due > now
        else:
            if isinstance(step, Relay):
                open_ = [d for d in state.dispatches if d.next_hop is not None]
                if not open_:
                    continue
                d = open_[step.pick % len(open_)]
                hop = d.next_hop
                assert hop is not None
                frm = RELAYS[(RELAYS.index(hop[0]) + 1) % 2] if step.wrong else hop[0]
                m = message("transfer_relay", frm, hop[1],
                            {"relayed_message_id": d.message_id}, message_id=next(ids),
                            request_id=state.request_id, sent_at=now)
            else:
                if step.kind == "*":
                    # withdrawal and refusal end a run: leave them to the plain draws
                    allowed = [k for k in KINDS if state.status in tf.ALLOWED_FROM[k]
                               and k not in ("transfer_withdrawal", "transfer_refusal")] or KINDS
                    kind = allowed[step.pick % len(allowed)]
                else:
                    kind = step.kind
                m = _compose(kind, step, state, now, next(ids))
            problems = tf.check(state, PROFILE, m)
            if problems:
                OUTCOMES["rejected"] += 1
                with pytest.raises(Rejected) as refused:
                    tf.apply(state, PROFILE, m, now)
                assert refused.value.problems == problems
            else:
                OUTCOMES["accepted"] += 1
                tr = tf.apply(state, PROFILE, m, now)
                state, notices = tr.state, tr.notices
                assert state.applied[-1] == m.message_id
                if before.final:
                    assert m.kind == "transfer_relay", f"{m.kind} accepted on a final transfer"
                    assert state.status is before.status
        for n in notices:
            assert n.recipient in (*CAS, *RELAYS), n
            assert n.message_id not in seen, f"notice id repeated: {n}"
            seen.add(n.message_id)
        _check_invariants(state, now)
        REACHED.add(state.status)


HISTORIES = {
    "body": st.sampled_from([
        request_body(),
        request_body(documents=[doc(c) for c in SS_DOCS if c != "final_judgment"]),
        request_body(sentence=sentence(release_date="2025-08-01")),
        request_body(initiative="convicted_person", wish_expressed_on="2025-01-20"),
    ]),
    "history": st.lists(steps, min_size=20, max_size=100),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**HISTORIES)
def test_random_histories_keep_invariants(body: dict[str, Any],
                                          history: list[Send | Relay | Wait]) -> None:
    _run(body, history)


def test_random_histories_reach_every_status() -> None:
    """The generator is not vacuous: a fixed sample reaches every state, and messages are
    both accepted and refused."""
    REACHED.clear()
    OUTCOMES.clear()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(**HISTORIES)
    def sample(body: dict[str, Any], history: list[Send | Relay | Wait]) -> None:
        _run(body, history)

    sample()
    # Closed is an operator's action, not a message: tests/test_transfer_operator_actions.py.
    assert set(S) - {S.CLOSED} - REACHED == set(), f"never reached: {set(S) - REACHED}"
    assert OUTCOMES["accepted"] > 100 and OUTCOMES["rejected"] > 100

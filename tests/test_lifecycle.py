"""The pure request lifecycle (SCO 2010, art. 5–7): sending, every transition, time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.factories import message, new_request_id, request_body
from treatyflow.constants import HUB_SENDER
from treatyflow.schemas.messages import (
    CONSENT_KINDS,
    REQUESTED_KINDS,
    REQUESTER_KINDS,
    InboundMessage,
    NoticeMessage,
    parse_outbound,
)
from treatyflow.schemas.treaty import ClockRule, Deadlines, load_profile
from treatyflow.workflows import lifecycle
from treatyflow.workflows.lifecycle import (
    FINAL,
    Rejected,
    RequestState,
    Status,
    Transition,
    advance,
    apply,
    check,
    check_new_request,
    envelope_for,
    next_due,
    open_request,
)

PROFILE = load_profile("sco-2010")
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)

RU, KZ = "RU-MIA", "KZ-GPO"  # requesting, requested
KZ2, KZ3 = "KZ-MIA", "KZ-SPS"  # other competent authorities of the requested state
CN = "CN-MPS"  # a competent authority that is no party to the request

OPEN = frozenset(Status) - FINAL
WORKING = frozenset({Status.RECEIVED, Status.IN_EXECUTION})
# The transition table as specified (docs/design.md; art. 5.2, 5.3, 6.1–6.9), written out here
# rather than read from lifecycle._ALLOWED_FROM, so a change to the table fails a test.
ALLOWED_FROM: dict[str, frozenset[Status]] = {
    "confirmation": OPEN,
    "receipt": frozenset({Status.SENT, Status.FORWARDED}),
    "clarification_request": WORKING,
    "clarification": frozenset({Status.CLARIFICATION_REQUESTED}),
    "delay": WORKING,
    "forward": WORKING | {Status.SENT, Status.FORWARDED},
    "deferral": WORKING,
    "resumption": frozenset({Status.DEFERRED}),
    "refusal": WORKING | {Status.DEFERRED, Status.CLARIFICATION_REQUESTED},
    "execution_report": WORKING,
    "withdrawal": OPEN,
}
MESSAGE_KINDS = sorted(ALLOWED_FROM)


def default_body(kind: str, state: RequestState) -> dict[str, Any]:
    """A valid body of each kind; a forward goes to a KZ authority that never had it."""
    had = {state.requested, *state.forwarded_from}
    target = next(a.id for a in PROFILE.authorities if a.state == "KZ" and a.id not in had)
    return {
        "request": request_body(),
        "confirmation": {"request": request_body(oral=False, urgent=True)},
        "receipt": {},
        "clarification_request": {
            "topic": "additional_information",
            "questions": "Which accounts, and for which period?",
        },
        "clarification": {"answer": "Account 123, January to June 2025."},
        "delay": {"reason": "The bank needs two more weeks to reply."},
        "forward": {"to_authority": target, "reason": "Banking records are its competence"},
        "deferral": {"grounds": ["security"], "reason": "An operation is under way now."},
        "resumption": {},
        "refusal": {
            "extent": "whole",
            "grounds": ["contrary_to_law"],
            "reason": "Bank secrecy law bars disclosure.",
        },
        "execution_report": {
            "extent": "full",
            "summary": "Statements of account 123 attached.",
            "confidentiality": "confidential",
        },
        "withdrawal": {"reason": "The case was closed"},
    }[kind]


_AUTO: Any = object()


def msg(
    state: RequestState,
    kind: str,
    *,
    sender: str | None = None,
    recipient: str | None = None,
    body: dict[str, Any] | None = None,
    in_reply_to: str | None = _AUTO,
    message_id: str | None = None,
    request_id: str | None = None,
) -> InboundMessage:
    """A message on ``state``'s request, from the side that may send ``kind`` by default."""
    if sender is None:
        sender = state.requesting if kind in REQUESTER_KINDS else state.requested
    if recipient is None:
        recipient = state.requested if sender == state.requesting else state.requesting
    if in_reply_to is _AUTO:
        in_reply_to = state.open_clarification if kind == "clarification" else None
    return message(
        kind,
        request_id=request_id or state.request_id,
        sender=sender,
        recipient=recipient,
        body=default_body(kind, state) if body is None else body,
        in_reply_to=in_reply_to,
        message_id=message_id,
    )


def opened(
    *, at: datetime = T0, time_scale: float = 1.0, sender: str = RU, recipient: str = KZ,
    **body: Any,
) -> Transition:
    req = message("request", request_id=new_request_id(), sender=sender, recipient=recipient,
                  body=request_body(**body))
    return open_request(PROFILE, req, at, time_scale=time_scale)


def step(state: RequestState, kind: str, at: datetime, **kwargs: Any) -> Transition:
    return apply(state, PROFILE, msg(state, kind, **kwargs), at)


def run(state: RequestState, *kinds: str, at: datetime = T0) -> RequestState:
    for kind in kinds:
        state = step(state, kind, at).state
    return state


def state_in(status: Status, *, oral: bool = False) -> RequestState:
    """A request brought into ``status`` by real messages (and time, for ``lapsed``)."""
    body: dict[str, Any] = {"oral": True, "urgent": True, "signed_by": ...} if oral else {}
    if status is Status.LAPSED:
        body = {"oral": True, "urgent": True, "signed_by": ...}
    fresh = opened(**body).state
    paths: dict[Status, tuple[str, ...]] = {
        Status.SENT: (),
        Status.RECEIVED: ("receipt",),
        Status.CLARIFICATION_REQUESTED: ("receipt", "clarification_request"),
        Status.DEFERRED: ("receipt", "deferral"),
        Status.IN_EXECUTION: ("receipt", "delay"),
        Status.FORWARDED: ("forward",),
        Status.EXECUTED: ("receipt", "execution_report"),
        Status.REFUSED: ("receipt", "refusal"),
        Status.WITHDRAWN: ("withdrawal",),
        Status.LAPSED: (),
        Status.CLOSED: ("receipt",),
    }
    state = run(fresh, *paths[status])
    if status is Status.LAPSED:
        state = advance(state, PROFILE, T0 + 72 * HOUR).state
    if status is Status.CLOSED:
        state = lifecycle.apply_operator(state, PROFILE, lifecycle.OperatorAction(
            action="close", operator="ops", reason="Requesting side stopped answering."),
            T0).state
    assert state.status is status
    return state


def events(notices: list[lifecycle.Notice]) -> list[tuple[str, str]]:
    return [(n.event, n.recipient) for n in notices]


# --- 1. sending a new request -----------------------------------------------------------


def test_valid_request_opens_sent_and_notifies_both_sides() -> None:
    tr = opened()
    s = tr.state
    assert s.status is Status.SENT
    assert (s.requesting, s.requested) == (RU, KZ)
    assert s.deadline is None and not s.overdue and not s.oral_unconfirmed
    assert events(tr.notices) == [("request_delivered", KZ), ("request_accepted", RU)]
    delivered = tr.notices[0]
    assert delivered.detail["request"]["purpose"].startswith("Investigation")
    assert delivered.about_message_id == s.applied[0] == s.last_message_id
    # Unacknowledged, receipt is deemed 5 days after delivery (profile policy, art. 6.1).
    assert next_due(s, PROFILE) == s.opened_at + timedelta(days=5)


@pytest.mark.parametrize(
    ("sender", "recipient", "overrides", "sent_at", "article"),
    [
        pytest.param("KZ-XXX", KZ, {}, None, "art. 2: KZ-XXX", id="unknown-sender"),
        pytest.param(RU, "KZ-FBI", {}, None, "art. 2: KZ-FBI", id="unknown-recipient"),
        pytest.param(KZ, KZ2, {}, None, "art. 2, 5.1: both authorities belong to KZ",
                     id="same-state"),
        pytest.param(RU, KZ, {"language": "en"}, None, "art. 11:", id="language-en"),
        pytest.param(RU, KZ, {"language": "kk"}, None, "art. 11:", id="language-kk"),
        pytest.param(RU, KZ, {"oral": True, "urgent": False, "signed_by": ...}, None,
                     "art. 5.2:", id="oral-not-urgent"),
        pytest.param(RU, KZ, {"signed_by": ...}, None, "art. 5.5:", id="unsigned"),
        pytest.param(RU, KZ, {"signed_by": {"name": "B. Clerk", "position": "clerk"}}, None,
                     "art. 5.5: signed by a 'clerk'", id="signed-by-clerk"),
        pytest.param(RU, KZ, {"form_of_cooperation": "extradition"}, None, "art. 3:",
                     id="unknown-form"),
        pytest.param(RU, KZ, {"crime_category": "jaywalking"}, None, "art. 1:",
                     id="unknown-crime"),
        pytest.param(RU, KZ, {}, datetime(2011, 6, 16, 23, 0, tzinfo=UTC), "art. 12:",
                     id="before-entry-into-force"),
    ],
)
def test_new_request_refused_with_its_article(
    sender: str, recipient: str, overrides: dict[str, Any], sent_at: datetime | None,
    article: str,
) -> None:
    req = message("request", request_id=new_request_id(), sender=sender, recipient=recipient,
                  body=request_body(**overrides), sent_at=sent_at)
    problems = check_new_request(PROFILE, req)
    assert len(problems) == 1, problems
    assert problems[0].startswith(article), problems
    with pytest.raises(Rejected) as refused:
        open_request(PROFILE, req, T0)
    assert refused.value.problems == problems


@pytest.mark.parametrize(
    ("sender", "recipient", "overrides", "sent_at"),
    [
        pytest.param(CN, RU, {"language": "zh"}, None, id="chinese"),
        pytest.param(RU, KZ, {"signed_by": {"name": "D. Deputy", "position": "deputy"}}, None,
                     id="signed-by-deputy"),
        pytest.param(RU, KZ, {"oral": True, "urgent": True, "signed_by": ...}, None,
                     id="oral-urgent-unsigned"),
        pytest.param(RU, KZ, {"crime_category": None}, None, id="no-crime-category"),
        pytest.param(RU, KZ, {}, datetime(2011, 6, 17, 0, 0, tzinfo=UTC),
                     id="on-entry-into-force"),
    ],
)
def test_new_request_accepted_at_the_edges(
    sender: str, recipient: str, overrides: dict[str, Any], sent_at: datetime | None
) -> None:
    req = message("request", request_id=new_request_id(), sender=sender, recipient=recipient,
                  body=request_body(**overrides), sent_at=sent_at)
    assert check_new_request(PROFILE, req) == []
    assert open_request(PROFILE, req, T0).state.status is Status.SENT


@pytest.mark.parametrize(
    ("sender", "recipient", "overrides", "sent_at", "articles"),
    [
        pytest.param(
            KZ, KZ2,
            {"language": "en", "form_of_cooperation": "extradition",
             "crime_category": "jaywalking",
             "signed_by": {"name": "B. Clerk", "position": "clerk"}},
            None, ["art. 2, 5.1", "art. 11:", "art. 5.5:", "art. 3:", "art. 1:"],
            id="five-faults",
        ),
        pytest.param("KZ-XXX", "RU-YYY", {}, None, ["art. 2: KZ-XXX", "art. 2: RU-YYY"],
                     id="both-authorities-unknown"),
        pytest.param(RU, KZ, {"oral": True, "urgent": False, "signed_by": ...,
                              "language": "de"},
                     datetime(2010, 6, 11, tzinfo=UTC), ["art. 12:", "art. 11:", "art. 5.2:"],
                     id="oral-german-before-force"),
        pytest.param(RU, KZ, {"signed_by": ..., "form_of_cooperation": "x"}, None,
                     ["art. 5.5:", "art. 3:"], id="unsigned-unknown-form"),
    ],
)
def test_request_with_several_faults_lists_each(
    sender: str, recipient: str, overrides: dict[str, Any], sent_at: datetime | None,
    articles: list[str],
) -> None:
    req = message("request", request_id=new_request_id(), sender=sender, recipient=recipient,
                  body=request_body(**overrides), sent_at=sent_at)
    problems = check_new_request(PROFILE, req)
    assert len(problems) == len(articles), problems
    for article in articles:
        assert any(p.startswith(article) for p in problems), (article, problems)
    with pytest.raises(Rejected) as refused:
        open_request(PROFILE, req, T0)
    assert refused.value.problems == problems


def test_request_under_another_treaty_refused() -> None:
    req = message("request", request_id=new_request_id(), sender=RU, recipient=KZ,
                  treaty_id="cis-1993")
    assert any("does not match" in p for p in check_new_request(PROFILE, req))


def test_request_after_termination_refused_art_13() -> None:
    ended = PROFILE.model_copy(update={"termination_notice_date": T0.date()})
    req = message("request", request_id=new_request_id(), sender=RU, recipient=KZ, sent_at=T0)
    problems = check_new_request(ended, req)
    assert len(problems) == 1 and problems[0].startswith("art. 13")
    before = message("request", request_id=new_request_id(), sender=RU, recipient=KZ,
                     sent_at=T0 - DAY)
    assert check_new_request(ended, before) == []


def test_oral_request_must_be_confirmed_within_72_hours() -> None:
    tr = opened(oral=True, urgent=True, signed_by=..., time_scale=0.5)
    assert tr.state.oral_unconfirmed
    assert tr.state.confirm_by == T0 + 36 * HOUR
    assert all(n.detail["confirm_by"] == (T0 + 36 * HOUR).isoformat() for n in tr.notices)


# --- 2. the transition table: every kind in every status --------------------------------

NEXT_STATUS = {
    "receipt": Status.RECEIVED,
    "clarification_request": Status.CLARIFICATION_REQUESTED,
    "clarification": Status.IN_EXECUTION,
    "delay": Status.IN_EXECUTION,
    "forward": Status.FORWARDED,
    "deferral": Status.DEFERRED,
    "resumption": Status.IN_EXECUTION,
    "refusal": Status.REFUSED,
    "execution_report": Status.EXECUTED,
    "withdrawal": Status.WITHDRAWN,
}


@pytest.mark.parametrize("status", list(Status), ids=str)
@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_transition_grid(kind: str, status: Status) -> None:
    state = state_in(status, oral=kind == "confirmation")
    m = msg(state, kind)
    problems = check(state, PROFILE, m)
    allowed = status in ALLOWED_FROM[kind]
    assert (problems == []) is allowed, problems
    if not allowed:
        expected = "already" if status in FINAL else f"not allowed while the request is {status}"
        assert any(expected in p for p in problems), problems
        with pytest.raises(Rejected):
            apply(state, PROFILE, m, T0 + HOUR)
        return
    after = apply(state, PROFILE, m, T0 + HOUR).state
    assert after.status is NEXT_STATUS.get(kind, status)
    assert after.applied[-1] == m.message_id and after.timeline[-1].event == kind


def test_grid_covers_every_kind_but_request_and_the_art_7_kinds() -> None:
    # consent messages and transfers concern results: section 8 tests them
    assert set(MESSAGE_KINDS) == (REQUESTER_KINDS | REQUESTED_KINDS) - {"request"} - (
        CONSENT_KINDS)


# --- 3. who may send what ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(REQUESTER_KINDS - {"request"} - CONSENT_KINDS))
def test_requester_kinds_refused_from_requested(kind: str) -> None:
    state = state_in(Status.CLARIFICATION_REQUESTED, oral=True)
    assert check(state, PROFILE, msg(state, kind)) == []
    problems = check(state, PROFILE, msg(state, kind, sender=KZ))
    assert problems == [f"only the requesting authority {RU} may send a {kind}"]


@pytest.mark.parametrize("kind", sorted(REQUESTED_KINDS - CONSENT_KINDS))
def test_requested_kinds_refused_from_requester(kind: str) -> None:
    state = state_in(Status.SENT if kind in ("receipt", "forward") else Status.RECEIVED)
    if kind == "resumption":
        state = state_in(Status.DEFERRED)
    assert check(state, PROFILE, msg(state, kind)) == []
    problems = check(state, PROFILE, msg(state, kind, sender=RU))
    assert problems == [f"only the requested authority {KZ} may send a {kind}"]


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_third_authority_is_not_a_party(kind: str) -> None:
    state = state_in(Status.RECEIVED)
    problems = check(state, PROFILE, msg(state, kind, sender=CN, recipient=KZ))
    assert problems == [f"{CN} is not a party to request {state.request_id}"]


@pytest.mark.parametrize("recipient", [CN, KZ2, HUB_SENDER, KZ])
def test_wrong_recipient_refused(recipient: str) -> None:
    state = state_in(Status.SENT)
    problems = check(state, PROFILE, msg(state, "receipt", recipient=recipient))
    assert problems == [f"recipient must be {RU}, not {recipient}"]
    with pytest.raises(Rejected):
        step(state, "receipt", T0, recipient=recipient)


def test_duplicate_message_id_refused() -> None:
    state = state_in(Status.SENT)
    receipt = msg(state, "receipt")
    after = apply(state, PROFILE, receipt, T0).state
    problems = check(after, PROFILE, receipt)
    assert problems == [f"duplicate: message {receipt.message_id} was already applied"]
    # the same id on another kind is still a duplicate
    delay = msg(after, "delay", message_id=receipt.message_id)
    assert check(after, PROFILE, delay)[0].startswith("duplicate")
    # and the request's own id too
    again = msg(after, "withdrawal", message_id=after.applied[0])
    assert check(after, PROFILE, again)[0].startswith("duplicate")


def test_second_request_with_same_id_refused() -> None:
    state = state_in(Status.SENT)
    problems = check(state, PROFILE, msg(state, "request"))
    assert problems == [f"request {state.request_id} already exists (state sent)"]


def test_message_about_another_request_refused() -> None:
    state = state_in(Status.SENT)
    problems = check(state, PROFILE, msg(state, "receipt", request_id=new_request_id()))
    assert len(problems) == 1 and "not sco-2010/" + state.request_id in problems[0]


@pytest.mark.parametrize("status", sorted(FINAL), ids=str)
@pytest.mark.parametrize("kind", ["withdrawal", "receipt", "execution_report", "confirmation"])
def test_nothing_accepted_after_final(status: Status, kind: str) -> None:
    state = state_in(status, oral=True)
    problems = check(state, PROFILE, msg(state, kind))
    assert problems == [
        f"request {state.request_id} is already {status}; nothing more is accepted"
    ]
    with pytest.raises(Rejected):
        apply(state, PROFILE, msg(state, kind), T0 + DAY)


# --- 4. semantics of each message ----------------------------------------------------------


def test_receipt_starts_thirty_day_clock_and_tells_requester() -> None:
    state = state_in(Status.SENT)
    tr = step(state, "receipt", T0 + 2 * DAY)
    assert tr.state.status is Status.RECEIVED
    assert tr.state.received_at == T0 + 2 * DAY
    assert tr.state.deadline == T0 + 32 * DAY
    assert events(tr.notices) == [("received", RU)]


@pytest.mark.parametrize("scale", [0.001, 0.5, 2.0])
def test_deadline_scaled_by_time_scale(scale: float) -> None:
    state = opened(time_scale=scale).state
    tr = step(state, "receipt", T0)
    assert tr.state.deadline == T0 + 30 * DAY * scale
    assert next_due(tr.state, PROFILE) == T0 + 23 * DAY * scale


def test_clarification_pauses_clock_and_answer_extends_deadline() -> None:
    assert PROFILE.deadlines.clock_during_clarification is ClockRule.PAUSED
    state = run(state_in(Status.SENT), "receipt")
    assert state.deadline == T0 + 30 * DAY
    asked = step(state, "clarification_request", T0 + 5 * DAY)
    s = asked.state
    assert s.status is Status.CLARIFICATION_REQUESTED
    assert s.paused_at == T0 + 5 * DAY and not s.clock_running
    assert s.open_clarification == s.last_message_id
    assert events(asked.notices) == [("clarification_requested", RU)]
    assert asked.notices[0].detail["topic"] == "additional_information"
    answered = step(s, "clarification", T0 + 9 * DAY)
    s = answered.state
    assert s.status is Status.IN_EXECUTION
    assert s.deadline == T0 + 34 * DAY and s.paused_at is None and s.open_clarification is None
    assert events(answered.notices) == [("clarification_provided", KZ)]
    assert answered.notices[0].detail["answer"].startswith("Account 123")


def test_clarification_with_running_clock_keeps_deadline() -> None:
    runs = PROFILE.model_copy(
        update={"deadlines": Deadlines(clock_during_clarification=ClockRule.RUNS)}
    )
    state = run(state_in(Status.SENT), "receipt")
    asked = apply(state, runs, msg(state, "clarification_request"), T0 + 5 * DAY).state
    assert asked.paused_at is None and asked.clock_running
    answered = apply(asked, runs, msg(asked, "clarification"), T0 + 9 * DAY).state
    assert answered.deadline == T0 + 30 * DAY


@pytest.mark.parametrize("reply", ["none", "other-message", "made-up"])
def test_clarification_must_reply_to_the_open_request(reply: str) -> None:
    state = state_in(Status.CLARIFICATION_REQUESTED)
    in_reply_to = {
        "none": None,
        "other-message": state.applied[1],  # the receipt
        "made-up": "not-the-question-1",
    }[reply]
    problems = check(state, PROFILE, msg(state, "clarification", in_reply_to=in_reply_to))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"a clarification must reply to the open clarification request {state.open_clarification}"
    )
    assert check(state, PROFILE, msg(state, "clarification",
                                     in_reply_to=state.open_clarification)) == []


def test_second_clarification_round_extends_again() -> None:
    state = run(state_in(Status.SENT), "receipt")
    state = step(state, "clarification_request", T0 + DAY).state
    state = step(state, "clarification", T0 + 3 * DAY).state
    state = step(state, "clarification_request", T0 + 10 * DAY).state
    state = step(state, "clarification", T0 + 15 * DAY).state
    assert state.deadline == T0 + 37 * DAY


def test_deferral_pauses_and_resumption_extends() -> None:
    state = run(state_in(Status.SENT), "receipt")
    deferred = step(state, "deferral", T0 + 4 * DAY)
    assert deferred.state.status is Status.DEFERRED
    assert deferred.state.grounds == ["security"]
    assert events(deferred.notices) == [("deferred", RU)]
    assert deferred.notices[0].detail["grounds"] == ["security"]
    assert next_due(deferred.state, PROFILE) is None
    resumed = step(deferred.state, "resumption", T0 + 14 * DAY)
    assert resumed.state.status is Status.IN_EXECUTION
    assert resumed.state.deadline == T0 + 40 * DAY
    assert events(resumed.notices) == [("resumed", RU)]


@pytest.mark.parametrize(
    ("kind", "grounds", "expected"),
    [
        pytest.param("deferral", ["no_offence"], "art. 6.8: 'no_offence' allows refusal",
                     id="deferral-6.8"),
        pytest.param("deferral", ["security", "no_offence"], "art. 6.8", id="deferral-mixed"),
        pytest.param("deferral", ["weather"], "art. 6.7/6.8: unknown ground 'weather'",
                     id="deferral-unknown"),
        pytest.param("refusal", ["weather"], "art. 6.7/6.8: unknown ground 'weather'",
                     id="refusal-unknown"),
        pytest.param("refusal", ["no_offence", "politics"], "art. 6.7/6.8: unknown ground",
                     id="refusal-one-unknown"),
    ],
)
def test_grounds_checked(kind: str, grounds: list[str], expected: str) -> None:
    state = state_in(Status.RECEIVED)
    body = default_body(kind, state) | {"grounds": grounds}
    problems = check(state, PROFILE, msg(state, kind, body=body))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


@pytest.mark.parametrize("ground", [g.code for g in PROFILE.refusal_grounds])
def test_refusal_allowed_on_every_ground(ground: str) -> None:
    state = state_in(Status.RECEIVED)
    body = default_body("refusal", state) | {"grounds": [ground]}
    tr = apply(state, PROFILE, msg(state, "refusal", body=body), T0 + DAY)
    assert tr.state.status is Status.REFUSED and tr.state.outcome == "whole"
    assert tr.state.grounds == [ground]
    assert events(tr.notices) == [("refused", RU)]
    assert tr.notices[0].detail["reason"] == "Bank secrecy law bars disclosure."


@pytest.mark.parametrize(
    ("kind", "field"),
    [("refusal", "reason"), ("deferral", "reason"), ("delay", "reason")],
)
def test_short_reason_is_a_schema_error(kind: str, field: str) -> None:
    state = state_in(Status.RECEIVED)
    body = default_body(kind, state) | {field: "Because."}
    with pytest.raises(ValidationError, match="at least 10 characters"):
        msg(state, kind, body=body)


def _refuse_part(state: RequestState, at: datetime = T0 + DAY) -> Transition:
    body = default_body("refusal", state) | {"extent": "part", "refused_part": "bank records"}
    return apply(state, PROFILE, msg(state, "refusal", body=body), at)


def test_refusal_in_part_keeps_request_open_and_requires_partial_report() -> None:
    tr = _refuse_part(state_in(Status.RECEIVED))
    s = tr.state
    assert s.status is Status.IN_EXECUTION and s.refused_part == "bank records"
    assert events(tr.notices) == [("refused_in_part", RU)]
    assert tr.notices[0].detail["refused_part"] == "bank records"
    full = msg(s, "execution_report")
    problems = check(s, PROFILE, full)
    assert problems == [
        "part of the request was refused (bank records); the execution report must be partial"
    ]
    partial_body = default_body("execution_report", s) | {"extent": "partial"}
    done = apply(s, PROFILE, msg(s, "execution_report", body=partial_body), T0 + 5 * DAY)
    assert done.state.status is Status.EXECUTED and done.state.outcome == "partial"
    assert events(done.notices) == [("executed", RU)]
    assert done.notices[0].detail["extent"] == "partial"


def test_refusal_in_part_must_name_the_part_and_happens_once() -> None:
    state = state_in(Status.RECEIVED)
    body = default_body("refusal", state) | {"extent": "part"}
    assert check(state, PROFILE, msg(state, "refusal", body=body)) == [
        "art. 6.9: a refusal in part must say which part"
    ]
    once = _refuse_part(state).state
    body = default_body("refusal", once) | {"extent": "part", "refused_part": "phone records"}
    assert check(once, PROFILE, msg(once, "refusal", body=body)) == [
        "a part of this request was already refused"
    ]
    # the rest may still be refused as a whole
    assert step(once, "refusal", T0 + 2 * DAY).state.status is Status.REFUSED


def test_refusal_in_part_while_deferred_stays_deferred() -> None:
    state = run(state_in(Status.SENT), "receipt")
    state = step(state, "deferral", T0 + DAY).state
    s = _refuse_part(state, T0 + 2 * DAY).state
    assert s.status is Status.DEFERRED and s.paused_at == T0 + DAY
    assert step(s, "resumption", T0 + 3 * DAY).state.deadline == T0 + 32 * DAY


def test_refusal_in_part_while_clarification_open_still_awaits_the_answer() -> None:
    state = run(state_in(Status.SENT), "receipt")
    state = step(state, "clarification_request", T0 + DAY).state
    question = state.open_clarification
    s = _refuse_part(state, T0 + 2 * DAY).state
    assert s.refused_part == "bank records"
    assert s.status is Status.CLARIFICATION_REQUESTED and s.open_clarification == question
    assert next_due(s, PROFILE) is None  # clock still paused
    answered = step(s, "clarification", T0 + 4 * DAY, in_reply_to=question).state
    assert answered.status is Status.IN_EXECUTION
    assert answered.deadline == T0 + 33 * DAY


def test_delay_moves_to_in_execution_and_tells_requester() -> None:
    tr = step(state_in(Status.RECEIVED), "delay", T0 + DAY)
    assert tr.state.status is Status.IN_EXECUTION
    assert tr.state.deadline == T0 + 30 * DAY  # a delay notice does not stop the clock
    assert events(tr.notices) == [("delayed", RU)]
    assert tr.notices[0].detail["reason"].startswith("The bank")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("UZ-MIA", "art. 6.3: a request is forwarded within the same state (KZ)",
                     id="other-state"),
        pytest.param(RU, "art. 6.3: a request is forwarded within the same state (KZ)",
                     id="requesting-state"),
        pytest.param(KZ, f"art. 6.3: {KZ} already had this request", id="itself"),
        pytest.param("KZ-ABC", "art. 6.3: KZ-ABC is not a competent authority", id="unknown"),
    ],
)
def test_forward_refused(target: str, expected: str) -> None:
    state = state_in(Status.RECEIVED)
    body = {"to_authority": target, "reason": "Not competent"}
    problems = check(state, PROFILE, msg(state, "forward", body=body))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_forward_back_to_a_previous_authority_refused() -> None:
    state = state_in(Status.FORWARDED)
    body = {"to_authority": KZ, "reason": "Not competent either"}
    problems = check(state, PROFILE, msg(state, "forward", body=body))
    assert problems == [f"art. 6.3: {KZ} already had this request"]


def test_forward_within_state_hands_over_and_restarts_clock() -> None:
    state = run(state_in(Status.SENT), "receipt")
    state = advance(state, PROFILE, T0 + 31 * DAY).state
    assert state.overdue
    fwd = step(state, "forward", T0 + 31 * DAY, body={"to_authority": KZ2,
                                                       "reason": "Police matter"})
    s = fwd.state
    assert s.status is Status.FORWARDED and s.requested == KZ2 and s.forwarded_from == [KZ]
    assert s.deadline is None and s.received_at is None and not s.overdue
    # The new authority's receipt is deemed 5 days after delivery if it does not answer.
    assert next_due(s, PROFILE) == T0 + 36 * DAY
    assert events(fwd.notices) == [("forwarded", RU), ("request_delivered", KZ2)]
    assert fwd.notices[0].detail == {"to_authority": KZ2, "reason": "Police matter"}
    assert fwd.notices[1].detail["forwarded_by"] == KZ
    assert fwd.notices[1].detail["request"]["facts"].startswith("Between March")
    # the old authority is no longer a party; the new one is
    assert check(s, PROFILE, msg(s, "receipt", sender=KZ))[0].endswith(
        f"is not a party to request {s.request_id}"
    )
    received = step(s, "receipt", T0 + 40 * DAY)
    assert received.state.deadline == T0 + 70 * DAY and not received.state.overdue
    assert events(received.notices) == [("received", RU)]
    # and a second forward goes on within the state
    again = step(received.state, "forward", T0 + 41 * DAY)
    assert again.state.requested == KZ3 and again.state.forwarded_from == [KZ, KZ2]


@pytest.mark.parametrize(
    "status",
    sorted(set(Status) - FINAL),
    ids=str,
)
def test_withdrawal_from_any_open_state(status: Status) -> None:
    state = state_in(status)
    tr = step(state, "withdrawal", T0 + 2 * DAY)
    assert tr.state.status is Status.WITHDRAWN and tr.state.final
    assert events(tr.notices) == [("withdrawn", state.requested)]
    assert tr.notices[0].detail == {"reason": "The case was closed"}
    assert next_due(tr.state, PROFILE) is None


def test_confirmation_replaces_request_and_tells_requested() -> None:
    state = state_in(Status.SENT, oral=True)
    body = {"request": request_body(urgent=True, assistance_requested="Also account 456.")}
    tr = step(state, "confirmation", T0 + 10 * HOUR, body=body)
    s = tr.state
    assert not s.oral_unconfirmed and s.confirm_by is None
    assert s.request.assistance_requested == "Also account 456." and not s.request.oral
    assert events(tr.notices) == [("request_confirmed", KZ)]
    # nothing left to confirm
    assert check(s, PROFILE, msg(s, "confirmation"))[-1].startswith(
        "art. 5.2: there is no unconfirmed oral request"
    )


@pytest.mark.parametrize(
    ("overrides", "article"),
    [
        pytest.param({"signed_by": ...}, "art. 5.5:", id="unsigned"),
        pytest.param({"oral": True}, "art. 5.2: a written confirmation", id="still-oral"),
        pytest.param({"language": "en"}, "art. 11:", id="english"),
    ],
)
def test_confirmation_content_checked(overrides: dict[str, Any], article: str) -> None:
    state = state_in(Status.SENT, oral=True)
    body = {"request": request_body(urgent=True, **overrides)}
    problems = check(state, PROFILE, msg(state, "confirmation", body=body))
    assert len(problems) == 1 and problems[0].startswith(article), problems


def test_confirmation_of_written_request_refused() -> None:
    state = state_in(Status.SENT)
    assert check(state, PROFILE, msg(state, "confirmation")) == [
        "art. 5.2: there is no unconfirmed oral request to confirm"
    ]


def test_apply_leaves_the_given_state_untouched() -> None:
    state = state_in(Status.RECEIVED)
    before = state.model_dump()
    step(state, "clarification_request", T0 + DAY)
    advance(state, PROFILE, T0 + 40 * DAY)
    assert state.model_dump() == before


# --- 5. the passing of time ---------------------------------------------------------------


def test_reminders_then_overdue_to_both_sides_once_each() -> None:
    s = run(state_in(Status.SENT), "receipt")
    assert next_due(s, PROFILE) == T0 + 23 * DAY
    assert advance(s, PROFILE, T0 + 23 * DAY - HOUR).notices == []

    tr = advance(s, PROFILE, T0 + 23 * DAY)
    assert events(tr.notices) == [("deadline_reminder", RU), ("deadline_reminder", KZ)]
    assert all(n.detail == {"days_left": 7} for n in tr.notices)
    s = tr.state
    assert advance(s, PROFILE, T0 + 25 * DAY).notices == []  # once only
    assert next_due(s, PROFILE) == T0 + 29 * DAY

    tr = advance(s, PROFILE, T0 + 29 * DAY + HOUR)
    assert events(tr.notices) == [("deadline_reminder", RU), ("deadline_reminder", KZ)]
    assert all(n.detail == {"days_left": 1} for n in tr.notices)
    s = tr.state
    assert next_due(s, PROFILE) == T0 + 30 * DAY
    assert not advance(s, PROFILE, T0 + 30 * DAY - timedelta(seconds=1)).state.overdue

    tr = advance(s, PROFILE, T0 + 30 * DAY)
    assert events(tr.notices) == [("overdue", RU), ("overdue", KZ)]
    s = tr.state
    assert s.overdue and s.status is Status.RECEIVED
    assert s.timeline[-1].event == "overdue" and s.timeline[-1].at == T0 + 30 * DAY
    assert next_due(s, PROFILE) is None
    assert advance(s, PROFILE, T0 + 90 * DAY).notices == []


def test_jump_past_deadline_sends_overdue_without_stale_reminders() -> None:
    s = run(state_in(Status.SENT), "receipt")
    tr = advance(s, PROFILE, T0 + 45 * DAY)
    assert events(tr.notices) == [("overdue", RU), ("overdue", KZ)]
    assert tr.state.overdue and sorted(tr.state.reminders_done) == [1, 7]
    assert next_due(tr.state, PROFILE) is None


def test_jump_between_reminders_sends_only_the_due_one() -> None:
    s = run(state_in(Status.SENT), "receipt")
    tr = advance(s, PROFILE, T0 + 26 * DAY)
    assert [n.detail["days_left"] for n in tr.notices] == [7, 7]
    assert next_due(tr.state, PROFILE) == T0 + 29 * DAY


def test_overdue_while_in_execution_keeps_status() -> None:
    s = run(state_in(Status.SENT), "receipt", "delay")
    s = advance(s, PROFILE, T0 + 30 * DAY).state
    assert s.overdue and s.status is Status.IN_EXECUTION
    # a late report still closes it
    done = step(s, "execution_report", T0 + 31 * DAY).state
    assert done.status is Status.EXECUTED
    # only the end of the art. 7 consent phase is still to come
    assert next_due(done, PROFILE) == T0 + (31 + 90) * DAY


def test_scaled_reminders_and_overdue() -> None:
    scale = 0.001
    s = step(opened(time_scale=scale).state, "receipt", T0).state
    tr = advance(s, PROFILE, T0 + 30 * DAY * scale)
    assert [e for e, _ in events(tr.notices)] == ["overdue", "overdue"]
    tr = advance(s, PROFILE, T0 + 29.5 * DAY * scale)
    assert [n.detail["days_left"] for n in tr.notices] == [7, 7, 1, 1]


@pytest.mark.parametrize("kind", ["clarification_request", "deferral"])
def test_no_deadline_event_while_paused(kind: str) -> None:
    s = run(state_in(Status.SENT), "receipt")
    s = step(s, kind, T0 + 20 * DAY).state
    assert next_due(s, PROFILE) is None
    tr = advance(s, PROFILE, T0 + 100 * DAY)
    assert tr.notices == [] and not tr.state.overdue
    # after the pause the remaining 10 days run again
    back = "clarification" if kind == "clarification_request" else "resumption"
    s = step(tr.state, back, T0 + 100 * DAY).state
    assert s.deadline == T0 + 110 * DAY
    assert next_due(s, PROFILE) == T0 + 103 * DAY


def test_oral_request_lapses_after_72_hours() -> None:
    s = opened(oral=True, urgent=True, signed_by=...).state
    assert next_due(s, PROFILE) == T0 + 72 * HOUR
    assert advance(s, PROFILE, T0 + 71 * HOUR).state.status is Status.SENT
    tr = advance(s, PROFILE, T0 + 72 * HOUR)
    assert tr.state.status is Status.LAPSED and tr.state.final
    assert events(tr.notices) == [("lapsed", RU), ("lapsed", KZ)]
    assert tr.state.timeline[-1].note.startswith("art. 5.2:")
    assert next_due(tr.state, PROFILE) is None
    assert advance(tr.state, PROFILE, T0 + 90 * DAY).notices == []


def test_oral_request_received_but_unconfirmed_still_lapses_without_overdue() -> None:
    s = opened(oral=True, urgent=True, signed_by=...).state
    s = step(s, "receipt", T0 + HOUR).state
    assert next_due(s, PROFILE) == T0 + 72 * HOUR
    tr = advance(s, PROFILE, T0 + 60 * DAY)
    assert events(tr.notices) == [("lapsed", RU), ("lapsed", KZ)]
    assert tr.state.status is Status.LAPSED and not tr.state.overdue


def test_confirmation_cancels_the_lapse() -> None:
    s = opened(oral=True, urgent=True, signed_by=...).state
    s = step(s, "confirmation", T0 + 71 * HOUR).state
    assert next_due(s, PROFILE) == T0 + 5 * DAY  # deemed receipt, no lapse any more
    tr = advance(s, PROFILE, T0 + 4 * DAY)
    assert tr.notices == [] and tr.state.status is Status.SENT
    tr = advance(s, PROFILE, T0 + 10 * DAY)
    assert "lapsed" not in [e for e, _ in events(tr.notices)]
    assert tr.state.status is Status.RECEIVED


def test_lapse_scaled_by_time_scale() -> None:
    s = opened(oral=True, urgent=True, signed_by=..., time_scale=0.01).state
    assert advance(s, PROFILE, T0 + 0.71 * HOUR).state.status is Status.SENT
    assert advance(s, PROFILE, T0 + 0.72 * HOUR).state.status is Status.LAPSED


@pytest.mark.parametrize("status", sorted(FINAL), ids=str)
def test_no_timers_once_final(status: Status) -> None:
    s = state_in(status, oral=True)
    if status is Status.EXECUTED:  # the art. 7 consent phase ends, then nothing more
        assert next_due(s, PROFILE) == T0 + 90 * DAY
        s = advance(s, PROFILE, T0 + 90 * DAY).state
        assert not s.consent_open and s.timeline[-1].event == "consent_window_closed"
    assert next_due(s, PROFILE) is None
    tr = advance(s, PROFILE, T0 + 365 * DAY)
    assert tr.notices == [] and tr.state == s


# --- 6. notice ids and envelopes ----------------------------------------------------------


def test_notice_ids_are_deterministic_and_distinct() -> None:
    req = message("request", request_id=new_request_id(), sender=RU, recipient=KZ)
    first = open_request(PROFILE, req, T0)
    again = open_request(PROFILE, req, T0 + DAY)
    assert [n.message_id for n in first.notices] == [n.message_id for n in again.notices]
    assert len({n.message_id for n in first.notices}) == 2

    receipt = msg(first.state, "receipt")
    a = apply(first.state, PROFILE, receipt, T0)
    b = apply(first.state, PROFILE, receipt, T0)
    assert [n.message_id for n in a.notices] == [n.message_id for n in b.notices]
    assert a.notices[0].message_id not in {n.message_id for n in first.notices}

    late1 = advance(a.state, PROFILE, T0 + 40 * DAY)
    late2 = advance(a.state, PROFILE, T0 + 50 * DAY)
    assert [n.message_id for n in late1.notices] == [n.message_id for n in late2.notices]
    assert len({n.message_id for n in late1.notices}) == 2

    other = message("request", request_id=new_request_id(), sender=RU, recipient=KZ,
                    message_id=req.message_id)
    assert open_request(PROFILE, other, T0).notices[0].message_id != first.notices[0].message_id


def test_notice_ids_unique_over_a_long_history() -> None:
    seen: list[str] = []
    tr = opened()
    seen += [n.message_id for n in tr.notices]
    s = tr.state
    for at, kind in [(T0, "receipt"), (T0 + 2 * DAY, "clarification_request"),
                     (T0 + 3 * DAY, "clarification")]:
        tr = step(s, kind, at)
        s = tr.state
        seen += [n.message_id for n in tr.notices]
    for at in (T0 + 25 * DAY, T0 + 31 * DAY):
        tr = advance(s, PROFILE, at)
        s = tr.state
        seen += [n.message_id for n in tr.notices]
    tr = step(s, "forward", T0 + 32 * DAY)
    s = tr.state
    seen += [n.message_id for n in tr.notices]
    tr = step(s, "receipt", T0 + 33 * DAY)
    s = tr.state
    seen += [n.message_id for n in tr.notices]
    for at in (T0 + 62 * DAY + HOUR, T0 + 70 * DAY):
        tr = advance(s, PROFILE, at)
        s = tr.state
        seen += [n.message_id for n in tr.notices]
    assert len(seen) == 2 + 3 + 4 + 2 + 1 + 6
    assert len(set(seen)) == len(seen)


def test_envelope_carries_status_deadline_and_overdue() -> None:
    s = run(state_in(Status.SENT), "receipt")
    tr = advance(s, PROFILE, T0 + 30 * DAY)
    notice = tr.notices[1]
    env = envelope_for(tr.state, notice, T0 + 30 * DAY)
    assert isinstance(env, NoticeMessage)
    assert env.kind == "notice" and env.sender == HUB_SENDER and env.recipient == KZ
    assert env.message_id == notice.message_id and env.in_reply_to is None
    assert (env.request_id, env.treaty_id) == (s.request_id, "sco-2010")
    assert env.body.event == "overdue" and env.body.status == "received"
    assert env.body.overdue is True and env.body.deadline == T0 + 30 * DAY
    assert (env.body.requesting, env.body.requested) == (RU, KZ)
    # it survives the wire
    assert parse_outbound(env.model_dump_json()) == env


def test_envelope_for_message_notice_replies_to_the_message() -> None:
    state = state_in(Status.SENT)
    receipt = msg(state, "receipt")
    tr = apply(state, PROFILE, receipt, T0)
    env = envelope_for(tr.state, tr.notices[0], T0)
    assert env.in_reply_to == receipt.message_id == env.body.about_message_id
    assert env.recipient == RU and env.body.status == "received" and not env.body.overdue
    assert env.body.deadline == T0 + 30 * DAY
    sent = envelope_for(state, opened().notices[0], T0)
    assert sent.body.deadline is None and sent.body.status == "sent"


def test_sealed_request_without_signatory_satisfies_art_5_5() -> None:
    from datetime import UTC, datetime

    from tests.factories import message as build
    from tests.factories import new_request_id as rid
    from tests.factories import request_body as body
    from treatyflow.schemas.treaty import load_profile
    from treatyflow.workflows import lifecycle

    sealed = build("request", request_id=rid(), sender="KZ-GPO", recipient="RU-MIA",
                   body=body(signed_by=None, sealed=True))
    neither = build("request", request_id=rid(), sender="KZ-GPO", recipient="RU-MIA",
                    body=body(signed_by=None))
    profile = load_profile("sco-2010")
    assert lifecycle.check_new_request(profile, sealed) == []
    assert any("art. 5.5" in p for p in lifecycle.check_new_request(profile, neither))
    opened = lifecycle.open_request(profile, sealed, datetime(2026, 1, 1, tzinfo=UTC))
    stranger = build("request", request_id=sealed.request_id, sender="CN-MPS",
                     recipient="KZ-GPO")
    # A third authority learns nothing about someone else's request.
    assert lifecycle.check(opened.state, profile, stranger) == [
        f"CN-MPS is not a party to request {sealed.request_id}"]


def test_current_details_say_whose_move_and_days_left() -> None:
    from datetime import UTC, datetime, timedelta

    from tests.factories import message as build
    from tests.factories import new_request_id as rid
    from treatyflow.schemas.treaty import load_profile
    from treatyflow.workflows import lifecycle

    profile = load_profile("sco-2010")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    req = build("request", request_id=rid(), sender="KZ-GPO", recipient="RU-MIA")
    state = lifecycle.open_request(profile, req, t0).state
    assert "next: RU-MIA to acknowledge receipt" in lifecycle.describe(state, t0)
    receipt = build("receipt", request_id=req.request_id, sender="RU-MIA", recipient="KZ-GPO",
                    body={})
    state = lifecycle.apply(state, profile, receipt, t0).state
    text = lifecycle.describe(state, t0 + timedelta(days=20))
    assert "**received**" in text and "10.0 treaty days left" in text
    late = lifecycle.describe(state, t0 + timedelta(days=32))
    assert "passed 2.0 treaty days ago" in late and "left" not in late
    assert "last: receipt by RU-MIA" in text


def test_only_a_party_is_answered_about_an_applied_message() -> None:
    """A redelivered message is answered with the request's state: only to someone who was
    a party to it (requester, requested, or an authority it was forwarded from)."""
    from datetime import UTC, datetime

    from tests.factories import message as build
    from tests.factories import new_request_id
    from treatyflow.schemas.treaty import load_profile
    from treatyflow.workflows import lifecycle

    profile = load_profile("sco-2010")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rid = new_request_id()
    state = lifecycle.open_request(
        profile, build("request", request_id=rid, sender="KZ-MIA", recipient="RU-MIA"), t0).state
    state = state.model_copy(update={"forwarded_from": ["RU-GPO"]})
    for party in ("KZ-MIA", "RU-MIA", "RU-GPO"):
        again = build("receipt", request_id=rid, sender=party, recipient="KZ-MIA", body={})
        assert lifecycle.not_a_party(state, again) == []
    stranger = build("receipt", request_id=rid, sender="CN-MPS", recipient="KZ-MIA", body={})
    assert lifecycle.not_a_party(state, stranger) == [f"CN-MPS is not a party to request {rid}"]


@pytest.mark.parametrize(("kind", "before", "undone"), [
    ("confirmation", timedelta(seconds=24), True),
    ("confirmation", -timedelta(seconds=24), False),  # it came after the 72 hours
    ("withdrawal", timedelta(seconds=24), False),  # only a confirmation answers art. 5.2
])
def test_a_lapse_is_undone_only_by_a_confirmation_that_arrived_in_time(
    kind: str, before: timedelta, undone: bool
) -> None:
    rid = new_request_id()
    oral = message("request", request_id=rid, sender="KZ-GPO", recipient="RU-MIA",
                   body=request_body(urgent=True, oral=True, signed_by=None))
    opened = lifecycle.open_request(PROFILE, oral, T0).state  # type: ignore[arg-type]
    assert opened.confirm_by is not None
    lapsed = lifecycle.advance(opened, PROFILE, opened.confirm_by + timedelta(hours=1)).state
    assert lapsed.status == Status.LAPSED
    body = ({"request": request_body(urgent=True)} if kind == "confirmation"
            else {"reason": "The case is closed at home."})
    answer = message(kind, request_id=rid, sender="KZ-GPO", recipient="RU-MIA", body=body)
    arrived = opened.confirm_by - before
    corrected = lifecycle.correct_by_arrival(lapsed, answer, arrived,
                                             opened.confirm_by + timedelta(hours=1))
    assert (corrected is not None) == undone
    if corrected is not None:
        assert corrected.state.status == Status.SENT and corrected.state.oral_unconfirmed
        assert {n.recipient for n in corrected.notices} == {"KZ-GPO", "RU-MIA"}
        assert lifecycle.check(corrected.state, PROFILE, answer) == []

"""Art. 7: handling restrictions travel with results; other use or a transfer to a third
party needs the providing authority's written consent, asked and given through the hub.

The pure lifecycle first, then the workflow on the time-skipping server (the consent
phase after execution, and its bounded life)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import Assistance
from tests.factories import message, new_request_id, request_body
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal
from treatyflow.schemas.messages import InboundMessage
from treatyflow.schemas.treaty import load_profile
from treatyflow.workflows import lifecycle
from treatyflow.workflows.lifecycle import (
    CONSENT_REQUIRED,
    Rejected,
    RequestState,
    Status,
    advance,
    apply,
    check,
    describe,
    open_request,
    refusal_code,
)
from treatyflow.workflows.request import RequestForAssistance

PROFILE = load_profile("sco-2010")
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
KZ, RU = "KZ-GPO", "RU-MIA"  # requesting, requested (the providing authority)
CN, UZ, KZ2 = "CN-MPS", "UZ-MIA", "KZ-MIA"  # third states' authorities; the requester's own
REPORT = {"extent": "full", "summary": "Statements of account 123 attached.",
          "confidentiality": "secret"}
TRANSFER_ASK = {"scope": "third_party_transfer", "purpose": "Joint investigation with China.",
                "third_party": CN, "reason": "The funds went on to an account in Urumqi."}
OTHER_USE_ASK = {"scope": "other_purpose", "purpose": "Tax assessment of the suspect.",
                 "reason": "The tax authority needs the statements too."}
GRANT = {"granted": True, "conditions": "No onward transfer; for the joint investigation only."}
REFUSE = {"granted": False, "reason": "An operation of ours is under way in Urumqi."}


def send(state: RequestState, kind: str, body: dict[str, Any], *, sender: str | None = None,
         recipient: str | None = None, in_reply_to: str | None = None) -> InboundMessage:
    requester_kind = kind in ("consent_request", "results_transfer")
    sender = sender or (state.requesting if requester_kind else state.requested)
    recipient = recipient or (state.requested if sender == state.requesting
                              else state.requesting)
    return message(kind, request_id=state.request_id, sender=sender, recipient=recipient,
                   body=body, in_reply_to=in_reply_to)


def received() -> RequestState:
    req = message("request", request_id=new_request_id(), sender=KZ, recipient=RU,
                  body=request_body())
    state = open_request(PROFILE, req, T0).state
    return apply(state, PROFILE, send(state, "receipt", {}), T0 + DAY).state


def executed(at: datetime = T0 + 5 * DAY) -> RequestState:
    state = received()
    return apply(state, PROFILE, send(state, "execution_report", REPORT), at).state


def ask(state: RequestState, body: dict[str, Any] = TRANSFER_ASK,
        at: datetime = T0 + 6 * DAY) -> tuple[RequestState, str]:
    m = send(state, "consent_request", body)
    return apply(state, PROFILE, m, at).state, m.message_id


def decide(state: RequestState, asked: str, body: dict[str, Any] = GRANT,
           at: datetime = T0 + 7 * DAY) -> tuple[RequestState, str]:
    m = send(state, "consent_decision", body, in_reply_to=asked)
    return apply(state, PROFILE, m, at).state, m.message_id


def transfer(state: RequestState, consent: str, to: str = CN) -> InboundMessage:
    return send(state, "results_transfer", {"consent": consent, "content": "Statements."},
                recipient=to)


# --- results carry their restrictions -------------------------------------------------


def test_results_carry_marking_purpose_and_the_art_7_restrictions() -> None:
    state = received()
    tr = apply(state, PROFILE, send(state, "execution_report", REPORT), T0 + 5 * DAY)
    results = tr.state.results
    assert results is not None and results.provided_by == RU
    assert results.confidentiality == "secret" and results.purpose == state.request.purpose
    assert tr.state.status is Status.EXECUTED and tr.state.consent_open
    handling = tr.notices[0].detail["handling"]
    assert handling["confidentiality"] == "secret"
    assert "art. 7.2" in handling["other_purpose"] and RU in handling["other_purpose"]
    assert "art. 7.3" in handling["third_party_transfer"]


# --- who may ask and decide, and when ------------------------------------------------


@pytest.mark.parametrize("kind", ["consent_request", "consent_decision", "results_transfer"])
def test_nothing_about_results_before_there_are_results(kind: str) -> None:
    state = received()
    body = {"consent_request": TRANSFER_ASK, "consent_decision": GRANT,
            "results_transfer": {"consent": "decision-0001", "content": "Statements."}}[kind]
    problems = check(state, PROFILE, send(state, kind, body))
    assert len(problems) == 1 and problems[0].startswith("art. 7: a " + kind)
    assert "has none (it is received)" in problems[0]


def test_only_the_requester_asks_and_only_the_provider_decides() -> None:
    state = executed()
    problems = check(state, PROFILE, send(state, "consent_request", TRANSFER_ASK, sender=RU))
    assert problems == [f"only the requesting authority {KZ} may send a consent_request"]
    state, asked = ask(state)
    problems = check(state, PROFILE, send(state, "consent_decision", GRANT, sender=KZ,
                                          in_reply_to=asked))
    assert problems == [f"only the requested authority {RU} may send a consent_decision"]
    problems = check(state, PROFILE, send(state, "consent_request", TRANSFER_ASK, sender=CN,
                                          recipient=RU))
    assert problems == [f"{CN} is not a party to request {state.request_id}"]


def test_consent_request_reaches_the_provider_and_the_decision_the_requester() -> None:
    state = executed()
    m = send(state, "consent_request", TRANSFER_ASK)
    tr = apply(state, PROFILE, m, T0 + 6 * DAY)
    [notice] = tr.notices
    assert (notice.recipient, notice.event) == (RU, "consent_requested")
    assert notice.detail["third_party"] == CN and notice.detail["scope"] == "third_party_transfer"
    state = tr.state
    tr = apply(state, PROFILE, send(state, "consent_decision", GRANT, in_reply_to=m.message_id),
               T0 + 7 * DAY)
    [notice] = tr.notices
    assert (notice.recipient, notice.event) == (KZ, "consent_granted")
    assert notice.detail["conditions"] == GRANT["conditions"]
    assert notice.detail["consent_request"] == m.message_id
    # the status stays executed; the timeline and the details show the consent
    assert tr.state.status is Status.EXECUTED
    assert [e.event for e in tr.state.timeline[-2:]] == ["consent_request", "consent_decision"]
    assert tr.state.timeline[-1].note == f"consent_granted: third_party_transfer to {CN}"
    assert f"consent third_party_transfer to {CN}: granted" in describe(tr.state, T0 + 8 * DAY)


def test_a_decision_replies_to_an_undecided_consent_request() -> None:
    state, asked = ask(executed())
    problems = check(state, PROFILE, send(state, "consent_decision", GRANT, in_reply_to=None))
    assert len(problems) == 1 and f"undecided: {asked}" in problems[0]
    state, _ = decide(state, asked)
    problems = check(state, PROFILE, send(state, "consent_decision", REFUSE, in_reply_to=asked))
    assert problems and "already decided" in problems[0]


def test_same_consent_cannot_be_asked_twice_while_undecided() -> None:
    state, asked = ask(executed())
    problems = check(state, PROFILE, send(state, "consent_request", TRANSFER_ASK))
    assert problems == [f"consent request {asked} for the same scope is still awaiting its "
                        "decision"]
    # another third party is another question
    assert check(state, PROFILE, send(state, "consent_request",
                                      {**TRANSFER_ASK, "third_party": UZ})) == []


def test_a_requests_consent_record_is_bounded() -> None:
    """Each consent request extends the consent phase: the hub caps how many a request
    may carry (hub policy), so its record cannot grow without end."""
    from treatyflow.workflows.lifecycle import MAX_CONSENT_REQUESTS

    state = executed()
    for i in range(MAX_CONSENT_REQUESTS):
        state, asked = ask(state, at=T0 + (6 + i) * DAY)
        state, _ = decide(state, asked, REFUSE, at=T0 + (6 + i) * DAY)
    problems = check(state, PROFILE, send(state, "consent_request", TRANSFER_ASK))
    assert problems == [f"limit_reached: at most {MAX_CONSENT_REQUESTS} consent_request "
                        "messages (art. 7.2, 7.3) per request, the hub's limit; request "
                        f"{state.request_id} has {MAX_CONSENT_REQUESTS}"]
    assert lifecycle.refusal_code(state, send(state, "consent_request", TRANSFER_ASK),
                                  problems) == "limit_reached"


@pytest.mark.parametrize(("third", "why"), [
    (KZ2, "a party to this request, not a third party"),
    ("RU-GPO", "a party to this request, not a third party"),
    ("XX-ABC", "not a competent authority under sco-2010"),
])
def test_a_third_party_is_an_authority_of_a_third_state(third: str, why: str) -> None:
    state = executed()
    problems = check(state, PROFILE, send(state, "consent_request",
                                          {**TRANSFER_ASK, "third_party": third}))
    assert len(problems) == 1 and problems[0].startswith("art. 7.3") and why in problems[0]


def test_the_scope_decides_whether_a_third_party_is_named() -> None:
    with pytest.raises(ValidationError, match="third_party is required"):
        message("consent_request", request_id="RQ-1", sender=KZ, recipient=RU,
                body={**TRANSFER_ASK, "third_party": None})
    with pytest.raises(ValidationError, match="third_party is required"):
        message("consent_request", request_id="RQ-1", sender=KZ, recipient=RU,
                body={**OTHER_USE_ASK, "third_party": CN})


# --- the transfer: refused without consent, allowed with it, for that party only ------


def test_transfer_without_consent_is_refused_consent_required() -> None:
    state = executed()
    m = transfer(state, "no-such-decision")
    problems = check(state, PROFILE, m)
    assert len(problems) == 1 and problems[0].startswith("art. 7.3: no consent decision")
    assert refusal_code(state, m, problems) == CONSENT_REQUIRED
    with pytest.raises(Rejected):
        apply(state, PROFILE, m, T0 + 6 * DAY)
    # a consent asked but not yet decided is no consent either
    state, asked = ask(state)
    m = transfer(state, asked)
    assert refusal_code(state, m, check(state, PROFILE, m)) == CONSENT_REQUIRED


def test_granted_consent_allows_the_transfer_to_that_party_only() -> None:
    state, asked = ask(executed())
    state, consent = decide(state, asked)
    elsewhere = transfer(state, consent, to=UZ)
    problems = check(state, PROFILE, elsewhere)
    assert problems == [f"art. 7.3: consent {consent} covers a transfer to {CN}, not to {UZ}"]
    assert refusal_code(state, elsewhere, problems) == CONSENT_REQUIRED

    m = transfer(state, consent)
    assert check(state, PROFILE, m) == []
    tr = apply(state, PROFILE, m, T0 + 8 * DAY)
    by_recipient = {n.recipient: n for n in tr.notices}
    assert set(by_recipient) == {CN, RU}
    to_third = by_recipient[CN]
    assert to_third.event == "results_transferred" and to_third.detail["content"] == "Statements."
    assert to_third.detail["handling"]["confidentiality"] == "secret"
    assert to_third.detail["handling"]["purpose"] == TRANSFER_ASK["purpose"]
    assert "no onward transfer" in to_third.detail["handling"]["third_party_transfer"]
    assert to_third.detail["conditions"] == GRANT["conditions"]
    assert "content" not in by_recipient[RU].detail  # the provider has its results already
    assert by_recipient[RU].detail["to_authority"] == CN
    results = tr.state.results
    assert results is not None and [t.to_authority for t in results.transfers] == [CN]
    assert tr.state.timeline[-1].event == "results_transfer"
    # the envelope stays valid for the third party's inbox
    envelope = lifecycle.envelope_for(tr.state, to_third, T0 + 8 * DAY)
    assert envelope.recipient == CN and envelope.body.event == "results_transferred"


def test_refused_consent_blocks_the_transfer() -> None:
    state, asked = ask(executed())
    state, refusal = decide(state, asked, REFUSE)
    assert state.timeline[-1].note == f"consent_refused: third_party_transfer to {CN}"
    m = transfer(state, refusal)
    problems = check(state, PROFILE, m)
    assert problems == [f"art. 7.3: {RU} refused consent ({refusal}) to transmit the results "
                        f"to {CN}"]
    assert refusal_code(state, m, problems) == CONSENT_REQUIRED
    # the requester may ask again (a new purpose, other conditions)
    assert check(state, PROFILE, send(state, "consent_request", TRANSFER_ASK)) == []


def test_consent_for_another_purpose_is_no_consent_to_transfer() -> None:
    state, asked = ask(executed(), OTHER_USE_ASK)
    state, consent = decide(state, asked)
    results = state.results
    assert results is not None and results.consents[0].granted
    m = transfer(state, consent)
    problems = check(state, PROFILE, m)
    assert len(problems) == 1 and "for use for another purpose" in problems[0]
    assert refusal_code(state, m, problems) == CONSENT_REQUIRED


def test_other_problems_are_not_allowed_now_not_consent_required() -> None:
    state, asked = ask(executed())
    state, consent = decide(state, asked)
    dup = transfer(state, consent)
    state = apply(state, PROFILE, dup, T0 + 8 * DAY).state
    problems = check(state, PROFILE, dup)
    assert problems[0].startswith("duplicate") and (
        refusal_code(state, dup, problems) == "not_allowed_now")


# --- the consent phase: bounded, counted from the last consent message ---------------


def test_consent_phase_closes_after_its_quiet_period_and_each_message_extends_it() -> None:
    state = executed(at=T0)
    assert state.results is not None and state.results.open_until == T0 + 90 * DAY
    state, _ = ask(state, at=T0 + 60 * DAY)
    assert state.results is not None and state.results.open_until == T0 + 150 * DAY
    assert lifecycle.next_due(state, PROFILE) == T0 + 150 * DAY
    assert advance(state, PROFILE, T0 + 149 * DAY).state.consent_open
    tr = advance(state, PROFILE, T0 + 150 * DAY)
    assert not tr.state.consent_open and tr.state.status is Status.EXECUTED
    assert {(n.recipient, n.event) for n in tr.notices} == {
        (KZ, "consent_window_closed"), (RU, "consent_window_closed")}
    assert tr.state.timeline[-1].event == "consent_window_closed"
    problems = check(tr.state, PROFILE, send(tr.state, "consent_request", OTHER_USE_ASK))
    assert len(problems) == 1 and "consent phase for its results has closed" in problems[0]
    assert lifecycle.next_due(tr.state, PROFILE) is None


def test_without_a_consent_window_the_request_ends_at_execution() -> None:
    profile = PROFILE.model_copy(update={"deadlines": PROFILE.deadlines.model_copy(
        update={"consent_window_days": None})})
    state = received()
    state = apply(state, profile, send(state, "execution_report", REPORT), T0 + 5 * DAY).state
    assert state.results is not None and not state.consent_open
    assert lifecycle.next_due(state, profile) is None
    assert check(state, profile, send(state, "consent_request", TRANSFER_ASK))


def test_the_consent_window_scales_with_the_time_scale() -> None:
    req = message("request", request_id=new_request_id(), sender=KZ, recipient=RU,
                  body=request_body())
    state = open_request(PROFILE, req, T0, time_scale=0.01).state
    state = apply(state, PROFILE, send(state, "receipt", {}), T0).state
    state = apply(state, PROFILE, send(state, "execution_report", REPORT), T0).state
    assert state.results is not None and state.results.open_until == T0 + 0.9 * DAY


# --- the workflow: open after execution, closed after the consent phase ---------------


async def test_workflow_carries_consent_after_execution_then_closes(
    assistance: Assistance,
) -> None:
    rid = await assistance.received()
    await assistance.submit(message("execution_report", request_id=rid, sender=RU,
                                    recipient=KZ, body=REPORT))
    time_env, outbox = assistance.env, assistance.outbox
    refused = message("results_transfer", request_id=rid, sender=KZ, recipient=CN,
                      body={"consent": "no-such-decision", "content": "Statements."})
    with pytest.raises(Refusal) as err:
        await assistance.submit(refused)
    assert err.value.problem == "consent_required" and "art. 7.3" in err.value.reasons[0]

    await time_env.sleep(timedelta(days=80))  # within the 90 days: still open
    asked = message("consent_request", request_id=rid, sender=KZ, recipient=RU,
                    body=TRANSFER_ASK)
    accepted = await assistance.submit(asked)
    assert accepted.status == "executed"
    decision = message("consent_decision", request_id=rid, sender=RU, recipient=KZ,
                       in_reply_to=asked.message_id, body=GRANT)
    await assistance.submit(decision)
    await assistance.submit(message("results_transfer", request_id=rid, sender=KZ,
                                    recipient=CN, body={"consent": decision.message_id,
                                                        "content": "Statements."}))
    await time_env.sleep(timedelta(hours=1))
    assert "consent_requested" in outbox.events(RU)
    assert "consent_granted" in outbox.events(KZ)
    assert "results_transferred" in outbox.events(CN)

    state = await assistance.state(rid)
    assert state.status == "executed" and state.results is not None
    assert [c.granted for c in state.results.consents] == [True]
    handle = time_env.client.get_workflow_handle_for(RequestForAssistance.run,
                                                     workflow_id("sco-2010", rid))
    # 90 quiet days counted from the last consent message, not from execution
    await time_env.sleep(timedelta(days=89))
    assert (await handle.describe()).status.name == "RUNNING"  # type: ignore[union-attr]
    await time_env.sleep(timedelta(days=2))
    outcome = await handle.result()
    assert (outcome.status, outcome.outcome) == ("executed", "full")
    assert "consent_window_closed" in outbox.events(KZ)
    assert "consent_window_closed" in outbox.events(RU)
    with pytest.raises(Refusal) as err:
        await assistance.submit(message("consent_request", request_id=rid, sender=KZ,
                                        recipient=RU, body=OTHER_USE_ASK))
    assert err.value.problem == "request_closed"

"""Issue 12, item 3: every repeatable message is bounded per request, the whole state is
bounded, each refusal is ``limit_reached`` naming its limit, and the request goes on."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.test_lifecycle import DAY, PROFILE, T0, msg, opened, run, step
from tests.worst_case import PROFILE as WORST_PROFILE
from tests.worst_case import largest_request, largest_transfer
from treatyflow.codec import generate_keys
from treatyflow.schemas import limits
from treatyflow.temporal import data_converter
from treatyflow.workflows import lifecycle
from treatyflow.workflows.contract import RequestInput
from treatyflow.workflows.lifecycle import OperatorAction, RequestState, Status, advance, check
from treatyflow.workflows.transfer_contract import TransferInput

CAP = limits.MAX_PER_KIND


def refused_for_limit(state: RequestState, kind: str, **kw: Any) -> list[str]:
    message = msg(state, kind, **kw)
    problems = check(state, PROFILE, message)
    assert problems and lifecycle.refusal_code(state, message, problems) == "limit_reached"
    return problems


def test_the_21st_delay_is_refused_and_the_request_goes_on() -> None:
    state = run(opened().state, "receipt")
    for i in range(CAP):
        state = step(state, "delay", T0 + i * timedelta(minutes=1)).state
    assert refused_for_limit(state, "delay") == [
        f"limit_reached: at most {CAP} delay messages (art. 6.2) per request, the hub's "
        f"limit; request {state.request_id} has {CAP}"]
    # The request keeps working: the deadline still falls due and a report is applied.
    overdue = advance(state, PROFILE, T0 + 31 * DAY)
    assert overdue.state.overdue and ("overdue", state.requesting) in [
        (n.event, n.recipient) for n in overdue.notices]
    done = step(overdue.state, "execution_report", T0 + 32 * DAY).state
    assert done.status is Status.EXECUTED


@pytest.mark.parametrize(("kind", "then", "article"), [
    ("clarification_request", "clarification", "art. 5.3, 6.4"),
    ("deferral", "resumption", "art. 6.7, 6.9"),
])
def test_each_repeatable_pair_is_bounded(kind: str, then: str, article: str) -> None:
    state = run(opened().state, "receipt")
    for _ in range(CAP):
        state = run(state, kind, then)
    assert refused_for_limit(state, kind)[0].startswith(
        f"limit_reached: at most {CAP} {kind} messages ({article}) per request")
    assert run(state, "delay").status is Status.IN_EXECUTION


def test_forwards_are_bounded_within_the_requested_state() -> None:
    cap = limits.per_kind("forward")
    assert cap is not None
    state = opened().state
    for _ in range(cap):
        state = run(state, "forward")
    assert refused_for_limit(state, "forward")[0].startswith(
        f"limit_reached: at most {cap} forward messages (art. 6.3) per request")
    assert run(state, "receipt").status is Status.RECEIVED


def test_the_bytes_of_all_messages_are_bounded() -> None:
    """Delays of the longest reason in four-byte characters: the byte budget is reached
    before the count, and a small message still fits."""
    state = run(opened().state, "receipt")
    wide = "\U00020000" * limits.REASON_MAX
    while not check(state, PROFILE, msg(state, "delay", body={"reason": wide})):
        state = step(state, "delay", T0, body={"reason": wide}).state
    problems = refused_for_limit(state, "delay", body={"reason": wide})
    assert problems[0].startswith(
        f"limit_reached: at most {limits.MAX_CONTENT_BYTES_PER_REQUEST // 1024} KiB of "
        "messages per request")
    assert state.content_bytes <= limits.MAX_CONTENT_BYTES_PER_REQUEST
    assert run(state, "execution_report").status is Status.EXECUTED


def test_a_full_timeline_refuses_messages_but_keeps_the_hubs_deadlines() -> None:
    state = run(opened().state, "receipt")
    filler = state.timeline[-1]
    full = state.model_copy(update={"timeline": [filler] * limits.TIMELINE_FOR_MESSAGES})
    assert refused_for_limit(full, "execution_report") == [
        f"limit_reached: at most {limits.TIMELINE_FOR_MESSAGES} timeline entries of messages "
        f"per request (of {limits.MAX_TIMELINE_ENTRIES}; the rest is kept for the hub's "
        "deadlines), the hub's limit"]
    assert advance(full, PROFILE, T0 + 31 * DAY).state.overdue


def test_operator_actions_are_bounded() -> None:
    state = run(opened().state, "receipt")
    action = OperatorAction(action="extend_deadline", operator="ops", days=1,
                            reason="The bank asked for one more day.")
    for _ in range(limits.MAX_OPERATOR_ACTIONS):
        state = lifecycle.apply_operator(state, PROFILE, action, T0).state
    problems = lifecycle.check_operator(state, action)
    assert problems == [f"limit_reached: at most {limits.MAX_OPERATOR_ACTIONS} operator "
                        f"actions per request, the hub's limit; this one has "
                        f"{limits.MAX_OPERATOR_ACTIONS}"]


def test_every_kind_a_request_takes_more_than_once_has_a_limit() -> None:
    once = {"request", "confirmation", "receipt", "refusal", "execution_report", "withdrawal"}
    for kind in lifecycle._ALLOWED_FROM.keys() - once:
        assert limits.per_kind(kind) is not None or kind in limits.UNCOUNTED_KINDS, kind


def test_a_transfers_information_requests_are_bounded_and_it_goes_on() -> None:
    """KZ–UAE 2018 art. 13.2: the sentencing state asks how the sentence is executed; the
    21st request is refused with limit_reached, reports still come in."""
    from tests.transfer_factories import AE, KZ, enforcing_case
    from treatyflow.workflows import transfer as tf

    c = enforcing_case()
    for _ in range(CAP):
        c.send("transfer_information_request", KZ, {"questions": "Where is he held?"})
    m = c.msg("transfer_information_request", KZ, {"questions": "Where is he held?"})
    problems = tf.check(c.state, c.profile, m)
    assert problems == [f"limit_reached: at most {CAP} transfer_information_request messages "
                        f"per transfer, the hub's limit; transfer {c.state.request_id} has "
                        f"{CAP}"]
    assert tf.refusal_code(problems) == "limit_reached"
    c.send("transfer_execution_report", AE, {"event": "sentence_served",
                                             "occurred_on": c.now.date().isoformat()})
    assert c.state.status is tf.TransferStatus.ENFORCEMENT_ENDED
    assert c.state.content_bytes <= limits.MAX_CONTENT_BYTES_PER_REQUEST


def _encoded_size(carried: Any) -> int:
    return int(asyncio.run(data_converter(generate_keys()).encode([carried]))[0].ByteSize())


def test_the_largest_request_stays_far_below_temporals_payload_limit() -> None:
    """Max-size messages of four-byte characters at every limit, until each kind is
    refused: what the workflow carries across continue-as-new, encrypted by the payload
    codec, stays under MAX_CARRIED_BYTES (Temporal refuses payloads over 2 MB)."""
    for results in (False, True):
        state, carrier, applied = largest_request(results=results)
        assert state.content_bytes <= limits.MAX_CONTENT_BYTES_PER_REQUEST
        assert len(state.timeline) <= limits.MAX_TIMELINE_ENTRIES
        carried = RequestInput(profile=WORST_PROFILE, version=2, state=state,
                               **carrier.carried())
        assert _encoded_size(carried) < limits.MAX_CARRIED_BYTES, applied
    assert limits.MAX_CARRIED_BYTES <= 2_000_000 * 0.6


def test_the_largest_transfer_stays_far_below_temporals_payload_limit() -> None:
    """The same for a transfer: every message at every limit, each carried through both
    foreign ministries (art. 5.1), until each kind is refused."""
    from tests.transfer_factories import PROFILE as TRANSFER_PROFILE

    state, carrier, applied = largest_transfer()
    assert state.content_bytes <= limits.MAX_CONTENT_BYTES_PER_REQUEST
    assert len(state.timeline) <= limits.MAX_TIMELINE_ENTRIES
    carried = TransferInput(profile=TRANSFER_PROFILE, state=state, **carrier.carried())
    assert _encoded_size(carried) < limits.MAX_CARRIED_BYTES, applied

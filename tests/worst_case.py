"""The largest state the limits allow: a request (and a transfer) filled with messages of
the greatest size every field takes, until each is refused with ``limit_reached``, and
what its workflow would carry across continue-as-new (``contract.Carried``), the way the
shell builds it. Used by tests/test_request_limits.py."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from tests.conftest import TEST_KEYS
from tests.factories import envelope, new_request_id
from treatyflow.schemas import limits
from treatyflow.schemas.messages import InboundMessage, NoticeMessage, parse_inbound
from treatyflow.schemas.treaty import load_profile
from treatyflow.workflows import lifecycle
from treatyflow.workflows.lifecycle import Notice, Rejected, RequestState

PROFILE = load_profile("sco-2010")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RU, KZ = "RU-MIA", "KZ-GPO"
_rng = random.Random(20261202)


def widest(n: int, *, line: bool = True) -> str:
    """``n`` code points of four UTF-8 bytes each (CJK Extension B), random so that no
    compression makes them smaller."""
    return "".join(chr(_rng.randrange(0x20000, 0x2A6DF)) for _ in range(n))


def longest_id(prefix: str) -> str:
    """A message id of the greatest length (128), unique."""
    return (prefix + "-" + hashlib.sha256(str(_rng.random()).encode()).hexdigest() * 2)[:128]


class Carrier:
    """What the shell keeps beside the lifecycle's state: each applied message as signed,
    its digest, and every notice with the originals it carries (``Shell._with_originals``);
    the largest notice for each recipient stands for both the last sent and the outbox."""

    def __init__(self) -> None:
        self.signed: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.largest: dict[str, NoticeMessage] = {}

    def applied(self, message: InboundMessage, state: Any, notices: list[Notice],
                envelope_for: Callable[[Any, Notice, datetime], NoticeMessage],
                now: datetime) -> None:
        token = TEST_KEYS.sign(message)
        self.signed[message.message_id] = token
        self.digests[message.message_id] = hashlib.sha256(token.encode()).hexdigest()
        self.notices(state, notices, envelope_for, now, message)

    def notices(self, state: Any, notices: list[Notice],
                envelope_for: Callable[[Any, Notice, datetime], NoticeMessage],
                now: datetime, applying: InboundMessage | None = None) -> None:
        for n in notices:
            notice = envelope_for(state, n, now)
            ids = n.originals or ([applying.message_id] if applying is not None and (
                n.about_message_id == applying.message_id
                and n.recipient != applying.sender) else [])
            tokens = [self.signed[i] for i in ids if i in self.signed]
            if tokens:
                notice = notice.model_copy(update={"body": notice.body.model_copy(
                    update={"originals": tokens})})
            held = self.largest.get(n.recipient)
            if held is None or _size(notice) > _size(held):
                self.largest[n.recipient] = notice

    def carried(self) -> dict[str, Any]:
        """What the shell carries across a continue-as-new. Each party's last notice is
        kept without its originals (their ids instead). The signed messages are padded,
        as a sender may pad its JSON with whitespace, up to the per-request budget of
        signed bytes. The outbox then holds only the notices of what was applied since the
        last delivery: the largest notice, carrying its originals padded, stands for them."""
        held = sum(len(t) for t in self.signed.values())
        spare = max(limits.MAX_SIGNED_BYTES_PER_REQUEST - held, 0) // max(len(self.signed), 1)
        padded = {i: t + "A" * spare for i, t in self.signed.items()}
        assert sum(len(t) for t in padded.values()) <= limits.MAX_SIGNED_BYTES_PER_REQUEST
        swap = {t: padded[i] for i, t in self.signed.items()}
        largest = max(self.largest.values(), key=_size)
        outbox = largest.model_copy(update={"body": largest.body.model_copy(update={
            "originals": [swap.get(t, t) for t in largest.body.originals]})})
        last_sent = {who: n.model_copy(update={"body": n.body.model_copy(
            update={"originals": []})}) for who, n in self.largest.items()}
        last_originals = {who: [i for i, t in self.signed.items() if t in n.body.originals]
                          for who, n in self.largest.items()}
        return {"outbox": [outbox], "last_sent": last_sent, "last_originals": last_originals,
                "digests": self.digests, "signed": padded, "directory": TEST_KEYS.text}


def _size(model: BaseModel) -> int:
    return len(model.model_dump_json())


# --- a request for assistance -------------------------------------------------------------


def _message(state: RequestState | None, kind: str, body: dict[str, Any], *,
             request_id: str, at: datetime, in_reply_to: str | None = None,
             to: str | None = None) -> InboundMessage:
    requesting = state.requesting if state else RU
    requested = state.requested if state else KZ
    sender = requesting if kind in lifecycle.REQUESTER_KINDS else requested
    recipient = to or (requested if sender == requesting else requesting)
    data = envelope(kind, request_id=request_id, sender=sender, recipient=recipient,
                    body=body, message_id=longest_id(kind), in_reply_to=in_reply_to,
                    sent_at=at)
    import json

    return parse_inbound(json.dumps(data, ensure_ascii=False))


def _request_body() -> dict[str, Any]:
    return {
        "purpose": widest(limits.MEDIUM_TEXT_MAX),
        "assistance_requested": widest(limits.MEDIUM_TEXT_MAX),
        "facts": widest(limits.TEXT_MAX),
        "confidentiality": "secret",
        "form_of_cooperation": "information_exchange",
        "crime_category": "economic_money_laundering_terrorist_financing",
        "language": "ru",
        "urgent": True,
        "oral": True,
        "signed_by": {"name": widest(limits.NAME_MAX), "position": "head"},
        "sealed": True,
        "domestic_case": "K" * 40,
    }


def largest_request(*, results: bool = False) -> tuple[RequestState, Carrier, dict[str, int]]:
    """A request opened, confirmed, forwarded, then sent every message of the greatest
    size in turn until each kind is refused; returns the state, what the shell would carry
    and how many of each kind were applied. ``results``: a small request executed at once,
    whose results then go to every third party the budget allows (art. 7.3), each a
    recipient whose last notice the workflow keeps."""
    rid = new_request_id()
    carrier = Carrier()
    at = T0
    body = _request_body()
    if results:
        body |= {"facts": "Funds moved through account 123.", "oral": False}
    first = _message(None, "request", body, request_id=rid, at=at)
    opened = lifecycle.open_request(PROFILE, first, at)
    state = opened.state
    carrier.applied(first, state, opened.notices, lifecycle.envelope_for, at)
    applied: dict[str, int] = {}

    def send(kind: str, body: dict[str, Any], in_reply_to: str | None = None,
             to: str | None = None) -> bool:
        nonlocal state, at
        at += timedelta(minutes=1)
        message = _message(state, kind, body, request_id=rid, at=at, in_reply_to=in_reply_to,
                           to=to)
        try:
            moved = lifecycle.apply(state, PROFILE, message, at)
        except Rejected as refused:
            assert all(limits.is_limit_problem(p) for p in refused.problems), refused.problems
            return False
        state = moved.state
        carrier.applied(message, state, moved.notices, lifecycle.envelope_for, at)
        applied[kind] = applied.get(kind, 0) + 1
        return True

    if results:
        return _results_everywhere(send, lambda: state, carrier, applied)
    confirmation = {"request": {**_request_body(), "oral": False}}
    assert send("confirmation", confirmation)
    reason = widest(limits.REASON_MAX)
    # Art. 6.3: each authority the request is forwarded to keeps its last notice, the
    # request with its signed originals.
    for to in ("KZ-MIA", "KZ-SPS", "KZ-NSC", "KZ-ACA", "KZ-SRC"):
        if not send("forward", {"to_authority": to, "reason": widest(limits.SHORT_TEXT_MAX)}):
            break
    assert send("receipt", {"note": widest(limits.SHORT_TEXT_MAX)})
    moves: list[Callable[[], bool]] = [
        lambda: send("delay", {"reason": reason}),
        lambda: send("clarification_request", {"topic": "additional_information",
                                               "questions": widest(limits.TEXT_MAX)})
        and send("clarification", {"answer": widest(limits.TEXT_MAX)},
                 in_reply_to=state.open_clarification),
        lambda: send("deferral", {"grounds": ["security"] * limits.GROUNDS_MAX,
                                  "reason": reason})
        and send("resumption", {"note": widest(limits.SHORT_TEXT_MAX)}),
    ]
    while moves:
        moves = [move for move in moves if move()]
    send("execution_report", {"extent": "full", "summary": widest(limits.TEXT_MAX),
                              "confidentiality": "secret"})
    return state, carrier, applied


def _results_everywhere(send: Callable[..., bool], state: Callable[[], RequestState],
                        carrier: Carrier, applied: dict[str, int]
                        ) -> tuple[RequestState, Carrier, dict[str, int]]:
    assert send("receipt", {})
    assert send("execution_report", {"extent": "full", "summary": widest(limits.TEXT_MAX),
                                     "confidentiality": "secret"})
    for third in ("CN-MPS", "CN-SPP", "KG-MIA", "KG-GPO", "TJ-MIA", "UZ-MIA", "UZ-GPO"):
        if not send("consent_request", {
                "scope": "third_party_transfer", "third_party": third,
                "purpose": widest(limits.MEDIUM_TEXT_MAX), "reason": widest(limits.REASON_MAX)}):
            break
        asked = state().timeline[-1].message_id
        if not send("consent_decision", {"granted": True,
                                         "conditions": widest(limits.MEDIUM_TEXT_MAX),
                                         "reason": widest(limits.MEDIUM_TEXT_MAX)},
                    in_reply_to=asked):
            break
        decided = state().timeline[-1].message_id
        if not send("results_transfer", {"consent": decided, "content": widest(limits.TEXT_MAX)},
                    to=third):
            break
    return state(), carrier, applied


def each_kind(state: RequestState) -> Iterator[tuple[str, int]]:
    """How many of each kind of message the timeline records."""
    kinds = sorted({e.event for e in state.timeline})
    for kind in kinds:
        yield kind, sum(e.event == kind for e in state.timeline)


# --- a transfer of a convicted person (KZ–UAE 2018) ---------------------------------------


def largest_transfer() -> tuple[Any, Carrier, dict[str, int]]:
    """A transfer whose every message is of the greatest size, each carried through both
    foreign ministries (art. 5.1), sent until every kind is refused for a limit."""
    import json

    from tests import transfer_factories as tfx
    from treatyflow.schemas.transfer import parse_transfer
    from treatyflow.workflows import transfer as tf

    profile = tfx.PROFILE
    carrier = Carrier()
    applied: dict[str, int] = {}
    at = T0
    rid = new_request_id()
    short, medium = widest(limits.SHORT_TEXT_MAX), widest(limits.MEDIUM_TEXT_MAX)

    def build(kind: str, sender: str, recipient: str, body: dict[str, Any],
              in_reply_to: str | None = None) -> Any:
        data = tfx.envelope(kind, sender, recipient, body, request_id=rid,
                            message_id=longest_id(kind), in_reply_to=in_reply_to, sent_at=at)
        return parse_transfer(json.dumps(data, ensure_ascii=False))

    def doc(code: str, state: str = "KZ") -> dict[str, Any]:
        return tfx.doc(code, state, ref=widest(limits.NAME_MAX))

    body = tfx.request_body(
        person=tfx.person(full_name=widest(limits.NAME_MAX),
                          place_of_birth=widest(limits.NAME_MAX), prisoner_ref="P" * 40,
                          citizenship=["AE", "KZ", "RU", "UZ", "KG"]),
        sentence=tfx.sentence(court=widest(limits.NAME_MAX), offence={
            "provision": short, "description": medium, "military": False}),
        consent=tfx.consent(document_ref=short),
        documents=[doc(c) for c in (tfx.SS_DOCS * limits.DOCUMENTS_MAX)[:limits.DOCUMENTS_MAX]])
    first = build("transfer_request", tfx.KZ, tfx.AE, body)
    opened = tf.open_transfer(profile, first, at)
    state = opened.state
    carrier.applied(first, state, opened.notices, tf.envelope_for, at)
    refusals: list[list[str]] = []

    def apply(message: Any) -> bool:
        nonlocal state
        try:
            moved = tf.apply(state, profile, message, at)
        except Rejected as refused:
            refusals.append(refused.problems)
            return False
        state = moved.state
        carrier.applied(message, state, moved.notices, tf.envelope_for, at)
        applied[message.kind] = applied.get(message.kind, 0) + 1
        return True

    def carry(message_id: str) -> None:
        nonlocal at
        d = state.dispatch(message_id)
        while d is not None and d.next_hop is not None:
            at += timedelta(hours=1)
            by, to = d.next_hop
            assert apply(build("transfer_relay", by, to, {"relayed_message_id": message_id,
                                                          "note_reference": short}))
            d = state.dispatch(message_id)

    def send(kind: str, sender: str, body: dict[str, Any],
             in_reply_to: str | None = None) -> bool:
        nonlocal at
        at += timedelta(hours=1)
        message = build(kind, sender, state.counterpart(sender), body, in_reply_to)
        if not apply(message):
            return False
        carry(message.message_id)
        return True

    carry(first.message_id)
    assert send("transfer_decision", tfx.AE, {"executing_state_provision": short,
                                              "note": short}), refusals
    assert send("transfer_decision", tfx.KZ, {"note": short}), refusals
    handover = {"handover_on": (at + timedelta(days=30)).date().isoformat(), "place": short,
                "route": {"mode": "air", "transit_states": [], "landing_in_transit": True}}
    assert send("transfer_handover", tfx.KZ, handover), refusals
    at += timedelta(days=30)
    assert send("transfer_completed", tfx.AE, {"handed_over_on": at.date().isoformat(),
                                               "place": short}), refusals
    assert send("transfer_execution_report", tfx.AE, {
        "event": "enforcement_continued", "occurred_on": at.date().isoformat(),
        "term_imposed": {"years": 5}, "details": medium}), refusals

    def ask_and_answer() -> bool:
        if not send("transfer_information_request", tfx.KZ, {"questions": medium}):
            return False
        asked = state.dispatches[-1].message_id
        return send("transfer_execution_report", tfx.AE, {
            "event": "information", "occurred_on": at.date().isoformat(),
            "details": medium}, in_reply_to=asked)

    moves: list[Callable[[], bool]] = [
        ask_and_answer,
        lambda: send("transfer_sentence_decision", tfx.KZ, {
            "decision": "other", "effect": "none", "decided_on": at.date().isoformat(),
            "details": medium}),
    ]
    while moves:
        moves = [move for move in moves if move()]
    assert refusals and all(limits.is_limit_problem(p) for p in refusals[-1]), refusals[-1]
    return state, carrier, applied

"""Builders for transfer-of-convicted-person tests (KZ–UAE 2018), and a small driver that
sends messages and carries them through the diplomatic channel."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from treatyflow.schemas.transfer import (
    TransferInbound,
    TransferProfile,
    TransitInbound,
    load_transfer_profile,
    parse_transfer,
    parse_transit,
)
from treatyflow.workflows import transfer as tf
from treatyflow.workflows.lifecycle import Notice, Rejected

PROFILE = load_transfer_profile("kz-uae-2018")
TREATY = PROFILE.id
KZ, AE = "KZ-GPO", "AE-MOJ"  # central authorities (art. 5.2)
KZ_MFA, AE_MFA = "KZ-MFA", "AE-MOFA"  # the diplomatic channel (art. 5.1)
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SS_DOCS = ("personal_data", "sentence_information", "final_judgment", "consent")
ES_DOCS = ("citizenship_proof", "dual_criminality_extract", "other_proceedings_report")
LANG = {"KZ": ("ru", "en"), "AE": ("ar", "en")}


def mid() -> str:
    return f"msg-{uuid.uuid4().hex[:16]}"


def doc(code: str, state: str = "KZ", **over: Any) -> dict[str, Any]:
    language, translation = LANG[state]
    item = {"code": code, "language": language, "translation": translation, "signed": True,
            "stamped": True, "ref": f"sha256:{code}"}
    item.update(over)
    return item


def person(**over: Any) -> dict[str, Any]:
    p = {"full_name": "Ahmed Al Mansouri", "date_of_birth": "1990-04-12",
         "place_of_birth": "Abu Dhabi", "citizenship": ["AE"], "prisoner_ref": "KZ-UIS-4471"}
    p.update(over)
    return p


def sentence(**over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "court": "Specialised inter-district criminal court of Almaty",
        "judgment_date": "2023-05-10", "judgment_final_on": "2023-06-10", "enforceable": True,
        "counted_from": "2023-01-15", "term": {"years": 5},
        "offence": {"provision": "Criminal Code of the Republic of Kazakhstan, art. 190(4)",
                    "description": "Large-scale fraud", "military": False},
    }
    s.update(over)
    return s


def consent(**over: Any) -> dict[str, Any]:
    c = {"given_by": "convicted_person", "in_writing": True, "signed_on": "2025-02-01",
         "document_ref": "consent-2025-17"}
    c.update(over)
    return c


def request_body(**over: Any) -> dict[str, Any]:
    """A complete request of the sentencing state, Kazakhstan, to transfer a UAE citizen."""
    b: dict[str, Any] = {
        "sentencing_state": "KZ", "executing_state": "AE", "initiative": "sentencing_state",
        "person": person(), "sentence": sentence(), "consent": consent(),
        "language": "ru", "translation": "en", "signed": True, "stamped": True,
        "documents": [doc(c) for c in SS_DOCS],
    }
    b.update(over)
    return {k: v for k, v in b.items() if v is not ...}


def es_request_body(**over: Any) -> dict[str, Any]:
    """A request of the executing state, the UAE, with its own checklist (art. 7.2)."""
    b: dict[str, Any] = {
        "sentencing_state": "KZ", "executing_state": "AE", "initiative": "executing_state",
        "person": person(), "executing_state_provision": "UAE Penal Code, art. 451",
        "language": "ar", "translation": "en", "signed": True, "stamped": True,
        "documents": [doc(c, "AE") for c in ES_DOCS],
    }
    b.update(over)
    return {k: v for k, v in b.items() if v is not ...}


def envelope(kind: str, sender: str, recipient: str, body: dict[str, Any], *,
             request_id: str = "KZ-GPO-TR-2025-0001", message_id: str | None = None,
             in_reply_to: str | None = None, sent_at: datetime = T0,
             treaty_id: str = TREATY) -> dict[str, Any]:
    return {"schema_version": "2", "message_id": message_id or mid(), "kind": kind,
            "request_id": request_id, "treaty_id": treaty_id, "sender": sender,
            "recipient": recipient, "sent_at": sent_at.isoformat(), "in_reply_to": in_reply_to,
            "body": body}


def message(kind: str, sender: str, recipient: str, body: dict[str, Any],
            **kw: Any) -> TransferInbound:
    return parse_transfer(json.dumps(envelope(kind, sender, recipient, body, **kw)))


def transit_message(kind: str, sender: str, recipient: str, body: dict[str, Any],
                    **kw: Any) -> TransitInbound:
    return parse_transit(json.dumps(envelope(kind, sender, recipient, body, **kw)))


class Case:
    """One transfer driven through the pure lifecycle, message by message and hop by hop."""

    def __init__(self, body: dict[str, Any] | None = None, *, sender: str = KZ,
                 recipient: str = AE, profile: TransferProfile = PROFILE,
                 now: datetime = T0, deliver: bool = True) -> None:
        self.profile = profile
        self.now = now
        self.notices: list[Notice] = []
        m = message("transfer_request", sender, recipient, body or request_body(),
                    sent_at=now)
        assert isinstance(m, tf.TransferRequestMessage)
        tr = tf.open_transfer(profile, m, now)
        self.state = tr.state
        self.notices += tr.notices
        self.request_id = m.message_id
        if deliver:
            self.relay(m.message_id)

    def wait(self, delta: timedelta) -> tf.Transition:
        self.now += delta
        tr = tf.advance(self.state, self.profile, self.now)
        self.state = tr.state
        self.notices += tr.notices
        return tr

    def apply(self, m: TransferInbound) -> tf.Transition:
        tr = tf.apply(self.state, self.profile, m, self.now)
        self.state = tr.state
        self.notices += tr.notices
        return tr

    def relay(self, message_id: str, hops: int | None = None, step: timedelta = DAY) -> None:
        """Carry ``message_id`` along the channel, one day a hop."""
        d = self.state.dispatch(message_id)
        assert d is not None
        for _ in range(hops if hops is not None else len(d.route) - len(d.hops) - 1):
            nxt = d.next_hop
            assert nxt is not None
            self.now += step
            self.apply(message("transfer_relay", nxt[0], nxt[1],
                               {"relayed_message_id": message_id, "note_reference": "No. 7"},
                               request_id=self.state.request_id, sent_at=self.now))
            d = self.state.dispatch(message_id)
            assert d is not None

    def msg(self, kind: str, sender: str, body: dict[str, Any], **kw: Any) -> TransferInbound:
        recipient = kw.pop("recipient", None) or self.state.counterpart(sender)
        return message(kind, sender, recipient, body, request_id=self.state.request_id,
                       sent_at=self.now, **kw)

    def send(self, kind: str, sender: str, body: dict[str, Any], *, deliver: bool = True,
             **kw: Any) -> TransferInbound:
        m = self.msg(kind, sender, body, **kw)
        self.apply(m)
        if deliver:
            self.relay(m.message_id)
        return m

    def refused(self, kind: str, sender: str, body: dict[str, Any], **kw: Any) -> list[str]:
        """The message is refused by check() and apply() alike; its problems."""
        m = self.msg(kind, sender, body, **kw)
        problems = tf.check(self.state, self.profile, m)
        assert problems, f"{kind} from {sender} was allowed"
        with pytest.raises(Rejected) as err:
            tf.apply(self.state, self.profile, m, self.now)
        assert err.value.problems == problems
        return problems

    def agree(self, sender: str, **body: Any) -> TransferInbound:
        return self.send("transfer_decision", sender, body)

    def events(self, recipient: str | None = None) -> list[str]:
        return [n.event for n in self.notices if recipient in (None, n.recipient)]


def agreed_case(**kw: Any) -> Case:
    c = Case(**kw)
    c.agree(AE, executing_state_provision="UAE Penal Code, art. 451")
    c.agree(KZ)
    assert c.state.status is tf.TransferStatus.AGREED
    return c


def handover(on: date, *, mode: str = "air", transit: list[str] | None = None,
             landing: bool = True) -> dict[str, Any]:
    return {"handover_on": on.isoformat(), "place": "Almaty International Airport",
            "route": {"mode": mode, "transit_states": transit or [],
                      "landing_in_transit": landing}}


def enforcing_case() -> Case:
    c = agreed_case()
    c.send("transfer_handover", KZ, handover(c.now.date() + 10 * DAY))
    c.now += 10 * DAY
    c.send("transfer_completed", AE, {"handed_over_on": c.now.date().isoformat(),
                                      "place": "Almaty International Airport"})
    c.send("transfer_execution_report", AE, {"event": "enforcement_continued",
                                             "occurred_on": c.now.date().isoformat(),
                                             "term_imposed": {"years": 5}})
    assert c.state.status is tf.TransferStatus.ENFORCING
    return c


def transit_body(transfer_request_id: str, state: str = "UZ", **over: Any) -> dict[str, Any]:
    """A transit request (art. 16) with the documents of art. 16.2, by air with landing."""
    b: dict[str, Any] = {
        "transfer_request_id": transfer_request_id, "transit_state": state,
        "person": person(), "route": {"mode": "air", "transit_states": [state],
                                      "landing_in_transit": True},
        "period_from": "2025-04-01", "period_to": "2025-04-02",
        "documents": [doc(x) for x in SS_DOCS] + [doc("citizenship_proof", "AE")]}
    b.update(over)
    return b

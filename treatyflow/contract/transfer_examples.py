"""Example envelopes of the KZ–UAE 2018 transfer procedure (as tests/transfer_factories.py)."""

from __future__ import annotations

from typing import Any

from treatyflow.contract.examples import envelope, message_id

TREATY = "kz-uae-2018"
REQUEST_ID = "KZ-GPO-TR-2025-0001"
TRANSIT_ID = "KZ-GPO-TT-2025-0001"
KZ, AE = "KZ-GPO", "AE-MOJ"  # central authorities (art. 5.2)
KZ_MFA, AE_MFA = "KZ-MFA", "AE-MOFA"  # the diplomatic channel (art. 5.1)
UZ = "UZ-GPO"  # the transit state's authority (art. 16)
SS_DOCS = ("personal_data", "sentence_information", "final_judgment", "consent")
ES_DOCS = ("citizenship_proof", "dual_criminality_extract", "other_proceedings_report")
LANG = {"KZ": ("ru", "en"), "AE": ("ar", "en")}


def doc(code: str, state: str = "KZ") -> dict[str, Any]:
    """One checklist document in the requesting state's language with a translation
    (art. 6.2), signed and stamped."""
    language, translation = LANG[state]
    return {"code": code, "language": language, "translation": translation, "signed": True,
            "stamped": True, "ref": f"sha256:{code}"}


def person() -> dict[str, Any]:
    return {"full_name": "Ahmed Al Mansouri", "date_of_birth": "1990-04-12",
            "place_of_birth": "Abu Dhabi", "citizenship": ["AE"], "prisoner_ref": "KZ-UIS-4471"}


def sentence() -> dict[str, Any]:
    return {
        "court": "Specialised inter-district criminal court of Almaty",
        "judgment_date": "2023-05-10", "judgment_final_on": "2023-06-10", "enforceable": True,
        "counted_from": "2023-01-15", "term": {"years": 5},
        "offence": {"provision": "Criminal Code of the Republic of Kazakhstan, art. 190(4)",
                    "description": "Large-scale fraud", "military": False},
    }


def consent() -> dict[str, Any]:
    return {"given_by": "convicted_person", "in_writing": True, "signed_on": "2025-02-01",
            "document_ref": "consent-2025-17"}


def request_body() -> dict[str, Any]:
    """The sentencing state, Kazakhstan, asks to transfer a UAE citizen (art. 4, 6, 7.1)."""
    return {
        "sentencing_state": "KZ", "executing_state": "AE", "initiative": "sentencing_state",
        "person": person(), "sentence": sentence(), "consent": consent(),
        "language": "ru", "translation": "en", "signed": True, "stamped": True,
        "documents": [doc(c) for c in SS_DOCS],
    }


def _e(kind: str, sender: str, recipient: str, sent_at: str, body: dict[str, Any],
       **kw: Any) -> dict[str, Any]:
    kw.setdefault("request_id", REQUEST_ID)
    return envelope(kind, sender, recipient, sent_at, body, treaty_id=TREATY, **kw)


def transfer() -> dict[str, dict[str, Any]]:
    """Kind → one envelope of every kind of the transfer and transit procedures."""
    first = message_id("transfer_request")
    handover = {"handover_on": "2025-04-01", "place": "Almaty International Airport",
                "route": {"mode": "air", "transit_states": ["UZ"], "landing_in_transit": True}}
    out = [
        _e("transfer_request", KZ, AE, "2025-03-03T09:00:00+05:00", request_body()),
        # Art. 5.1: the sender's foreign ministry passes it to the recipient's.
        _e("transfer_relay", KZ_MFA, AE_MFA, "2025-03-04T10:00:00+05:00",
           {"relayed_message_id": first, "note_reference": "No. 12-3/4567"}),
        _e("transfer_documents", AE, KZ, "2025-03-10T09:00:00+04:00",
           {"documents": [doc(c, "AE") for c in ES_DOCS],
            "executing_state_provision": "UAE Penal Code, art. 451"}),  # art. 7.2
        _e("transfer_documents_request", AE, KZ, "2025-03-06T09:00:00+04:00",
           {"documents": ["medical_social_report"],
            "reason": "Art. 7.1(d): the person's health needs care on arrival."}),
        _e("transfer_consent", KZ, AE, "2025-03-05T09:00:00+05:00",
           {"consent": consent(), "document": doc("consent")}),  # art. 8.5
        _e("transfer_decision", AE, KZ, "2025-03-12T09:00:00+04:00",
           {"waive_six_months": False,
            "executing_state_provision": "UAE Penal Code, art. 451"}),  # art. 8.6
        _e("transfer_refusal", AE, KZ, "2025-03-12T09:30:00+04:00",
           {"grounds": ["national_interests"], "conditions_not_met": [],
            "reason": "The transfer would prejudice the sovereignty of the State (art. 9.2)."}),
        _e("transfer_withdrawal", KZ, AE, "2025-03-07T09:00:00+05:00",
           {"reason": "The person has withdrawn his consent (art. 8.5)."}),
        _e("transfer_handover", KZ, AE, "2025-03-20T09:00:00+05:00", handover),  # art. 3
        _e("transfer_completed", AE, KZ, "2025-04-01T18:00:00+04:00",
           {"handed_over_on": "2025-04-01", "place": "Almaty International Airport"}),
        _e("transfer_execution_report", AE, KZ, "2025-04-15T09:00:00+04:00",
           {"event": "enforcement_continued", "occurred_on": "2025-04-14",
            "term_imposed": {"years": 5}, "details": None}),  # art. 10.2, 13.1
        _e("transfer_sentence_decision", KZ, AE, "2025-09-01T09:00:00+05:00",
           {"decision": "pardon", "effect": "ends_enforcement", "decided_on": "2025-08-30",
            "details": "Pardoned by decree of the President of Kazakhstan."}),  # art. 11, 12
        _e("transfer_enforcement_change", AE, KZ, "2025-09-05T09:00:00+04:00",
           {"action": "ended", "effective_on": "2025-09-04",
            "details": "Released after the pardon."}),  # art. 12
        _e("transfer_information_request", KZ, AE, "2025-07-01T09:00:00+05:00",
           {"questions": "How is the sentence being executed? (art. 13.2)"}),
        # Art. 16: transit has its own request id, linked to the transfer.
        _e("transfer_transit_request", KZ, UZ, "2025-03-21T09:00:00+05:00",
           {"transfer_request_id": REQUEST_ID, "transit_state": "UZ", "person": person(),
            "route": handover["route"], "period_from": "2025-04-01",
            "period_to": "2025-04-02",
            "documents": [doc(x) for x in SS_DOCS] + [doc("citizenship_proof", "AE")]},
           request_id=TRANSIT_ID),
        _e("transfer_transit_decision", UZ, KZ, "2025-03-24T09:00:00+05:00",
           {"granted": True, "reason": None}, request_id=TRANSIT_ID,
           in_reply_to=message_id("transfer_transit_request")),
    ]
    return {e["kind"]: e for e in out}

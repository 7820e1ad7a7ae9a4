"""Example envelopes of the SCO 2010 procedure, fixed ids and times (as tests/factories.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from treatyflow.schemas.envelope import SCHEMA_VERSION

TREATY = "sco-2010"
REQUEST_ID = "KZ-GPO-2026-0042"
KZ, RU, RU_GPO, CN = "KZ-GPO", "RU-MIA", "RU-GPO", "CN-MPS"
HUB = "HUB"
_IDS = uuid.UUID("5b0c1e7a-4d3f-5a9e-8b21-6c7d8e9f0a1b")


def message_id(name: str) -> str:
    """A fixed message id per example (uuid5), so every rerun writes the same vectors."""
    return str(uuid.uuid5(_IDS, name))


def envelope(kind: str, sender: str, recipient: str, sent_at: str, body: dict[str, Any], *,
             request_id: str = REQUEST_ID, treaty_id: str = TREATY,
             in_reply_to: str | None = None, name: str | None = None) -> dict[str, Any]:
    """One envelope (schema_version 2) in the members' usual order."""
    return {"schema_version": SCHEMA_VERSION, "message_id": message_id(name or kind),
            "kind": kind, "request_id": request_id, "treaty_id": treaty_id,
            "sender": sender, "recipient": recipient, "sent_at": sent_at,
            "in_reply_to": in_reply_to, "body": body}


def request_body(**over: Any) -> dict[str, Any]:
    """A written request signed by the head of the requesting authority (art. 5.4, 5.5)."""
    body: dict[str, Any] = {
        "purpose": "Investigation of a fraud scheme; the suspect's accounts are abroad.",
        "assistance_requested": "Bank statements of account 123 for 2025.",
        "facts": "Between March and June 2025 funds were moved through account 123.",
        "confidentiality": "confidential",
        "form_of_cooperation": "information_exchange",
        "crime_category": "economic_money_laundering_terrorist_financing",
        "language": "ru",
        "urgent": False,
        "oral": False,
        "signed_by": {"name": "A. Head", "position": "head"},
        "sealed": False,
        "domestic_case": "KZ-2025-000123",
    }
    body.update(over)
    return body


def assistance() -> dict[str, dict[str, Any]]:
    """Kind → one envelope of every kind an authority sends under SCO 2010 (art. 5–7)."""
    mid = message_id
    out = [
        envelope("request", KZ, RU, "2026-11-23T09:00:00+05:00", request_body()),
        # Art. 5.2: an oral request, confirmed in writing within 72 hours.
        envelope("confirmation", KZ, RU, "2026-11-24T10:30:00+05:00",
                 {"request": request_body(urgent=True)}, in_reply_to=mid("request")),
        envelope("receipt", RU, KZ, "2026-11-24T09:00:00+03:00",
                 {"note": "Registered under No. 2026/1187."}, in_reply_to=mid("request")),
        envelope("clarification_request", RU, KZ, "2026-11-25T11:00:00+03:00",
                 {"topic": "additional_information",
                  "questions": "Which branch of the bank holds account 123?"}),
        envelope("clarification", KZ, RU, "2026-11-26T09:15:00+05:00",
                 {"answer": "The Almaty branch; the account was opened on 2 February 2024."},
                 in_reply_to=mid("clarification_request")),
        envelope("delay", RU, KZ, "2026-12-10T12:00:00+03:00",
                 {"reason": "The bank has 20 days to answer the court's order (art. 6.2)."}),
        envelope("forward", RU, RU_GPO, "2026-11-24T15:00:00+03:00",
                 {"to_authority": RU_GPO, "reason": "Bank records are obtained by the "
                  "prosecutor's office (art. 6.3)."}),
        envelope("deferral", RU, KZ, "2026-11-27T10:00:00+03:00",
                 {"grounds": ["public_order"],
                  "reason": "A domestic trial on the same accounts opens on 1 December."}),
        envelope("resumption", RU, KZ, "2026-12-05T10:00:00+03:00",
                 {"note": "The domestic trial has ended."}),
        envelope("refusal", RU, KZ, "2026-11-30T12:00:00+03:00",
                 {"extent": "part", "grounds": ["contrary_to_law"],
                  "reason": "Banking secrecy law bars disclosure of account 2 without a "
                            "court order.",
                  "refused_part": "statements of account 2"}),
        envelope("execution_report", RU, KZ, "2026-12-15T16:00:00+03:00",
                 {"extent": "full", "summary": "Statements of account 123 for March to June "
                  "2025 are attached (ref. sha256:stmt-123).", "confidentiality": "confidential"},
                 in_reply_to=mid("request")),
        envelope("withdrawal", KZ, RU, "2026-11-28T09:00:00+05:00",
                 {"reason": "The suspect has been arrested; the case is closed."}),
        # Art. 7.2, 7.3: consent to use the results otherwise, or to pass them on.
        envelope("consent_request", KZ, RU, "2026-12-20T10:00:00+05:00",
                 {"scope": "third_party_transfer",
                  "purpose": "Joint investigation with the Ministry of Public Security of China.",
                  "third_party": CN,
                  "reason": "The funds were moved on to an account in Urumqi."}),
        envelope("consent_decision", RU, KZ, "2026-12-21T09:00:00+03:00",
                 {"granted": True,
                  "conditions": "For the joint investigation only; no onward transfer.",
                  "reason": None}, in_reply_to=mid("consent_request")),
        envelope("results_transfer", KZ, CN, "2026-12-22T11:00:00+05:00",
                 {"consent": mid("consent_decision"),
                  "content": "Statements of account 123 for March to June 2025, as "
                             "provided by RU-MIA."}),
    ]
    return {e["kind"]: e for e in out}


def notice(original: str) -> dict[str, Any]:
    """The hub tells the requested authority of a new request and passes on the
    requester's signed original (art. 5.5) in ``originals``."""
    return envelope("notice", HUB, RU, "2026-11-23T04:00:05+00:00", {
        "event": "request_delivered", "status": "sent", "overdue": False, "deadline": None,
        "requesting": KZ, "requested": RU, "about_message_id": message_id("request"),
        "detail": {"request": request_body()}, "originals": [original]},
        in_reply_to=None)


def error() -> dict[str, Any]:
    """The hub refuses a refusal sent before the request was received."""
    return envelope("error", HUB, RU, "2026-11-24T07:00:01+00:00", {
        "problem": "not_allowed_now",
        "reasons": ["a refusal is not allowed while the request is sent (allowed when "
                    "clarification_requested, deferred, in_execution, received)"],
        "refused_message_id": message_id("refusal")}, in_reply_to=message_id("refusal"))


def as_written(data: dict[str, Any]) -> str:
    """A request as a hand-written client might send it: its own member order, white space,
    non-ASCII text left unescaped. Valid as it is: nothing is canonicalised."""
    b = data["body"]
    return (
        '{\n  "body": {\n'
        f'    "facts"  : "{b["facts"]} Владелец счёта — гражданин Казахстана.",\n'
        f'    "purpose": "{b["purpose"]}",\n'
        f'    "assistance_requested": "{b["assistance_requested"]}",\n'
        f'    "language": "ru", "confidentiality": "{b["confidentiality"]}",\n'
        f'    "form_of_cooperation": "{b["form_of_cooperation"]}",\n'
        '    "signed_by": {"position": "head", "name": "А. Руководитель"}\n'
        '  },\n'
        f'  "kind": "request", "sender": "{data["sender"]}", "recipient": '
        f'"{data["recipient"]}",\n'
        f'  "sent_at": "2026-11-23T04:00:00Z", "treaty_id": "{data["treaty_id"]}",\n'
        f'  "request_id": "KZ-GPO-2026-0043", "message_id": "{message_id("as-written")}",\n'
        f'  "schema_version": "{SCHEMA_VERSION}"\n'
        '}\n')


def minimal(data: dict[str, Any]) -> str:
    """A request with every optional member left out (in_reply_to, urgent, oral, sealed,
    crime_category, domestic_case): the defaults apply, the signature holds."""
    b = data["body"]
    required = ("purpose", "assistance_requested", "facts", "confidentiality",
                "form_of_cooperation", "language", "signed_by")
    body = {k: b[k] for k in required}
    out = {k: v for k, v in data.items() if k not in ("in_reply_to", "body")}
    out |= {"message_id": message_id("minimal"), "request_id": "KZ-GPO-2026-0044",
            "body": body}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))

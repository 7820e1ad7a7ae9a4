"""The code lists each treaty profile defines, read through the profile loaders."""

from __future__ import annotations

import typing
from typing import Any

from treatyflow import procedures
from treatyflow.schemas import transfer
from treatyflow.schemas.messages import (
    REQUESTED_KINDS,
    REQUESTER_KINDS,
    ClarificationRequestBody,
    Confidentiality,
    ConsentRequestBody,
    ExecutionReportBody,
    RefusalBody,
)
from treatyflow.schemas.treaty import known_treaties, load_header, load_profile

NOTE = ("Generated from treatyflow/schemas/treaties/{id}.json by `make contract`; the "
        "envelope's codes (kind, form_of_cooperation, grounds, ...) must be among these.")


def _literal(model: Any, field: str) -> list[str]:
    """The values a ``Literal`` field of a body model allows, in the model's order."""
    annotation = model.model_fields[field].annotation
    return [str(v) for v in typing.get_args(annotation)]


def assistance_codes(treaty_id: str) -> dict[str, Any]:
    """A request-for-assistance profile (SCO 2010): authorities, categories, grounds."""
    p = load_profile(treaty_id)
    return {
        "id": p.id, "title": p.title, "procedure": p.procedure,
        "entry_into_force": p.entry_into_force.isoformat(),
        "termination_notice_date": (p.termination_notice_date.isoformat()
                                    if p.termination_notice_date else None),
        "parties": list(p.parties),
        "working_languages": list(p.working_languages),  # art. 11
        "authorities": [a.model_dump(mode="json") for a in p.authorities],  # art. 2
        "crime_categories": list(p.crime_categories),  # art. 1
        "forms_of_cooperation": list(p.forms_of_cooperation),  # art. 3
        "confidentiality_levels": [c.value for c in Confidentiality],  # art. 5.4, 7.1
        "signatory_positions": list(p.signatory_positions),  # art. 5.5
        # Art. 6.7 (refusal or deferral), 6.8 (refusal only: allows_deferral false).
        "refusal_grounds": [g.model_dump(mode="json") for g in p.refusal_grounds],
        "refusal_extents": _literal(RefusalBody, "extent"),  # art. 6.7, 6.8
        "execution_extents": _literal(ExecutionReportBody, "extent"),  # art. 6.1
        "clarification_topics": _literal(ClarificationRequestBody, "topic"),  # art. 5.3, 6.4
        "consent_scopes": _literal(ConsentRequestBody, "scope"),  # art. 7.2, 7.3
        "deadlines": p.deadlines.model_dump(mode="json"),  # art. 5.2, 6.1; hub policy
        "kinds": {"requesting_authority": sorted(REQUESTER_KINDS),
                  "requested_authority": sorted(REQUESTED_KINDS)},
    }


def transfer_codes(treaty_id: str) -> dict[str, Any]:
    """A transfer-of-convicted-persons profile (KZ–UAE 2018)."""
    p = transfer.load_transfer_profile(treaty_id)
    documents = [{"role": c.role.value, "checklist_article": c.article,
                  **d.model_dump(mode="json")}
                 for c in p.checklists for d in c.documents]  # art. 7.1, 7.2
    return {
        "id": p.id, "title": p.title, "procedure": p.procedure,
        "entry_into_force": p.entry_into_force.isoformat(),
        "termination": p.termination.model_dump(mode="json"),  # art. 19.3
        "parties": list(p.parties),
        # Central authorities (art. 5.2) and the relays of the diplomatic channel (art. 5.1).
        "authorities": [a.model_dump(mode="json") for a in p.authorities],
        "central_authorities": {s: getattr(p.central_authority(s), "id", None)
                                for s in p.parties},
        "channel": p.channel.model_dump(mode="json"),  # art. 5.1, 6.1
        "languages": p.languages.model_dump(mode="json"),  # art. 6.2
        "documents": documents,
        "documents_after_agreement": (p.documents_after_agreement.model_dump(mode="json")
                                      if p.documents_after_agreement else None),  # art. 7.3
        "conditions": [c.model_dump(mode="json") for c in p.conditions],  # art. 8
        "refusal_grounds": [g.model_dump(mode="json") for g in p.refusal_grounds],  # art. 9
        "roles": [r.value for r in transfer.Role],  # art. 1.3, 1.4
        "time_limits": p.time_limits.model_dump(mode="json"),
        "transit": p.transit.model_dump(mode="json"),  # art. 16
        "kinds": {"sent_by": dict(sorted(transfer.SENT_BY.items())),
                  "transit": sorted(transfer.TRANSFER_KINDS - transfer.SENT_BY.keys())},
    }


def treaty_codes(treaty_id: str) -> dict[str, Any]:
    """The code lists of one shipped treaty, by its procedure's entry in the registry."""
    wanted = load_header(treaty_id).procedure
    for procedure in procedures.REGISTRY.values():
        if procedure.treaty_procedure == wanted and procedure.code_lists is not None:
            return {"note": NOTE.format(id=treaty_id), **procedure.code_lists(treaty_id)}
    raise KeyError(f"treaty {treaty_id!r}: no code list for procedure {wanted!r}")


def all_codes() -> dict[str, dict[str, Any]]:
    """Treaty id → its code lists, for every shipped profile."""
    return {treaty_id: treaty_codes(treaty_id) for treaty_id in known_treaties()}

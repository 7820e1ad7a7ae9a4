"""What a transfer owes and meets: the documents due (art. 7), the conditions of transfer
(art. 8) and the status that follows from them before agreement."""

from __future__ import annotations

from typing import Literal

from treatyflow.schemas.transfer import Role, TransferProfile
from treatyflow.workflows.transfer.dates import has_months_left, months_left_threshold, release_date
from treatyflow.workflows.transfer.state import (
    BEFORE_AGREEMENT,
    ConditionResult,
    DueDocument,
    TransferState,
    TransferStatus,
)


def due_documents(state: TransferState, profile: TransferProfile) -> list[DueDocument]:
    """What is owed now: the requester's checklist (art. 7.1 or 7.2), the sentencing
    state's once it agrees to the executing state's request (art. 7.3), and whatever the
    other state asked for (art. 7.1(d) 'if necessary')."""
    requester = state.role_of(state.requesting)
    assert requester is not None
    due: dict[str, DueDocument] = {}

    def add(role: Role, code: str, article: str) -> None:
        due.setdefault(code, DueDocument(code=code, article=article,
                                         owner=state.authority_of(role)))

    own = profile.checklist(requester)
    for rule in own.documents if own else ():
        if rule.required == "always":
            add(requester, rule.code, rule.article)
    after = profile.documents_after_agreement
    if after and after.role is not requester and state.state_of(after.role) in state.decisions:
        theirs = profile.checklist(after.role)
        for rule in theirs.documents if theirs else ():
            if rule.required == "always":
                add(after.role, rule.code, f"{after.article}, {rule.article}")
    for code in state.documents_asked:
        found = profile.document(code)
        if found:
            add(found[0], code, found[1].article)
    return list(due.values())


def missing_documents(state: TransferState, profile: TransferProfile) -> list[DueDocument]:
    return [d for d in due_documents(state, profile) if d.code not in state.documents]


def _missing_text(missing: list[DueDocument]) -> str:
    return ", ".join(f"{d.code} (art. {d.article})" for d in missing)


# --- art. 8: conditions -------------------------------------------------------------------


def evaluate_conditions(state: TransferState, profile: TransferProfile) -> list[ConditionResult]:
    """Every condition of transfer in the profile (art. 8), met, unmet, pending or waived."""
    results: list[ConditionResult] = []
    agreed = [state.decisions[s] for s in (state.sentencing_state, state.executing_state)
              if s in state.decisions]
    for c in profile.conditions:
        status: Literal["met", "unmet", "pending", "waived"]
        if c.code == "citizen_of_executing_state":
            held = ", ".join(state.person.citizenship)
            status = "met" if state.executing_state in state.person.citizenship else "unmet"
            detail = f"citizenship {held}; executing state {state.executing_state}"
        elif c.code == "judgment_final":
            s = state.sentence
            if s is None:
                status, detail = "pending", "no sentence information yet (art. 7.1(b), (c))"
            elif s.judgment_final_on is None:
                status, detail = "unmet", f"the judgment of {s.judgment_date} is not yet final"
            elif not s.enforceable:
                status, detail = "unmet", "the judgment is not subject to execution"
            else:
                status, detail = "met", f"in legal force since {s.judgment_final_on}"
        elif c.code == "six_months_left":
            assert c.months is not None
            s, received = state.sentence, state.received_on
            if s is None or received is None:
                status = "pending"
                detail = ("no sentence information yet" if s is None
                          else "the request has not yet been received")
            else:
                end = release_date(s)
                need = months_left_threshold(received, c.months)
                detail = (f"term ends {end}; received {received}: at least {c.months} months "
                          f"left needs an end on or after {need}")
                if has_months_left(received, end, c.months):
                    status = "met"
                elif (c.waivable_by_agreement and len(agreed) == 2
                      and all(d.waive_six_months for d in agreed)):
                    status, detail = "waived", detail + "; otherwise agreed by both states"
                else:
                    status = "unmet"
        elif c.code == "dual_criminality":
            if state.executing_state_provision:
                status = "met"
                detail = f"a crime in {state.executing_state}: {state.executing_state_provision}"
            else:
                status = "pending"
                detail = f"{state.executing_state} has not yet named its provision (art. 7.2(b))"
        elif c.code == "written_consent":
            if state.consent is None:
                status, detail = "pending", "no written consent yet (art. 7.1(e))"
            else:
                status = "met"
                detail = f"given by the {state.consent.given_by} on {state.consent.signed_on}"
        else:  # both_states_agree
            if state.refused_by:
                status, detail = "unmet", f"refused by {state.refused_by}"
            elif len(agreed) == 2:
                status, detail = "met", "both states agree"
            else:
                status = "pending"
                detail = "agreed so far: " + (", ".join(s for s in state.decisions) or "none")
        if c.code in state.conditions_not_met:
            status, detail = "unmet", f"{detail}; found not met by {state.refused_by}"
        results.append(ConditionResult(code=c.code, article=c.article, status=status,
                                       detail=detail))
    return results


def _settle(s: TransferState, profile: TransferProfile) -> None:
    """Before agreement the status follows from the facts; conditions are re-evaluated."""
    if s.status in BEFORE_AGREEMENT:
        if s.received_at is None:
            s.status = TransferStatus.REQUESTED
        elif missing_documents(s, profile):
            s.status = TransferStatus.DOCUMENTS_REQUESTED
        elif len(s.decisions) == 2:
            s.status = TransferStatus.AGREED
        else:
            s.status = TransferStatus.UNDER_CONSIDERATION
    s.conditions = evaluate_conditions(s, profile)

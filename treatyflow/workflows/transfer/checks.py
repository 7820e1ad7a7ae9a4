"""Every reason a message cannot be applied: a new request (art. 4–8, 19), a message on an
open transfer (its sender, timing, documents, decisions, reports) and the hub's limits."""

from __future__ import annotations

from datetime import datetime

from treatyflow.schemas import limits
from treatyflow.schemas.transfer import SENT_BY, ConsentRecord, DocumentItem, Role, TransferProfile
from treatyflow.schemas.transfer import messages as tm
from treatyflow.workflows.transfer.conditions import (
    _missing_text,
    evaluate_conditions,
    missing_documents,
)
from treatyflow.workflows.transfer.state import (
    ALLOWED_FROM,
    Deadline,
    Decision,
    TransferState,
    TransferStatus,
)


def check_language(
    profile: TransferProfile, from_state: str, to_state: str, *, what: str,
    language: str, translation: str | None, signed: bool, stamped: bool,
) -> list[str]:
    """Art. 6.2: drawn up in an official language of the sending state, with a translation
    into an official language of the receiving state or an accepted alternative (English);
    signed and stamped. Already in the receiving state's language: nothing to translate."""
    rules = profile.languages
    art = rules.article
    own = rules.official.get(from_state, ())
    theirs = rules.official.get(to_state, ())
    accepted = (*theirs, *rules.translation_alternatives)
    problems: list[str] = []
    if language not in own:
        problems.append(f"art. {art}: {what} is in {language!r}; it is drawn up in an official "
                        f"language of {from_state} ({', '.join(own)})")
    if language not in theirs:
        if translation is None:
            problems.append(f"art. {art}: {what} needs a translation into "
                            f"{' or '.join(accepted)}")
        elif translation not in accepted:
            problems.append(f"art. {art}: {what} is translated into {translation!r}; accepted: "
                            f"{', '.join(accepted)}")
    if rules.requires_signature_and_stamp and not (signed and stamped):
        problems.append(f"art. {art}: {what} must be signed and stamped by the sending authority")
    return problems


def check_consent(profile: TransferProfile, consent: ConsentRecord) -> list[str]:
    """Art. 8.5: consent in writing, by the person, or by a substitute when he cannot."""
    cond = profile.condition("written_consent")
    if cond is None:
        return []
    problems: list[str] = []
    if not consent.in_writing:
        problems.append(f"art. {cond.article}: consent to the transfer is given in writing")
    if consent.given_by != "convicted_person":
        if consent.given_by not in cond.substitutes:
            problems.append(f"art. {cond.article}: a {consent.given_by} may not consent for the "
                            "convicted person")
        elif consent.unable_reason is None:
            problems.append(f"art. {cond.article}: a {consent.given_by} acts only where the "
                            "convicted person cannot consent in writing: give unable_reason")
    return problems


# Which data each condition rests on, so a document that evidences it brings the data.
_DATA_OF: dict[str, tuple[str, Role]] = {
    "judgment_final": ("sentence", Role.SENTENCING),
    "six_months_left": ("sentence", Role.SENTENCING),
    "written_consent": ("consent", Role.SENTENCING),
    "dual_criminality": ("executing_state_provision", Role.EXECUTING),
}


def _check_items(
    profile: TransferProfile, state_role: Role, from_state: str, to_state: str,
    items: list[DocumentItem], data: dict[str, object], known: dict[str, object],
) -> list[str]:
    """Art. 6.2, 7: every document known, from the state whose checklist holds it, in the
    right language, with the data it carries."""
    problems: list[str] = []
    for item in items:
        found = profile.document(item.code)
        if found is None:
            codes = ", ".join(d.code for c in profile.checklists for d in c.documents)
            problems.append(f"art. 7: unknown document {item.code!r} (known: {codes})")
            continue
        role, rule = found
        if role is not state_role:
            problems.append(f"art. {rule.article}: {item.code} is provided by the {role.value}")
        problems += check_language(profile, from_state, to_state, what=f"{item.code} "
                                   f"(art. {rule.article})", language=item.language,
                                   translation=item.translation, signed=item.signed,
                                   stamped=item.stamped)
        carried = rule.carries
        if carried and data.get(carried) is None and known.get(carried) is None:
            problems.append(f"art. {rule.article}: {item.code} comes with its data ({carried})")
    for field, value in data.items():
        owner = next((r for f, r in _DATA_OF.values() if f == field), None)
        if value is not None and owner is not None and owner is not state_role:
            problems.append(f"art. 7: {field} is given by the {owner.value}")
    return problems


# --- opening ------------------------------------------------------------------------------


def check_new_transfer(
    profile: TransferProfile, message: tm.TransferRequestMessage, now: datetime
) -> list[str]:
    """Every reason a new transfer request cannot be opened (art. 4–8, 19); ``now`` is the
    hub's clock (art. 19 dates the start of the procedure by it, not by the sender's)."""
    problems: list[str] = []
    if message.treaty_id != profile.id:
        problems.append(f"treaty {message.treaty_id!r} does not match profile {profile.id!r}")
    sender = profile.authority(message.sender)
    recipient = profile.authority(message.recipient)
    for who, a in ((message.sender, sender), (message.recipient, recipient)):
        if a is None or a.role != "central_authority":
            problems.append(f"art. 5.2: {who} is not a central authority under {profile.id}")
    b = message.body
    parties = set(profile.parties)
    if {b.sentencing_state, b.executing_state} != parties:
        problems.append(f"art. 1.3, 1.4: the sentencing and executing states are the parties "
                        f"{' and '.join(profile.parties)}, one each")
    if problems:
        return problems
    assert sender is not None and recipient is not None
    if sender.state == recipient.state:
        problems.append("art. 5.1: a request goes to the central authority of the other state")
    role = Role.SENTENCING if sender.state == b.sentencing_state else Role.EXECUTING
    if b.initiative in (Role.SENTENCING.value, Role.EXECUTING.value):
        if b.initiative != role.value:
            problems.append(f"art. 4: a request on the {b.initiative}'s initiative is sent by "
                            f"that state, not by the {role.value}")
    elif b.wish_expressed_on is None:
        problems.append(f"art. 4: a request on the {b.initiative}'s wish gives the date of that "
                        "written wish (wish_expressed_on)")
    today = now.date()
    if today < profile.entry_into_force:
        problems.append(f"art. 19.1: {profile.id} is in force from {profile.entry_into_force}, "
                        f"not on {today}")
    ends = profile.terminated_from()
    if ends is not None and today >= ends:
        problems.append(f"art. {profile.termination.article}: {profile.id} terminated on {ends} "
                        f"({profile.termination.notice_period_days} days after notice received "
                        f"{profile.termination.notice_received_on}); only procedures initiated "
                        "before then run to their end")
    problems += check_language(profile, sender.state, recipient.state, what="the request",
                               language=b.language, translation=b.translation,
                               signed=b.signed, stamped=b.stamped)
    problems += _check_items(profile, role, sender.state, recipient.state, b.documents,
                             {"sentence": b.sentence, "consent": b.consent,
                              "executing_state_provision": b.executing_state_provision}, {})
    if b.consent is not None:
        problems += check_consent(profile, b.consent)
    return problems


# --- messages on an open transfer ---------------------------------------------------------


def check(state: TransferState, profile: TransferProfile, message: tm.TransferInbound) -> list[str]:
    """Every reason this message cannot be applied to this transfer now (empty: it can)."""
    if message.request_id != state.request_id or message.treaty_id != state.treaty_id:
        return [f"message is about {message.treaty_id}/{message.request_id}, "
                f"not {state.treaty_id}/{state.request_id}"]
    relays = set(profile.channel.relays.values())
    if message.sender not in (state.requesting, state.requested) and message.sender not in relays:
        return [f"{message.sender} is not a party to transfer {state.request_id}"]
    if message.message_id in state.applied:
        return [f"duplicate: message {message.message_id} was already applied"]
    kind = message.kind
    if kind == "transfer_request":
        return [f"transfer {state.request_id} already exists (state {state.status})"]
    if isinstance(message, tm.TransferRelayMessage):
        # A final transfer still carries its last messages to their recipients.
        return _check_relay(state, message)
    if message.sender in relays:
        return [f"art. {profile.channel.article}: a foreign ministry relays messages "
                f"(transfer_relay); it does not send a {kind}"]
    if state.final:
        return [f"transfer {state.request_id} is already {state.status}; nothing more is "
                "accepted"]
    role = state.role_of(message.sender)
    assert role is not None
    who = SENT_BY[kind]
    if who not in ("either", role.value):
        return [f"only the {who} ({state.authority_of(Role(who))}) may send a {kind}"]
    problems: list[str] = []
    counterpart = state.counterpart(message.sender)
    if message.recipient != counterpart:
        problems.append(f"recipient must be {counterpart}, not {message.recipient}")
    if state.status not in ALLOWED_FROM[kind]:
        why = ""
        if state.status is TransferStatus.DOCUMENTS_REQUESTED:
            why = f"; missing {_missing_text(missing_documents(state, profile))}"
        problems.append(f"a {kind} is not allowed while the transfer is {state.status}{why} "
                        f"(allowed when {', '.join(sorted(ALLOWED_FROM[kind]))})")
    if message.sender == state.requested and state.received_at is None:
        problems.append(f"art. {profile.channel.article}: the request has not yet reached "
                        f"{state.requested} through the {profile.channel.kind} channel")
    if problems:
        return problems
    sender_state = state.state_of(role)
    other_state = state.state_of(Role.EXECUTING if role is Role.SENTENCING else Role.SENTENCING)
    known: dict[str, object] = {"sentence": state.sentence, "consent": state.consent,
                                "executing_state_provision": state.executing_state_provision}
    match message:
        case tm.TransferDocumentsMessage():
            b = message.body
            problems += _check_items(profile, role, sender_state, other_state, b.documents,
                                     {"sentence": b.sentence, "consent": b.consent,
                                      "executing_state_provision": b.executing_state_provision},
                                     known)
            if b.consent is not None:
                problems += check_consent(profile, b.consent)
        case tm.TransferDocumentsRequestMessage():
            for code in message.body.documents:
                found = profile.document(code)
                if found is None:
                    problems.append(f"art. 7: unknown document {code!r}")
                elif found[0] is role:
                    problems.append(f"art. {found[1].article}: {code} is for the {role.value} "
                                    "itself to provide, not to ask for")
        case tm.TransferConsentMessage():
            problems += check_consent(profile, message.body.consent)
            cond = profile.condition("written_consent")
            doc = message.body.document
            found = profile.document(doc.code)
            if found is None or found[1].carries != "consent":
                problems.append(f"art. {cond.article if cond else '8.5'}: the consent comes "
                                f"with the consent document, not {doc.code!r}")
            problems += check_language(profile, sender_state, other_state,
                                       what="the consent document", language=doc.language,
                                       translation=doc.translation, signed=doc.signed,
                                       stamped=doc.stamped)
        case tm.TransferDecisionMessage():
            problems += _check_decision(state, profile, message, role)
        case tm.TransferRefusalMessage():
            for code in message.body.grounds:
                if profile.ground(code) is None:
                    known_grounds = ", ".join(g.code for g in profile.refusal_grounds)
                    problems.append(f"art. 9: unknown ground {code!r} (known: {known_grounds})")
            for code in message.body.conditions_not_met:
                if profile.condition(code) is None:
                    problems.append(f"art. 8: {code!r} is not a condition of {profile.id}")
        case _ if kind == "transfer_withdrawal" and message.sender != state.requesting:
            problems.append(f"only the requesting authority {state.requesting} withdraws; "
                            "the requested state refuses (art. 9)")
        case tm.TransferHandoverMessage():
            b2 = message.body
            if b2.handover_on < message.sent_at.date():
                problems.append(f"art. 3: the handover date {b2.handover_on} has passed")
            for t in b2.route.transit_states:
                if t in (state.sentencing_state, state.executing_state):
                    problems.append(f"art. {profile.transit.article}: {t} is a party, not a "
                                    "transit state")
        case tm.TransferCompletedMessage():
            for t, status in sorted(state.transits.items()):
                if status != "granted":
                    problems.append(f"art. {profile.transit.article}: transit through {t} is "
                                    f"{status.replace('_', ' ')}, not granted")
        case tm.TransferExecutionReportMessage():
            problems += _check_report(state, profile, message)
        case tm.TransferEnforcementChangeMessage():
            problems += _check_enforcement_change(state, profile, message)
        case _:
            pass
    return problems + limit_problems(state, message)


# A relay is never refused for a limit (it carries a message accepted before): the budget
# keeps room for every relay still to come on the channel (art. 5.1), this one's (at most
# two) included, each at most this many bytes (an envelope with the longest ids and a note
# reference of SHORT_TEXT_MAX four-byte characters).
RELAY_MAX_BYTES = 3 * 1024


def limit_problems(state: TransferState, message: tm.TransferInbound) -> list[str]:
    """Every per-request limit this message would pass (``limits``): how many of its kind,
    the bytes of all messages with its relays, the timeline; each names its number."""
    problems: list[str] = []
    cap = limits.per_kind(message.kind)
    if cap is not None and sum(e.event == message.kind for e in state.timeline) >= cap:
        problems.append(limits.limit_problem(
            f"at most {cap} {message.kind} messages per transfer, the hub's limit; transfer "
            f"{state.request_id} has {cap}"))
    relays = 2 + sum(len(d.route) - 1 - len(d.hops) for d in state.dispatches
                     if d.delivered_at is None)
    problems += limits.budget_problems(state.content_bytes, limits.content_size(message),
                                       len(state.timeline), reserve=relays * RELAY_MAX_BYTES)
    return problems


def refusal_code(problems: list[str]) -> str:
    """The problem code for a refused message: ``limit_reached`` when it passes only limits
    of the hub (``limits``), else ``not_allowed_now``."""
    if problems and all(limits.is_limit_problem(p) for p in problems):
        return limits.LIMIT_REACHED
    return "not_allowed_now"


def _check_relay(state: TransferState, message: tm.TransferRelayMessage) -> list[str]:
    mid = message.body.relayed_message_id
    d = state.dispatch(mid)
    if d is None:
        return [f"art. 5.1: there is no message {mid} on transfer {state.request_id} to relay"]
    hop = d.next_hop
    if hop is None:
        return [f"message {mid} was already delivered to {d.recipient}"]
    problems = []
    if message.sender != hop[0]:
        problems.append(f"art. 5.1: message {mid} is with {hop[0]}, not {message.sender}")
    if message.recipient != hop[1]:
        problems.append(f"the next hop of message {mid} is {hop[1]}, not {message.recipient}")
    return problems


def _check_decision(
    state: TransferState, profile: TransferProfile, message: tm.TransferDecisionMessage, role: Role
) -> list[str]:
    """Art. 8, 9.1: a state may agree only where no condition fails and no mandatory ground
    is established; the agreement that completes art. 8.6 needs every condition met."""
    problems: list[str] = []
    me = state.state_of(role)
    b = message.body
    if me in state.decisions:
        return [f"art. 8.6: {me} has already agreed"]
    if b.executing_state_provision is not None and role is not Role.EXECUTING:
        problems.append("art. 8.4: the executing state names its own provision")
    for g in profile.refusal_grounds:
        if (g.mandatory and g.established_by == "military_offence" and state.sentence
                and state.sentence.offence.military):
            problems.append(f"art. {g.article}: {g.text.lower()}: the transfer must be refused")
    hypothetical = state.model_copy(deep=True)
    hypothetical.decisions[me] = Decision(authority=message.sender, message_id=message.message_id,
                                          at=message.sent_at, waive_six_months=b.waive_six_months)
    if b.executing_state_provision:
        hypothetical.executing_state_provision = b.executing_state_provision
    completes = len(hypothetical.decisions) == 2
    six = profile.condition("six_months_left")
    for r in evaluate_conditions(hypothetical, profile):
        if r.code == "both_states_agree":
            continue
        if r.status == "unmet":
            if (six and r.code == six.code and six.waivable_by_agreement and b.waive_six_months
                    and not completes):
                continue  # 'unless otherwise agreed': the other state must waive it too
            hint = ""
            if six and r.code == six.code and six.waivable_by_agreement:
                hint = " (unless otherwise agreed: both states set waive_six_months)"
            problems.append(f"art. {r.article}: condition not met: {r.detail}{hint}")
        elif r.status == "pending" and completes:
            problems.append(f"art. {r.article}: condition not yet established: {r.detail}")
    return problems


def _check_report(
    state: TransferState, profile: TransferProfile, message: tm.TransferExecutionReportMessage
) -> list[str]:
    b = message.body
    problems: list[str] = []
    if b.event == "enforcement_continued":
        if state.status is not TransferStatus.TRANSFERRED:
            problems.append("art. 10: enforcement is already continuing")
        if b.term_imposed is None:
            problems.append("art. 10.2: give the term imposed by the court of the executing state")
    if b.event == "recapture" and not state.at_large:
        problems.append("art. 13.1: no escape was reported")
    if b.event == "escape" and state.at_large:
        problems.append("art. 13.1: the escape was already reported")
    if message.in_reply_to is not None and b.event == "information":
        if not _open_deadline(state, "information_on_request", message.in_reply_to):
            problems.append(f"art. 13.2: {message.in_reply_to} is no open request for information "
                            "that has reached the executing state")
    return problems


def _check_enforcement_change(
    state: TransferState, profile: TransferProfile, message: tm.TransferEnforcementChangeMessage
) -> list[str]:
    """Art. 12: answers a decision of the sentencing state that has reached the executing state."""
    ref = message.in_reply_to
    d = state.dispatch(ref) if ref else None
    if d is None or d.kind != "transfer_sentence_decision" or d.delivered_at is None:
        return ["art. 12: an enforcement change replies (in_reply_to) to the sentencing state's "
                "decision once it has reached the executing state"]
    effect = d.payload["body"]["effect"]
    wanted = {"ends_enforcement": "ended", "changes_enforcement": "changed"}.get(effect)
    if wanted is None:
        return [f"art. 12: the decision {ref} does not end or change enforcement"]
    if message.body.action != wanted:
        return [f"art. 12: the decision {ref} {effect.replace('_', ' ')}; report '{wanted}', "
                f"not '{message.body.action}'"]
    return []


def _open_deadline(state: TransferState, code: str, about: str) -> Deadline | None:
    return next((d for d in state.deadlines
                 if d.open and d.code == code and d.about_message_id == about), None)

"""What the treaty and the hub allow of a request for assistance: every reason a message
is refused, and the code it is refused with (SCO 2010, art. 2–7, 11–13)."""

from __future__ import annotations

from treatyflow.schemas import limits
from treatyflow.schemas import messages as ms
from treatyflow.schemas.messages import CONSENT_KINDS, REQUESTED_KINDS, REQUESTER_KINDS, RequestBody
from treatyflow.schemas.treaty import TreatyProfile
from treatyflow.workflows.assistance.state import FINAL, RequestState, Status

# --- sending ------------------------------------------------------------------------


def check_request_content(profile: TreatyProfile, body: RequestBody, *, written: bool) -> list[str]:
    """What the treaty requires of a request's content; every problem, each with its article."""
    problems: list[str] = []
    if body.language not in profile.working_languages:
        problems.append(
            f"art. 11: language {body.language!r} is not a working language of {profile.id} "
            f"({', '.join(profile.working_languages)})"
        )
    if body.oral and not body.urgent:
        problems.append("art. 5.2: a request may be transmitted orally only in urgent cases")
    if written and body.oral:
        problems.append("art. 5.2: a written confirmation must not itself be marked oral")
    if written or not body.oral:
        if body.signed_by is None and not body.sealed:
            problems.append(
                "art. 5.5: a written request must be signed by the head of the requesting "
                "authority or a deputy, and/or sealed (neither signed_by nor sealed)"
            )
        elif body.signed_by is not None and body.signed_by.position not in (
            profile.signatory_positions
        ):
            problems.append(
                f"art. 5.5: signed by a {body.signed_by.position!r}; only "
                f"{' or '.join(profile.signatory_positions)} may sign"
            )
    if body.form_of_cooperation not in profile.forms_of_cooperation:
        problems.append(
            f"art. 3: form of cooperation {body.form_of_cooperation!r} is not one of "
            f"{', '.join(profile.forms_of_cooperation)}"
        )
    if body.crime_category is not None and body.crime_category not in profile.crime_categories:
        problems.append(f"art. 1: crime category {body.crime_category!r} is not in the profile")
    return problems


def check_new_request(profile: TreatyProfile, message: ms.RequestMessage) -> list[str]:
    """Every reason a new request cannot be sent under this treaty (art. 2, 5, 11, 13)."""
    problems: list[str] = []
    if message.treaty_id != profile.id:
        problems.append(f"treaty {message.treaty_id!r} does not match profile {profile.id!r}")
    sender = profile.authority(message.sender)
    recipient = profile.authority(message.recipient)
    if sender is None:
        problems.append(
            f"art. 2: {message.sender} is not a competent authority under {profile.id}"
        )
    if recipient is None:
        problems.append(
            f"art. 2: {message.recipient} is not a competent authority under {profile.id}"
        )
    if sender and recipient and sender.state == recipient.state:
        problems.append(
            f"art. 2, 5.1: both authorities belong to {sender.state}; a request goes between "
            "the competent authorities of two different parties"
        )
    sent_on = message.sent_at.date()
    if sent_on < profile.entry_into_force:
        problems.append(f"art. 12: {profile.id} was not in force on {sent_on.isoformat()}")
    if profile.termination_notice_date is not None and sent_on >= profile.termination_notice_date:
        problems.append(
            f"art. 13: {profile.id} was terminated on {profile.termination_notice_date}; "
            "only requests begun before it run on (art. 13.3)"
        )
    problems += check_request_content(profile, message.body, written=False)
    return problems


# --- messages on an open request ----------------------------------------------------

_ALLOWED_FROM: dict[str, frozenset[Status]] = {
    "confirmation": frozenset(Status) - FINAL,
    "receipt": frozenset({Status.SENT, Status.FORWARDED}),
    "clarification_request": frozenset({Status.RECEIVED, Status.IN_EXECUTION}),
    "clarification": frozenset({Status.CLARIFICATION_REQUESTED}),
    "delay": frozenset({Status.RECEIVED, Status.IN_EXECUTION}),
    "forward": frozenset({Status.SENT, Status.FORWARDED, Status.RECEIVED, Status.IN_EXECUTION}),
    "deferral": frozenset({Status.RECEIVED, Status.IN_EXECUTION}),
    "resumption": frozenset({Status.DEFERRED}),
    "refusal": frozenset(
        {Status.RECEIVED, Status.IN_EXECUTION, Status.DEFERRED, Status.CLARIFICATION_REQUESTED}
    ),
    "execution_report": frozenset({Status.RECEIVED, Status.IN_EXECUTION}),
    "withdrawal": frozenset(Status) - FINAL,
    "consent_request": frozenset({Status.EXECUTED}),
    "consent_decision": frozenset({Status.EXECUTED}),
    "results_transfer": frozenset({Status.EXECUTED}),
}
CONSENT_REQUIRED = "consent_required"


def not_a_party(state: RequestState, message: ms.InboundMessage) -> list[str]:
    """The refusal for a sender who never was a party to the request (requester, requested
    authority, or one it was forwarded from, art. 6.3); empty for a party."""
    if message.sender in (state.requesting, state.requested, *state.forwarded_from):
        return []
    return [f"{message.sender} is not a party to request {state.request_id}"]


def check(state: RequestState, profile: TreatyProfile, message: ms.InboundMessage) -> list[str]:
    """Every reason this message cannot be applied to this request now (empty: it can)."""
    kind = message.kind
    if message.request_id != state.request_id or message.treaty_id != state.treaty_id:
        return [f"message is about {message.treaty_id}/{message.request_id}, "
                f"not {state.treaty_id}/{state.request_id}"]
    # Who asks comes first: a stranger learns nothing about the request.
    if message.sender not in (state.requesting, state.requested):
        return [f"{message.sender} is not a party to request {state.request_id}"]
    if message.message_id in state.applied:
        return [f"duplicate: message {message.message_id} was already applied"]
    if kind == "request":
        return [f"request {state.request_id} already exists (state {state.status})"]
    if kind in REQUESTER_KINDS and message.sender != state.requesting:
        return [f"only the requesting authority {state.requesting} may send a {kind}"]
    if kind in REQUESTED_KINDS and message.sender != state.requested:
        return [f"only the requested authority {state.requested} may send a {kind}"]
    if kind in CONSENT_KINDS:
        return _check_after_results(state, profile, message) + limit_problems(state, message)
    counterpart = state.requested if message.sender == state.requesting else state.requesting
    problems: list[str] = []
    if message.recipient != counterpart:
        problems.append(f"recipient must be {counterpart}, not {message.recipient}")
    if state.final:
        return [f"request {state.request_id} is already {state.status}; nothing more is accepted"]
    if state.status not in _ALLOWED_FROM[kind]:
        problems.append(
            f"a {kind} is not allowed while the request is {state.status} "
            f"(allowed when {', '.join(sorted(_ALLOWED_FROM[kind]))})"
        )
    match message:
        case ms.ConfirmationMessage():
            if not state.oral_unconfirmed:
                problems.append("art. 5.2: there is no unconfirmed oral request to confirm")
            problems += check_request_content(profile, message.body.request, written=True)
        case ms.ForwardMessage():
            target = profile.authority(message.body.to_authority)
            current = profile.authority(state.requested)
            if target is None:
                problems.append(
                    f"art. 6.3: {message.body.to_authority} is not a competent authority "
                    f"under {profile.id}"
                )
            elif current is not None and target.state != current.state:
                problems.append(
                    f"art. 6.3: a request is forwarded within the same state ({current.state}), "
                    f"not to {target.state}"
                )
            elif target.id == state.requested or target.id in state.forwarded_from:
                problems.append(f"art. 6.3: {target.id} already had this request")
        case ms.DeferralMessage():
            problems += _check_grounds(profile, message.body.grounds, deferral=True)
        case ms.RefusalMessage():
            problems += _check_grounds(profile, message.body.grounds, deferral=False)
            if message.body.extent == "part":
                if not message.body.refused_part:
                    problems.append("art. 6.9: a refusal in part must say which part")
                if state.refused_part:
                    problems.append("a part of this request was already refused")
        case ms.ExecutionReportMessage():
            if state.refused_part and message.body.extent == "full":
                problems.append(
                    f"part of the request was refused ({state.refused_part}); "
                    "the execution report must be partial"
                )
        case _:
            pass
    if kind == "clarification" and message.in_reply_to != state.open_clarification:
        problems.append(
            f"a clarification must reply to the open clarification request "
            f"{state.open_clarification} (in_reply_to is {message.in_reply_to})"
        )
    return problems + limit_problems(state, message)


# Where the treaty speaks of each kind a request may carry more than once: named in the
# refusal of one past its limit (the limits themselves are hub policy, ``limits``).
_ARTICLE = {"delay": "art. 6.2", "clarification_request": "art. 5.3, 6.4",
            "forward": "art. 6.3", "deferral": "art. 6.7, 6.9",
            "consent_request": "art. 7.2, 7.3", "results_transfer": "art. 7.3"}
# Hub policy, not treaty text: every consent request extends the consent phase and its
# record, so a request's record stays bounded (continue-as-new carries it whole).
MAX_CONSENT_REQUESTS = limits.MAX_PER_KIND


def limit_problems(state: RequestState, message: ms.InboundMessage) -> list[str]:
    """Every per-request limit this message would pass (``limits``): how many of its kind,
    the bytes of all messages, the timeline; each refusal names the limit and its number."""
    problems: list[str] = []
    cap = limits.per_kind(message.kind)
    if cap is not None and sum(e.event == message.kind for e in state.timeline) >= cap:
        where = f" ({_ARTICLE[message.kind]})" if message.kind in _ARTICLE else ""
        problems.append(limits.limit_problem(
            f"at most {cap} {message.kind} messages{where} per request, the hub's limit; "
            f"request {state.request_id} has {cap}"))
    problems += limits.budget_problems(state.content_bytes, limits.content_size(message),
                                       len(state.timeline))
    return problems


def _closed_to_consent(state: RequestState) -> str:
    return (f"request {state.request_id} is executed and the hub's consent phase for its "
            "results has closed; nothing more is accepted")


def _check_after_results(
    state: RequestState, profile: TreatyProfile, message: ms.InboundMessage
) -> list[str]:
    """Consent messages and transfers: only about results provided, while the hub carries
    them (art. 7)."""
    kind, results = message.kind, state.results
    if state.status is not Status.EXECUTED or results is None:
        return [f"art. 7: a {kind} concerns results provided, and request {state.request_id} "
                f"has none (it is {state.status})"]
    if not state.consent_open:
        return [_closed_to_consent(state)]
    problems: list[str] = []
    counterpart = state.requested if message.sender == state.requesting else state.requesting
    if kind != "results_transfer" and message.recipient != counterpart:
        problems.append(f"recipient must be {counterpart}, not {message.recipient}")
    match message:
        case ms.ConsentRequestMessage():
            body = message.body
            if body.third_party is not None:
                problems += _check_third_party(state, profile, body.third_party)
            pending = [c for c in results.consents if c.granted is None and c.scope == body.scope
                       and c.third_party == body.third_party]
            if pending:
                problems.append(f"consent request {pending[0].request_message_id} for the same "
                                "scope is still awaiting its decision")
        case ms.ConsentDecisionMessage():
            asked = results.consent(message.in_reply_to)
            if asked is None or asked.request_message_id != message.in_reply_to:
                undecided = [c.request_message_id for c in results.consents if c.granted is None]
                problems.append(
                    "a consent decision must reply to a consent request on record "
                    f"(undecided: {', '.join(undecided) or 'none'}; in_reply_to is "
                    f"{message.in_reply_to})")
            elif asked.granted is not None:
                problems.append(f"consent request {asked.request_message_id} was already "
                                f"decided ({asked.decision_message_id})")
        case ms.ResultsTransferMessage():
            problems += consent_problems(state, message)
        case _:  # pragma: no cover - CONSENT_KINDS are the three above
            pass
    return problems


def _check_third_party(state: RequestState, profile: TreatyProfile, third: str) -> list[str]:
    """Art. 7.3: a third party is an authority of a state other than the two parties'."""
    target = profile.authority(third)
    if target is None:
        return [f"art. 7.3: {third} is not a competent authority under {profile.id}; the hub "
                "carries results only between them"]
    own = {a.state for a in (profile.authority(state.requesting),
                             profile.authority(state.requested)) if a is not None}
    if target.state in own:
        return [f"art. 7.3: {third} belongs to {target.state}, a party to this request, not a "
                "third party; its use of the results is use for another purpose (art. 7.2)"]
    return []


def consent_problems(state: RequestState, message: ms.ResultsTransferMessage) -> list[str]:
    """Art. 7.3: why these results may not go to this recipient (empty: a granted consent
    for exactly this third party is on record)."""
    assert state.results is not None
    provider, to = state.results.provided_by, message.recipient
    consent = state.results.consent(message.body.consent)
    if consent is None or consent.decision_message_id != message.body.consent:
        return [f"art. 7.3: no consent decision {message.body.consent} is on record for request "
                f"{state.request_id}; results go to a third party only with the prior written "
                f"approval of {provider}"]
    if not consent.granted:
        return [f"art. 7.3: {provider} refused consent ({consent.decision_message_id}) to "
                f"transmit the results to {consent.third_party or 'another party'}"]
    if consent.scope != "third_party_transfer":
        return [f"art. 7.2, 7.3: consent {consent.decision_message_id} is for use for another "
                "purpose, not for a transfer to a third party"]
    if consent.third_party != to:
        return [f"art. 7.3: consent {consent.decision_message_id} covers a transfer to "
                f"{consent.third_party}, not to {to}"]
    return []


def refusal_code(state: RequestState, message: ms.InboundMessage, problems: list[str]) -> str:
    """The problem code for a refused message: ``limit_reached`` when it passes only limits
    of the hub (``limits``), ``consent_required`` when the only thing missing is the
    providing authority's consent (art. 7), else ``not_allowed_now``."""
    if problems and all(limits.is_limit_problem(p) for p in problems):
        return limits.LIMIT_REACHED
    if (isinstance(message, ms.ResultsTransferMessage) and problems and state.consent_open
            and set(problems) <= set(consent_problems(state, message))):
        return CONSENT_REQUIRED
    return "not_allowed_now"


def _check_grounds(profile: TreatyProfile, codes: list[str], *, deferral: bool) -> list[str]:
    problems = []
    for code in codes:
        ground = profile.ground(code)
        if ground is None:
            known = ", ".join(g.code for g in profile.refusal_grounds)
            problems.append(f"art. 6.7/6.8: unknown ground {code!r} (known: {known})")
        elif deferral and not ground.allows_deferral:
            problems.append(f"art. {ground.article}: {code!r} allows refusal, not deferral")
    return problems

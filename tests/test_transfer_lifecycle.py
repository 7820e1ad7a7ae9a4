"""The transfer of a convicted person (KZ–UAE 2018) as a pure lifecycle: the profile, the
channel's hops, art. 4, 6.2, 7, 8 (the six-month rule at its boundaries), 9, 10–13, 16, 19."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.transfer_factories import (
    AE,
    AE_MFA,
    DAY,
    ES_DOCS,
    KZ,
    KZ_MFA,
    PROFILE,
    SS_DOCS,
    T0,
    Case,
    agreed_case,
    consent,
    doc,
    enforcing_case,
    es_request_body,
    handover,
    message,
    person,
    request_body,
    sentence,
    transit_body,
    transit_message,
)
from treatyflow.schemas.transfer import (
    Channel,
    Role,
    Term,
    TransferProfile,
    load_transfer_profile,
)
from treatyflow.schemas.treaty import load_profile
from treatyflow.workflows import transfer as tf
from treatyflow.workflows.lifecycle import Rejected
from treatyflow.workflows.transfer import TransferStatus as S

# --- the profile -----------------------------------------------------------------------


def test_profile_carries_the_treaty() -> None:
    p = PROFILE
    assert p.parties == ("KZ", "AE")
    assert p.central_authority("KZ").id == KZ  # type: ignore[union-attr]
    assert p.central_authority("AE").id == AE  # type: ignore[union-attr]
    assert p.channel.kind == "diplomatic" and p.relay("KZ") == KZ_MFA and p.relay("AE") == AE_MFA
    assert [(d.code, d.article) for d in p.checklist(Role.SENTENCING).documents] == [  # type: ignore[union-attr]
        ("personal_data", "7.1(a)"), ("sentence_information", "7.1(b)"),
        ("final_judgment", "7.1(c)"), ("medical_social_report", "7.1(d)"),
        ("consent", "7.1(e)")]
    assert [d.article for d in p.checklist(Role.EXECUTING).documents] == [  # type: ignore[union-attr]
        "7.2(a)", "7.2(b)", "7.2(c)"]
    assert [c.article for c in p.conditions] == ["8.1", "8.2", "8.3", "8.4", "8.5", "8.6"]
    assert {g.article: g.mandatory for g in p.refusal_grounds} == {
        "9.1(a)": True, "9.1(b)": True, "9.1(c)": True, "9.2(a)": False, "9.2(b)": False}
    assert p.termination.notice_period_days == 180 and p.termination.article == "19.3"
    assert "Illustrative" in p.entry_into_force_source
    limits = p.time_limits
    for limit in (limits.relay_hop, limits.handover, limits.enforcement_change,
                  limits.information_on_request):
        assert limit is not None and limit.basis == "hub_policy"  # the treaty sets no days
    assert limits.enforcement_change.article == "12"  # type: ignore[union-attr]
    assert "immediately" in limits.enforcement_change.treaty_text  # type: ignore[union-attr]


def test_profile_joins_the_registry_and_is_no_request_for_assistance_profile() -> None:
    """treaty.all_authorities() reads every profile's header; load_profile refuses a profile
    of another procedure, so no request for assistance opens under this treaty."""
    from treatyflow.schemas.treaty import all_authorities, load_header

    assert load_header("kz-uae-2018").procedure == "transfer-of-convicted-person"
    assert {KZ, AE, KZ_MFA, AE_MFA} <= set(all_authorities())
    with pytest.raises(KeyError, match="not a request-for-assistance"):
        load_profile("kz-uae-2018")
    with pytest.raises(KeyError, match="not a transfer-of-convicted-person"):
        load_transfer_profile("sco-2010")


def test_profile_rejects_an_inconsistent_profile() -> None:
    data = PROFILE.model_dump(mode="json")
    data["channel"]["relays"]["AE"] = "AE-NOBODY"
    with pytest.raises(ValidationError, match="AE-NOBODY"):
        TransferProfile.model_validate(data)
    data = PROFILE.model_dump(mode="json")
    data["transit"]["required_documents"] = ["personal_data", "passport"]
    with pytest.raises(ValidationError, match="passport"):
        TransferProfile.model_validate(data)


# --- the six-month rule (art. 8.3) as a date function -------------------------------------


@pytest.mark.parametrize(("day", "months", "expected"), [
    (date(2025, 1, 31), 1, date(2025, 2, 28)),
    (date(2024, 1, 31), 1, date(2024, 2, 29)),  # leap year
    (date(2025, 1, 31), 6, date(2025, 7, 31)),
    (date(2025, 8, 31), 6, date(2026, 2, 28)),
    (date(2027, 8, 31), 6, date(2028, 2, 29)),  # leap year
    (date(2025, 8, 29), 6, date(2026, 2, 28)),
    (date(2024, 2, 29), 6, date(2024, 8, 29)),
    (date(2024, 2, 29), 12, date(2025, 2, 28)),
    (date(2025, 12, 15), 6, date(2026, 6, 15)),  # over the year's end
    (date(2025, 3, 3), 0, date(2025, 3, 3)),
])
def test_add_months_clamps_to_the_month_end(day: date, months: int, expected: date) -> None:
    assert tf.add_months(day, months) == expected


@pytest.mark.parametrize(("received", "release", "met"), [
    (date(2025, 3, 3), date(2025, 9, 3), True),  # exactly six months
    (date(2025, 3, 3), date(2025, 9, 2), False),  # a day less
    (date(2025, 3, 3), date(2025, 9, 4), True),
    (date(2025, 8, 31), date(2026, 2, 28), True),  # month end: 31 Aug + 6 = 28 Feb
    (date(2025, 8, 31), date(2026, 2, 27), False),
    (date(2027, 8, 31), date(2028, 2, 29), True),  # leap year: 29 Feb
    (date(2027, 8, 31), date(2028, 2, 28), False),
    (date(2025, 1, 31), date(2025, 7, 31), True),
    (date(2025, 1, 31), date(2025, 7, 30), False),
    (date(2024, 2, 29), date(2024, 8, 29), True),
    (date(2024, 2, 29), date(2024, 8, 28), False),
    (date(2025, 3, 3), date(2025, 3, 3), False),  # released on the day of receipt
])
def test_six_months_left_at_its_boundaries(received: date, release: date, met: bool) -> None:
    assert tf.has_months_left(received, release, 6) is met


def test_term_end_counts_calendar_years_months_then_days() -> None:
    assert tf.term_end(date(2020, 2, 29), Term(years=1)) == date(2021, 2, 28)
    assert tf.term_end(date(2020, 2, 29), Term(years=4)) == date(2024, 2, 29)
    assert tf.term_end(date(2025, 1, 31), Term(months=1, days=1)) == date(2025, 3, 1)
    s = tf.SentenceData.model_validate(sentence(release_date="2026-01-01"))
    assert tf.release_date(s) == date(2026, 1, 1)  # a release date given prevails


def _six_months(case: Case) -> tf.ConditionResult:
    return next(c for c in case.state.conditions if c.code == "six_months_left")


def test_six_months_is_evaluated_on_the_day_the_request_is_received() -> None:
    # Sent 3 March; the channel takes two days; received 5 March 2025.
    exactly = sentence(release_date="2025-09-05")
    c = Case(request_body(sentence=exactly))
    assert c.state.received_on == date(2025, 3, 5)
    assert _six_months(c).status == "met"
    short = Case(request_body(sentence=sentence(release_date="2025-09-04")))
    assert _six_months(short).status == "unmet"
    assert "2025-09-05" in _six_months(short).detail
    # Met on the day it was sent, not on the day it was received: unmet.
    assert tf.has_months_left(date(2025, 3, 3), date(2025, 9, 4), 6)


def test_six_months_pending_until_received() -> None:
    c = Case(deliver=False)
    assert c.state.status is S.REQUESTED
    assert _six_months(c).status == "pending"


def test_short_term_blocks_agreement_unless_both_states_agree_otherwise() -> None:
    body = request_body(sentence=sentence(release_date="2025-08-01"))
    c = Case(body)
    problems = c.refused("transfer_decision", AE,
                         {"executing_state_provision": "UAE Penal Code, art. 451"})
    assert any(p.startswith("art. 8.3") and "unless otherwise agreed" in p for p in problems)
    # 'unless otherwise agreed': one state waives, the other must too.
    c.agree(AE, executing_state_provision="UAE Penal Code, art. 451", waive_six_months=True)
    assert _six_months(c).status == "unmet"
    assert any(p.startswith("art. 8.3") for p in c.refused("transfer_decision", KZ, {}))
    c.agree(KZ, waive_six_months=True)
    assert _six_months(c).status == "waived"
    assert c.state.status is S.AGREED


# --- art. 8: the other conditions -----------------------------------------------------


def _condition(case: Case, code: str) -> tf.ConditionResult:
    return next(c for c in case.state.conditions if c.code == code)


def _both_agree(c: Case) -> None:
    """The UAE agrees naming its law (art. 8.4), then Kazakhstan: agreed (art. 8.6)."""
    c.agree(AE, executing_state_provision="UAE Penal Code, art. 451")
    c.agree(KZ)
    assert c.state.status is S.AGREED


def test_all_conditions_met_lead_to_agreement_and_are_shown() -> None:
    c = agreed_case()
    assert {r.code: r.status for r in c.state.conditions} == {
        "citizen_of_executing_state": "met", "judgment_final": "met", "six_months_left": "met",
        "dual_criminality": "met", "written_consent": "met", "both_states_agree": "met"}
    assert c.events(KZ).count("agreed") == 1 and c.events(AE).count("agreed") == 1


@pytest.mark.parametrize(("citizenship", "status"), [
    (["AE"], "met"), (["KZ", "AE"], "met"), (["KZ"], "unmet"), (["RU"], "unmet")])
def test_citizen_of_executing_state_art_8_1(citizenship: list[str], status: str) -> None:
    c = Case(request_body(person=person(citizenship=citizenship)))
    assert _condition(c, "citizen_of_executing_state").status == status
    if status == "unmet":
        problems = c.refused("transfer_decision", KZ, {})
        assert any(p.startswith("art. 8.1: condition not met") for p in problems)


@pytest.mark.parametrize(("changes", "status"), [
    ({}, "met"),
    ({"judgment_final_on": None}, "unmet"),
    ({"enforceable": False}, "unmet"),
])
def test_judgment_final_art_8_2(changes: dict[str, Any], status: str) -> None:
    c = Case(request_body(sentence=sentence(**changes)))
    assert _condition(c, "judgment_final").status == status
    if status == "unmet":
        assert any(p.startswith("art. 8.2") for p in c.refused("transfer_decision", KZ, {}))


def test_dual_criminality_art_8_4_pending_until_the_executing_state_names_its_law() -> None:
    c = Case()
    assert _condition(c, "dual_criminality").status == "pending"
    c.agree(KZ)  # the first agreement may leave it pending
    problems = c.refused("transfer_decision", AE, {})  # the completing one may not
    assert any(p.startswith("art. 8.4: condition not yet established") for p in problems)
    # Only the executing state names its own law.
    c2 = Case()
    assert any("art. 8.4" in p for p in c2.refused(
        "transfer_decision", KZ, {"executing_state_provision": "UAE Penal Code, art. 451"}))
    c.agree(AE, executing_state_provision="UAE Penal Code, art. 451")
    assert _condition(c, "dual_criminality").status == "met"
    assert c.state.status is S.AGREED


def test_dual_criminality_unmet_when_the_executing_state_refuses_on_it() -> None:
    c = Case()
    c.send("transfer_refusal", AE, {"conditions_not_met": ["dual_criminality"],
                                    "reason": "Simple fraud below this sum is no crime here."})
    assert c.state.status is S.REFUSED
    assert _condition(c, "dual_criminality").status == "unmet"
    assert _condition(c, "both_states_agree").status == "unmet"


def test_written_consent_art_8_5() -> None:
    c = Case(request_body(consent=..., documents=[doc(x) for x in SS_DOCS if x != "consent"]))
    assert _condition(c, "written_consent").status == "pending"
    assert c.state.status is S.DOCUMENTS_REQUESTED  # 7.1(e) is owed
    # Not in writing, or by a substitute without saying why the person cannot consent.
    for bad, expected in [
        (consent(in_writing=False), "consent to the transfer is given in writing"),
        (consent(given_by="spouse"), "give unable_reason"),
    ]:
        problems = c.refused("transfer_consent", KZ, {"consent": bad, "document": doc("consent")})
        assert any(p.startswith("art. 8.5") and expected in p for p in problems), problems
    # Only the sentencing state, holding the person, sends the consent.
    assert any("only the sentencing_state" in p for p in c.refused(
        "transfer_consent", AE, {"consent": consent(), "document": doc("consent", "AE")}))
    c.send("transfer_consent", KZ, {
        "consent": consent(given_by="close_relative",
                           unable_reason="The convicted person cannot write after a stroke."),
        "document": doc("consent")})
    assert _condition(c, "written_consent").status == "met"
    assert "close_relative" in _condition(c, "written_consent").detail
    assert c.state.status is S.UNDER_CONSIDERATION


def test_new_request_with_invalid_consent_is_refused() -> None:
    m = message("transfer_request", KZ, AE, request_body(consent=consent(in_writing=False)))
    problems = tf.check_new_transfer(PROFILE, m, T0)  # type: ignore[arg-type]
    assert problems == ["art. 8.5: consent to the transfer is given in writing"]


def test_both_states_agree_art_8_6() -> None:
    c = Case()
    assert _condition(c, "both_states_agree").status == "pending"
    c.agree(KZ)
    assert _condition(c, "both_states_agree").status == "pending"
    assert "KZ" in _condition(c, "both_states_agree").detail
    assert c.refused("transfer_decision", KZ, {}) == [
        "art. 8.6: KZ has already agreed"]
    c.agree(AE, executing_state_provision="UAE Penal Code, art. 451")
    assert _condition(c, "both_states_agree").status == "met"


# --- art. 9: refusal ------------------------------------------------------------------


@pytest.mark.parametrize("ground", [g.code for g in PROFILE.refusal_grounds])
def test_every_refusal_ground_refuses_with_its_code_and_written_reason(ground: str) -> None:
    c = Case()
    g = PROFILE.ground(ground)
    assert g is not None
    sender = KZ if g.concerns is Role.SENTENCING else AE
    reason = f"Refused under art. {g.article} of the agreement, as explained."
    c.send("transfer_refusal", sender, {"grounds": [ground], "reason": reason})
    assert c.state.status is S.REFUSED and c.state.final
    assert c.state.grounds == [ground] and c.state.refused_by == sender
    entry = next(e for e in c.state.timeline if e.event == "transfer_refusal")
    assert ground in (entry.note or "") and reason in (entry.note or "")
    # The refusal is delivered to the other state through the channel.
    assert "delivered" in c.events(c.state.counterpart(sender))
    assert c.refused("transfer_decision", AE, {})[0].endswith("nothing more is accepted")


def test_refusal_needs_a_known_ground_and_written_reasons() -> None:
    c = Case()
    problems = c.refused("transfer_refusal", AE, {"grounds": ["whim"],
                                                  "reason": "We would rather not, thank you."})
    assert problems[0].startswith("art. 9: unknown ground 'whim'")
    with pytest.raises(ValidationError):
        c.msg("transfer_refusal", AE, {"grounds": ["military_offence"], "reason": "No."})
    with pytest.raises(ValidationError, match="at least one ground"):
        c.msg("transfer_refusal", AE, {"reason": "We would rather not, thank you."})


def test_mandatory_ground_established_by_the_request_forbids_agreement_art_9_1_b() -> None:
    military = sentence(offence={"provision": "Military Criminal Code, art. 12",
                                 "description": "Desertion", "military": True})
    c = Case(request_body(sentence=military))
    problems = c.refused("transfer_decision", AE,
                         {"executing_state_provision": "UAE Penal Code, art. 451"})
    assert any(p.startswith("art. 9.1(b)") and "must be refused" in p for p in problems)
    c.send("transfer_refusal", AE, {"grounds": ["military_offence"],
                                    "reason": "The sentence was passed for desertion."})
    assert c.state.status is S.REFUSED


def test_optional_grounds_do_not_stop_an_agreement() -> None:
    """Art. 9.2: 'may be refused': a state that chooses not to may agree."""
    assert not any(g.mandatory for g in PROFILE.refusal_grounds if g.article.startswith("9.2"))
    agreed_case()


# --- art. 7: documents ----------------------------------------------------------------


def test_missing_document_stops_the_request_names_the_article_and_resumes() -> None:
    docs = [doc(code) for code in SS_DOCS if code != "final_judgment"]
    c = Case(request_body(documents=docs), deliver=False)
    asked = [n for n in c.notices if n.event == "documents_requested"]
    assert [n.recipient for n in asked] == [KZ]
    assert asked[0].detail["documents"] == [{"code": "final_judgment", "article": "7.1(c)"}]
    assert any(e.event == "documents_requested" and "art. 7.1(c)" in (e.note or "")
               for e in c.state.timeline)
    c.relay(c.request_id)
    assert c.state.status is S.DOCUMENTS_REQUESTED
    problems = c.refused("transfer_decision", AE, {})
    assert "missing final_judgment (art. 7.1(c))" in problems[0]
    c.send("transfer_documents", KZ, {"documents": [doc("final_judgment")]})
    assert c.state.status is S.UNDER_CONSIDERATION
    _both_agree(c)


def test_a_document_on_request_art_7_1_d() -> None:
    c = Case()
    c.send("transfer_documents_request", AE, {"documents": ["medical_social_report"],
                                              "reason": "He is under treatment."})
    assert c.state.status is S.DOCUMENTS_REQUESTED
    asked = [n for n in c.notices if n.event == "documents_requested"]
    assert asked[-1].detail["documents"] == [{"code": "medical_social_report",
                                              "article": "7.1(d)"}]
    # A state asks for the other's documents, not its own.
    assert "is for the executing_state itself" in c.refused(
        "transfer_documents_request", AE, {"documents": ["citizenship_proof"], "reason": "x"})[0]
    c.send("transfer_documents", KZ, {"documents": [doc("medical_social_report")]})
    assert c.state.status is S.UNDER_CONSIDERATION


def test_documents_come_from_the_state_whose_checklist_holds_them() -> None:
    c = Case()
    problems = c.refused("transfer_documents", KZ, {"documents": [doc("citizenship_proof")]})
    assert problems == ["art. 7.2(a): citizenship_proof is provided by the executing_state"]
    problems = c.refused("transfer_documents", KZ, {"documents": [doc("passport")]})
    assert problems[0].startswith("art. 7: unknown document 'passport'")
    # 7.1(b) brings the sentence data with it.
    c2 = Case(request_body(sentence=..., documents=[doc(x) for x in SS_DOCS
                                                      if x != "sentence_information"]))
    assert c2.refused("transfer_documents", KZ, {"documents": [doc("sentence_information")]}) == [
        "art. 7.1(b): sentence_information comes with its data (sentence)"]


def test_request_of_the_executing_state_then_art_7_3() -> None:
    c = Case(es_request_body(), sender=AE, recipient=KZ)
    assert c.state.requesting == AE and c.state.sentencing_authority == KZ
    assert c.state.status is S.UNDER_CONSIDERATION  # 7.2(a–c) came with the request
    assert _condition(c, "six_months_left").status == "pending"  # no sentence data yet
    c.agree(KZ)  # the sentencing state agrees first …
    assert c.state.status is S.DOCUMENTS_REQUESTED  # … and now owes its 7.1 documents
    asked = [n for n in c.notices if n.event == "documents_requested"][-1]
    assert asked.recipient == KZ
    assert {d["article"] for d in asked.detail["documents"]} == {
        "7.3, 7.1(a)", "7.3, 7.1(b)", "7.3, 7.1(c)", "7.3, 7.1(e)"}
    c.send("transfer_documents", KZ, {"documents": [doc(x) for x in SS_DOCS],
                                      "sentence": sentence(), "consent": consent()})
    assert c.state.status is S.UNDER_CONSIDERATION
    assert _condition(c, "six_months_left").status == "met"
    c.agree(AE)
    assert c.state.status is S.AGREED


def test_executing_state_request_without_its_documents() -> None:
    body = es_request_body(documents=[doc("citizenship_proof", "AE")],
                           executing_state_provision=...)
    c = Case(body, sender=AE, recipient=KZ)
    assert c.state.status is S.DOCUMENTS_REQUESTED
    asked = [n for n in c.notices if n.event == "documents_requested"][0]
    assert asked.recipient == AE
    assert [d["article"] for d in asked.detail["documents"]] == ["7.2(b)", "7.2(c)"]
    assert set(ES_DOCS) - set(c.state.documents) == {"dual_criminality_extract",
                                                     "other_proceedings_report"}


# --- art. 6.2: languages ----------------------------------------------------------------


@pytest.mark.parametrize(("sender", "language", "translation", "ok"), [
    (KZ, "ru", "en", True),
    (KZ, "kk", "ar", True),
    (KZ, "ru", None, False),  # no translation
    (KZ, "ru", "fr", False),  # neither the requested state's language nor English
    (KZ, "ar", None, False),  # not an official language of Kazakhstan
    (KZ, "en", "en", False),  # English is a translation, not the original
    (AE, "ar", "en", True),
    (AE, "ar", "ru", True),
    (AE, "ar", None, False),
    (AE, "ru", None, False),
])
def test_language_rule_art_6_2(sender: str, language: str, translation: str | None,
                               ok: bool) -> None:
    body = (request_body if sender == KZ else es_request_body)(
        language=language, translation=translation)
    recipient = AE if sender == KZ else KZ
    m = message("transfer_request", sender, recipient, body)
    problems = tf.check_new_transfer(PROFILE, m, T0)  # type: ignore[arg-type]
    assert (problems == []) is ok, problems
    assert all(p.startswith("art. 6.2") for p in problems)


def test_language_rule_applies_to_every_document_and_needs_signature_and_stamp() -> None:
    docs = [doc(c) for c in SS_DOCS]
    docs[2] = doc("final_judgment", translation=None)
    m = message("transfer_request", KZ, AE, request_body(documents=docs, stamped=False))
    assert tf.check_new_transfer(PROFILE, m, T0) == [  # type: ignore[arg-type]
        "art. 6.2: the request must be signed and stamped by the sending authority",
        "art. 6.2: final_judgment (art. 7.1(c)) needs a translation into ar or en"]


# --- art. 4, 5: who sends, and the channel ------------------------------------------------


@pytest.mark.parametrize(("initiative", "extra", "ok"), [
    ("sentencing_state", {}, True),
    ("executing_state", {}, False),  # KZ is the sentencing state here
    ("convicted_person", {"wish_expressed_on": "2025-01-20"}, True),
    ("legal_representative", {"wish_expressed_on": "2025-01-20"}, True),
    ("convicted_person", {}, False),  # the written wish has a date
])
def test_initiative_art_4(initiative: str, extra: dict[str, Any], ok: bool) -> None:
    m = message("transfer_request", KZ, AE, request_body(initiative=initiative, **extra))
    problems = tf.check_new_transfer(PROFILE, m, T0)  # type: ignore[arg-type]
    assert (problems == []) is ok, problems
    assert all(p.startswith("art. 4") for p in problems)


def test_only_central_authorities_of_the_two_parties_exchange_requests() -> None:
    for sender, recipient in [(KZ_MFA, AE), ("KZ-MIA", AE), (KZ, KZ_MFA)]:
        m = message("transfer_request", sender, recipient, request_body())
        assert any(p.startswith("art. 5.2") for p in
                   tf.check_new_transfer(PROFILE, m, T0))  # type: ignore[arg-type]
    m = message("transfer_request", KZ, AE, request_body(executing_state="RU"))
    assert any(p.startswith("art. 1.3") for p in
               tf.check_new_transfer(PROFILE, m, T0))  # type: ignore[arg-type]


def test_every_message_passes_both_foreign_ministries_and_the_timeline_shows_each_hop() -> None:
    c = Case()
    hops = [(e.event, e.actor, e.hop) for e in c.state.timeline]
    assert hops == [
        ("transfer_request", KZ, f"{KZ} → {KZ_MFA}"),
        ("relayed", KZ_MFA, f"{KZ_MFA} → {AE_MFA}"),
        ("delivered", AE_MFA, f"{AE_MFA} → {AE}"),
    ]
    assert [h.by for h in c.state.route_of(c.request_id)] == [KZ, KZ_MFA, AE_MFA]
    assert [(n.event, n.recipient) for n in c.notices if n.event != "documents_requested"] == [
        ("dispatched", KZ), ("relay_requested", KZ_MFA), ("relay_requested", AE_MFA),
        ("delivered", AE), ("delivery_confirmed", KZ)]
    delivered = next(n for n in c.notices if n.event == "delivered")
    assert delivered.detail["message"]["body"]["person"]["citizenship"] == ["AE"]
    # A reply goes the other way round.
    c.agree(KZ)
    m = c.send("transfer_documents_request", AE, {"documents": ["medical_social_report"],
                                                   "reason": "Treatment to continue."})
    assert [h.by for h in c.state.route_of(m.message_id)] == [AE, AE_MFA, KZ_MFA]


def test_relay_hops_go_in_order_from_the_ministry_that_holds_the_message() -> None:
    c = Case(deliver=False)
    rid = c.request_id
    relay = {"relayed_message_id": rid}
    assert c.refused("transfer_relay", AE_MFA, relay, recipient=AE) == [
        f"art. 5.1: message {rid} is with {KZ_MFA}, not {AE_MFA}",
        f"the next hop of message {rid} is {AE_MFA}, not {AE}"]
    assert c.refused("transfer_relay", KZ, relay, recipient=AE_MFA) == [
        f"art. 5.1: message {rid} is with {KZ_MFA}, not {KZ}"]
    assert c.refused("transfer_relay", KZ_MFA, {"relayed_message_id": "msg-unknown-1"},
                     recipient=AE_MFA)[0].startswith("art. 5.1: there is no message")
    # A ministry relays; it does not decide.
    assert c.refused("transfer_decision", KZ_MFA, {}, recipient=AE_MFA)[0].startswith(
        "art. 5.1, 6.1: a foreign ministry relays messages")
    # The requested state cannot act on what has not reached it.
    problems = c.refused("transfer_refusal", AE, {"grounds": ["not_enforceable_in_executing_state"],
                                                  "reason": "Our law has no such penalty."})
    assert "has not yet reached AE-MOJ through the diplomatic channel" in problems[0]
    c.relay(rid)
    assert c.refused("transfer_relay", AE_MFA, relay, recipient=AE) == [
        f"message {rid} was already delivered to {AE}"]


def test_a_relay_hop_held_too_long_is_overdue() -> None:
    c = Case(deliver=False)
    limit = PROFILE.time_limits.relay_hop
    assert limit is not None
    assert tf.next_due(c.state, PROFILE) == T0 + DAY * limit.days
    tr = c.wait(DAY * limit.days - timedelta(seconds=1))
    assert not c.state.overdue and tr.notices == []
    tr = c.wait(timedelta(seconds=1))
    assert c.state.overdue
    assert {(n.event, n.recipient) for n in tr.notices} == {("overdue", KZ_MFA), ("overdue", KZ)}
    assert tr.notices[0].detail["basis"] == "hub_policy"
    c.relay(c.request_id, hops=1)  # passed on late: the next ministry's clock starts
    assert not c.state.overdue
    assert tf.next_due(c.state, PROFILE) == c.now + DAY * limit.days


def test_a_direct_channel_delivers_at_once() -> None:
    direct = PROFILE.model_copy(update={"channel": Channel(kind="direct", article="5.1")})
    c = Case(profile=direct, deliver=False)
    assert c.state.status is S.UNDER_CONSIDERATION and c.state.received_at == T0
    assert [e.event for e in c.state.timeline] == ["transfer_request", "delivered"]


def test_duplicates_strangers_and_wrong_recipients_are_refused() -> None:
    c = Case()
    m = c.agree(KZ)
    assert tf.check(c.state, PROFILE, m) == [
        f"duplicate: message {m.message_id} was already applied"]
    assert c.refused("transfer_decision", "RU-GPO", {}, recipient=AE) == [
        f"RU-GPO is not a party to transfer {c.state.request_id}"]
    assert c.refused("transfer_decision", AE, {}, recipient=KZ_MFA)[0] == (
        f"recipient must be {KZ}, not {KZ_MFA}")
    other = message("transfer_decision", AE, KZ, {}, request_id="TR-OTHER-9")
    assert tf.check(c.state, PROFILE, other)[0].startswith("message is about")


def test_withdrawal_by_the_requesting_state_still_reaches_the_other() -> None:
    c = Case()
    assert c.refused("transfer_withdrawal", AE, {"reason": "Not ours to withdraw"})[0].startswith(
        "only the requesting authority")
    m = c.send("transfer_withdrawal", KZ, {"reason": "The person revoked consent"},
               deliver=False)
    assert c.state.status is S.WITHDRAWN
    c.relay(m.message_id)  # a final transfer still carries its last message
    assert c.state.dispatch(m.message_id).delivered_at is not None  # type: ignore[union-attr]
    assert c.state.status is S.WITHDRAWN


# --- handover, transfer, art. 10–13 -----------------------------------------------------------


def test_happy_path_to_the_end_of_enforcement() -> None:
    c = enforcing_case()
    statuses = [e.status for e in c.state.timeline]
    for expected in ("under_consideration", "agreed", "handover_arranged", "transferred",
                     "enforcing"):
        assert expected in statuses
    c.send("transfer_execution_report", AE, {"event": "sentence_served",
                                             "occurred_on": "2028-01-15"})
    assert c.state.status is S.ENFORCEMENT_ENDED and c.state.final
    assert c.refused("transfer_information_request", KZ, {"questions": "How is he?"})[0].endswith(
        "nothing more is accepted")


def test_enforcement_continues_with_the_term_set_by_the_executing_court_art_10() -> None:
    c = agreed_case()
    c.send("transfer_handover", KZ, handover(c.now.date() + DAY))
    c.send("transfer_completed", AE, {"handed_over_on": c.now.date().isoformat(),
                                      "place": "Almaty"})
    assert c.state.status is S.TRANSFERRED
    assert c.refused("transfer_execution_report", AE, {
        "event": "enforcement_continued", "occurred_on": "2025-04-01"}) == [
        "art. 10.2: give the term imposed by the court of the executing state"]
    assert c.refused("transfer_execution_report", KZ, {
        "event": "escape", "occurred_on": "2025-04-01"})[0].startswith(
        "only the executing_state")


def test_escape_recapture_and_death_are_reported_art_13_1() -> None:
    c = enforcing_case()
    assert c.refused("transfer_execution_report", AE,
                     {"event": "recapture", "occurred_on": "2025-05-01"}) == [
        "art. 13.1: no escape was reported"]
    c.send("transfer_execution_report", AE, {"event": "escape", "occurred_on": "2025-05-01"})
    assert c.state.at_large and c.state.status is S.ENFORCING
    c.send("transfer_execution_report", AE, {"event": "recapture", "occurred_on": "2025-05-09"})
    assert not c.state.at_large
    c.send("transfer_execution_report", AE, {"event": "death", "occurred_on": "2026-01-01"})
    assert c.state.status is S.ENFORCEMENT_ENDED


def test_pardon_obliges_the_executing_state_to_end_enforcement_art_12() -> None:
    c = enforcing_case()
    limit = PROFILE.time_limits.enforcement_change
    assert limit is not None and limit.basis == "hub_policy"
    pardon = c.send("transfer_sentence_decision", KZ, {
        "decision": "pardon", "effect": "ends_enforcement", "decided_on": "2025-06-01",
        "details": "Presidential pardon decree No. 123."}, deliver=False)
    # Not yet informed: no deadline, and no answer yet.
    assert not any(d.code == "enforcement_change" for d in c.state.deadlines)
    assert c.refused("transfer_enforcement_change", AE,
                     {"action": "ended", "effective_on": "2025-06-02"},
                     in_reply_to=pardon.message_id)[0].startswith("art. 12: an enforcement")
    c.relay(pardon.message_id)
    informed = c.now
    deadline = next(d for d in c.state.deadlines if d.code == "enforcement_change")
    assert deadline.owner == AE and deadline.due == informed + DAY * limit.days
    assert deadline.article == "12" and deadline.basis == "hub_policy"
    c.wait(DAY * limit.days - timedelta(minutes=1))
    assert not c.state.overdue
    tr = c.wait(timedelta(minutes=1))
    assert c.state.overdue
    assert {n.recipient for n in tr.notices} == {AE, KZ}
    assert tr.notices[0].detail["article"] == "12"
    assert any(e.event == "overdue" and "art. 12 (hub policy)" in (e.note or "")
               for e in c.state.timeline)
    assert tf.advance(c.state, PROFILE, c.now + DAY).notices == []  # said once
    # Ending, not changing, answers a pardon.
    assert c.refused("transfer_enforcement_change", AE,
                     {"action": "changed", "effective_on": "2025-06-04"},
                     in_reply_to=pardon.message_id) == [
        f"art. 12: the decision {pardon.message_id} ends enforcement; report 'ended', "
        "not 'changed'"]
    c.send("transfer_enforcement_change", AE, {"action": "ended", "effective_on": "2025-06-04"},
           in_reply_to=pardon.message_id)
    assert c.state.status is S.ENFORCEMENT_ENDED and not c.state.overdue


def test_review_that_changes_enforcement_in_time_art_11_12() -> None:
    c = enforcing_case()
    review = c.send("transfer_sentence_decision", KZ, {
        "decision": "review", "effect": "changes_enforcement", "decided_on": "2025-06-01",
        "details": "The Supreme Court reduced the term to four years."})
    c.send("transfer_enforcement_change", AE, {"action": "changed", "effective_on": "2025-06-03"},
           in_reply_to=review.message_id)
    assert c.state.status is S.ENFORCING and not c.state.overdue
    assert tf.next_due(c.state, PROFILE) is None


def test_a_decision_without_effect_opens_no_deadline() -> None:
    c = enforcing_case()
    c.send("transfer_sentence_decision", KZ, {
        "decision": "review", "effect": "none", "decided_on": "2025-06-01",
        "details": "The review upheld the sentence."})
    assert not any(d.code == "enforcement_change" for d in c.state.deadlines)


def test_information_on_request_art_13_2() -> None:
    c = enforcing_case()
    ask = c.send("transfer_information_request", KZ, {"questions": "Where is he held?"})
    limit = PROFILE.time_limits.information_on_request
    assert limit is not None
    assert tf.next_due(c.state, PROFILE) == c.now + DAY * limit.days
    c.wait(DAY * limit.days)
    assert c.state.overdue
    c.send("transfer_execution_report", AE, {"event": "information", "occurred_on": "2025-08-01",
                                             "details": "Al Wathba, general regime."},
           in_reply_to=ask.message_id)
    assert not c.state.overdue


def test_handover_not_reported_is_overdue() -> None:
    c = agreed_case()
    on = c.now.date() + 5 * DAY
    c.send("transfer_handover", AE, handover(on))
    assert c.state.status is S.HANDOVER_ARRANGED
    limit = PROFILE.time_limits.handover
    assert limit is not None
    due = datetime.combine(on + DAY * (limit.days + 1), datetime.min.time(), tzinfo=UTC)
    assert tf.next_due(c.state, PROFILE) == due
    c.wait(due - c.now)
    assert c.state.overdue
    c.send("transfer_completed", AE, {"handed_over_on": on.isoformat(), "place": "Almaty"})
    assert not c.state.overdue and c.state.status is S.TRANSFERRED


# --- art. 16: transit -------------------------------------------------------------------


def _transit_body(c: Case, state: str = "TR", **over: Any) -> dict[str, Any]:
    """The transit request of ``c``'s transfer, through ``state``."""
    return transit_body(c.state.request_id, state, **over)


def test_no_transit_for_a_flight_without_landing_art_16_4() -> None:
    c = agreed_case()
    c.send("transfer_handover", KZ, handover(c.now.date() + DAY, transit=["TR"], landing=False))
    assert c.state.transits == {}
    body = _transit_body(c, route={"mode": "air", "transit_states": ["TR"],
                                   "landing_in_transit": False})
    m = transit_message("transfer_transit_request", KZ, "TR-MOJ", body, request_id="TT-0001")
    assert tf.check_transit_request(PROFILE, c.state, m) == [  # type: ignore[arg-type]
        "art. 16.4: no transit permit is requested for a transit by air without landing",
        "art. 16: TR needs no permit on the agreed route"]
    c.send("transfer_completed", AE, {"handed_over_on": c.now.date().isoformat(),
                                      "place": "Almaty"})
    assert c.state.status is S.TRANSFERRED


def test_transit_needed_is_its_own_procedure_linked_to_the_transfer() -> None:
    c = agreed_case()
    c.send("transfer_handover", KZ, handover(c.now.date() + 3 * DAY, mode="land",
                                             transit=["UZ"]))
    assert c.state.transits == {"UZ": "not_requested"}
    assert c.refused("transfer_completed", AE, {"handed_over_on": "2025-04-01",
                                                "place": "Almaty"}) == [
        "art. 16: transit through UZ is not requested, not granted"]
    body = _transit_body(c, "UZ", route={"mode": "land", "transit_states": ["UZ"]},
                         documents=[doc("personal_data")])
    m = transit_message("transfer_transit_request", KZ, "UZ-GPO", body, request_id="TT-0002")
    problems = tf.check_transit_request(PROFILE, c.state, m)  # type: ignore[arg-type]
    assert problems == [
        "art. 16.2: the transit request lacks sentence_information (art. 7.1(b))",
        "art. 16.2: the transit request lacks final_judgment (art. 7.1(c))",
        "art. 16.2: the transit request lacks consent (art. 7.1(e))",
        "art. 16.2: the transit request lacks citizenship_proof (art. 7.2(a))"]
    m = transit_message("transfer_transit_request", KZ, "UZ-GPO",
                        _transit_body(c, "UZ", route={"mode": "land", "transit_states": ["UZ"]}),
                        request_id="TT-0002")
    opened = tf.open_transit(PROFILE, c.state, m, c.now)  # type: ignore[arg-type]
    transit = opened.state
    assert transit.status is tf.TransitStatus.REQUESTED
    assert [n.recipient for n in opened.notices] == ["UZ-GPO"]
    c.state = tf.link_transit(c.state, transit, c.now).state
    assert c.state.transits == {"UZ": "requested"}
    with pytest.raises(ValidationError, match="reason"):
        transit_message("transfer_transit_decision", "UZ-GPO", KZ, {"granted": False},
                        request_id="TT-0002")
    ok = transit_message("transfer_transit_decision", "UZ-GPO", KZ, {"granted": True},
                         request_id="TT-0002")
    assert tf.check_transit(transit, transit_message(
        "transfer_transit_decision", KZ, "UZ-GPO", {"granted": True}, request_id="TT-0002")) == [
        "only UZ-GPO decides on this transit"]
    transit = tf.apply_transit(transit, ok, c.now).state
    assert transit.status is tf.TransitStatus.GRANTED
    assert tf.check_transit(transit, ok)[0].startswith("duplicate")
    tr = tf.link_transit(c.state, transit, c.now)
    c.state = tr.state
    assert {n.recipient for n in tr.notices} == {KZ, AE}
    assert any(e.event == "transit_granted" for e in c.state.timeline)
    c.send("transfer_completed", AE, {"handed_over_on": "2025-04-01", "place": "Almaty"})
    assert c.state.status is S.TRANSFERRED


def test_transit_refused_keeps_the_transfer_waiting() -> None:
    c = agreed_case()
    c.send("transfer_handover", KZ, handover(c.now.date() + 3 * DAY, transit=["TR"]))
    m = transit_message("transfer_transit_request", AE, "TR-MOJ", _transit_body(c),
                        request_id="TT-0003")
    transit = tf.open_transit(PROFILE, c.state, m, c.now).state  # type: ignore[arg-type]
    no = transit_message("transfer_transit_decision", "TR-MOJ", AE,
                         {"granted": False, "reason": "Our law does not allow it now."},
                         request_id="TT-0003")
    transit = tf.apply_transit(transit, no, c.now).state
    c.state = tf.link_transit(c.state, transit, c.now).state
    assert c.state.transits == {"TR": "refused"}
    assert "transit through TR is refused" in c.refused(
        "transfer_completed", AE, {"handed_over_on": "2025-04-01", "place": "Almaty"})[0]
    # A new route without that stop clears the way.
    c.send("transfer_handover", KZ, handover(c.now.date() + 5 * DAY))
    assert c.state.transits == {}


def test_transit_only_once_agreed_and_never_through_a_party() -> None:
    c = Case()
    m = transit_message("transfer_transit_request", KZ, "AE-MOJ", _transit_body(c, "AE"),
                        request_id="TT-0004")
    problems = tf.check_transit_request(PROFILE, c.state, m)  # type: ignore[arg-type]
    assert problems[0].startswith("art. 16.1: transit is requested once the states have agreed")
    assert "art. 16: AE is a party to the transfer, not a transit state" in problems


# --- art. 19: entry into force and termination ---------------------------------------------


def test_no_request_before_entry_into_force_art_19_1() -> None:
    before = datetime.combine(PROFILE.entry_into_force - DAY, datetime.min.time(), tzinfo=UTC)
    m = message("transfer_request", KZ, AE, request_body())
    problems = tf.check_new_transfer(PROFILE, m, before)  # type: ignore[arg-type]
    assert problems and problems[0].startswith("art. 19.1")


def test_persons_convicted_before_entry_into_force_are_covered_art_19_2() -> None:
    old = sentence(judgment_date="2019-03-01", judgment_final_on="2019-04-01",
                   counted_from="2018-12-01", term={"years": 10})
    c = Case(request_body(sentence=old))
    assert _condition(c, "judgment_final").status == "met"


def test_termination_does_not_stop_a_running_request_art_19_3() -> None:
    notice = date(2025, 1, 1)
    ends = notice + timedelta(days=180)
    terminated = PROFILE.model_copy(update={"termination": PROFILE.termination.model_copy(
        update={"notice_received_on": notice})})
    assert terminated.terminated_from() == ends == date(2025, 6, 30)
    last_day = datetime.combine(ends - DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    c = Case(profile=terminated, now=last_day)  # started the day before termination
    c.now = datetime.combine(ends + 30 * DAY, datetime.min.time(), tzinfo=UTC)
    _both_agree(c)  # it runs to its end
    on_the_day = datetime.combine(ends, datetime.min.time(), tzinfo=UTC)
    m = message("transfer_request", KZ, AE, request_body(), request_id="TR-KZ-2025-0002")
    problems = tf.check_new_transfer(terminated, m, on_the_day)  # type: ignore[arg-type]
    assert len(problems) == 1 and problems[0].startswith("art. 19.3: kz-uae-2018 terminated on "
                                                         "2025-06-30")
    with pytest.raises(Rejected):
        tf.open_transfer(terminated, m, on_the_day)  # type: ignore[arg-type]


def test_status_table_matches_the_design() -> None:
    """The transition table as specified, written out so a change to it fails a test."""
    assert tf.ALLOWED_FROM["transfer_decision"] == {S.UNDER_CONSIDERATION}
    assert tf.ALLOWED_FROM["transfer_completed"] == {S.HANDOVER_ARRANGED}
    assert tf.ALLOWED_FROM["transfer_sentence_decision"] == {S.TRANSFERRED, S.ENFORCING}
    assert tf.FINAL == {S.REFUSED, S.WITHDRAWN, S.ENFORCEMENT_ENDED, S.CLOSED}  # closed: operator
    assert set(tf.ALLOWED_FROM) | {"transfer_request", "transfer_relay"} == set(tf.SENT_BY)


def test_passwords_are_created_for_the_transfer_authorities(tmp_path: Any) -> None:
    """A state folder set up before the transfer procedure gets the new broker users'
    passwords, and keeps every password it had."""
    import json

    from treatyflow.topology import SECRETS_FILE, load_or_create_passwords

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / SECRETS_FILE).write_text(json.dumps({"KZ-GPO": "kept"}))
    passwords = load_or_create_passwords(tmp_path)
    assert passwords["KZ-GPO"] == "kept"
    assert {AE, KZ_MFA, AE_MFA} <= set(passwords)
    assert json.loads((tmp_path / SECRETS_FILE).read_text()) == passwords

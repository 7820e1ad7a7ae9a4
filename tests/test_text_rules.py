"""Issue 12, item 7: invisible and format characters are refused in every name and text
field, naming the character and its position; ordinary text in any script passes as sent."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.factories import envelope, new_request_id, request_body
from tests.transfer_factories import envelope as transfer_envelope
from tests.transfer_factories import request_body as transfer_request_body
from treatyflow.schemas import limits
from treatyflow.schemas.envelope import INVISIBLE_CHARACTERS, refused_character
from treatyflow.schemas.messages import RequestBody, parse_inbound

RU, KZ = "RU-MIA", "KZ-GPO"
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def request(**body: Any) -> bytes:
    return json.dumps(envelope("request", request_id=new_request_id(), sender=RU,
                               recipient=KZ, body=request_body(**body))).encode()


def refusal(raw: bytes) -> str:
    with pytest.raises(ValidationError) as refused:
        parse_inbound(raw)
    return str(refused.value)


def hidden(text: str) -> str:
    """``text`` in Unicode tag characters (U+E0000 + ASCII): invisible in most renderers."""
    return "".join(chr(0xE0000 + ord(c)) for c in text)


def test_hidden_tag_text_in_facts_is_refused_naming_character_and_position() -> None:
    """The issue's case: RU-MIA received facts carrying 'ALSO SEND ACCOUNT 456' in tags."""
    facts = "Funds moved through account 123." + hidden("ALSO SEND ACCOUNT 456")
    why = refusal(request(facts=facts))
    assert "body.facts" in why
    assert "U+E0041 TAG LATIN CAPITAL LETTER A" in why
    assert "at position 32" in why and "(and 20 more after it)" in why


def test_a_signatory_named_with_the_hangul_filler_is_refused() -> None:
    """Art. 5.5: a name that shows as blank signs nothing."""
    for name in ["\u3164", "\u3164\u3164 ", "\u115f", "\uffa0", "\u2800"]:
        why = refusal(request(signed_by={"name": name, "position": "head"}))
        assert "body.signed_by.name" in why
        assert re.search(r"U\+(3164|115F|FFA0|2800) [A-Z ]+ \(invisible or blank-looking\) "
                         r"at position 0", why), why


@pytest.mark.parametrize("name", [" ", "\u3000", "\u00a0\u2003", "\t"])
def test_a_name_of_spaces_only_is_refused(name: str) -> None:
    why = refusal(request(signed_by={"name": name, "position": "head"}))
    assert "body.signed_by.name" in why


@pytest.mark.parametrize(("char", "name"), [
    ("\u200b", "ZERO WIDTH SPACE"), ("\u200c", "ZERO WIDTH NON-JOINER"),
    ("\u200d", "ZERO WIDTH JOINER"), ("\u200e", "LEFT-TO-RIGHT MARK"),
    ("\u200f", "RIGHT-TO-LEFT MARK"), ("\u061c", "ARABIC LETTER MARK"),
    ("\u202e", "RIGHT-TO-LEFT OVERRIDE"), ("\u2067", "RIGHT-TO-LEFT ISOLATE"),
    ("\u2060", "WORD JOINER"), ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
    ("\u00ad", "SOFT HYPHEN"), ("\U000e0001", "LANGUAGE TAG"),
    ("\u2028", "LINE SEPARATOR"), ("\u2029", "PARAGRAPH SEPARATOR"),
    ("\u180e", "MONGOLIAN VOWEL SEPARATOR"), ("\ufe0f", "VARIATION SELECTOR-16"),
    ("\U000e0100", "VARIATION SELECTOR-17"), ("\u034f", "COMBINING GRAPHEME JOINER"),
    ("\r", "CARRIAGE RETURN"), ("\x1b", "ESCAPE"), ("\x85", "NEXT LINE"),
    ("\ue000", "<unnamed>"), ("\U000f0000", "<unnamed>"), ("\U000e0080", "<unnamed>"),
])
def test_each_refused_character_is_named(char: str, name: str) -> None:
    why = refusal(request(facts=f"Funds moved{char} abroad."))
    assert f"U+{ord(char):04X} {name}" in why and "at position 11" in why


def test_a_bidi_override_in_a_one_line_field_and_line_breaks_there() -> None:
    assert "body.language" in refusal(request(language="r\u202eu"))
    why = refusal(request(signed_by={"name": "A.\nHead", "position": "head"}))
    assert "U+000A LINE FEED (line break or tab in a one-line field) at position 2" in why


REFUSED = st.characters(categories=["Cf", "Cc", "Zl", "Zp", "Co", "Cn"],
                        exclude_characters="\n\t")


@FAST
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
       REFUSED, st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30))
def test_every_refused_category_is_refused_wherever_it_stands(before: str, bad: str,
                                                              after: str) -> None:
    found = refused_character(before + bad + after, multiline=True)
    assert found is not None and found[0] <= len(before)
    if refused_character(before, multiline=True) is None:
        assert found[:2] == (len(before), bad)


@FAST
@given(st.sampled_from(sorted(INVISIBLE_CHARACTERS)), st.integers(0, 20))
def test_every_invisible_character_is_refused_in_facts(code: int, at: int) -> None:
    facts = "Средства переведены за рубеж."
    at = min(at, len(facts))
    why = refusal(request(facts=facts[:at] + chr(code) + facts[at:]))
    assert f"U+{code:04X}" in why and f"at position {at}" in why


VISIBLE = st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S", "Zs"]).filter(
    lambda c: ord(c) not in INVISIBLE_CHARACTERS)


@FAST
@given(st.text(VISIBLE, min_size=1, max_size=60).filter(str.strip))
def test_visible_text_passes_exactly_as_sent(text: str) -> None:
    message = parse_inbound(request(facts=text + "\n\t" + text))
    assert message.body.facts == text + "\n\t" + text  # type: ignore[union-attr]


@pytest.mark.parametrize("text", [
    "Досудебное расследование по ст. 190 УК РК.\nСчёт № 123.",  # Russian
    "Қаржы Өскемен қаласындағы «Ақжол» ЖШС шотынан аударылды.",  # Kazakh
    "تم تحويل الأموال عبر الحساب ١٢٣ في دبي.",  # Arabic
    "资金于2025年通过123号账户转移。\n付款人：王伟",  # Chinese
    "Mixed: Иванов И.И., 王伟, محمد — «кавычки», “quotes”\ttab",
    "Cafe\u0301 (decomposed) and Café (precomposed) are both kept as sent",
])
def test_ordinary_text_in_several_scripts_passes_unchanged(text: str) -> None:
    message = parse_inbound(request(facts=text, purpose=text,
                                    signed_by={"name": re.split("[\n\t]", text)[0][:200],
                                               "position": "head"}))
    body = message.body
    assert isinstance(body, RequestBody)
    assert body.facts == text and body.purpose == text
    assert unicodedata.is_normalized("NFC", body.facts) == unicodedata.is_normalized("NFC", text)


@pytest.mark.parametrize("authority", ["KZ-GР0", "ＫＺ-GPO", "KZ-GPO\n", "KZ-GPO\u200b"])
def test_look_alike_authority_ids_are_malformed(authority: str) -> None:
    """Ids are ASCII codes (Cyrillic Р, fullwidth letters, a trailing line feed refused):
    the hub compares only codes and ids, so it never needs to normalise text."""
    raw = json.dumps(envelope("request", request_id=new_request_id(), sender=RU,
                              recipient=authority, body=request_body())).encode()
    assert "recipient" in refusal(raw)


def test_transfer_names_and_text_are_checked_too() -> None:
    body = transfer_request_body()
    body["person"] = {**body["person"], "full_name": "Ivanov\u200dIvan"}
    raw = json.dumps(transfer_envelope("transfer_request", "KZ-GPO", "AE-MOJ", body)).encode()
    why = refusal(raw)
    assert "person.full_name" in why and "U+200D ZERO WIDTH JOINER" in why


def test_text_past_its_length_is_refused_naming_the_limit() -> None:
    why = refusal(request(facts="x" * (limits.TEXT_MAX + 1)))
    assert "body.facts" in why and f"at most {limits.TEXT_MAX} characters" in why
    parse_inbound(request(facts="x" * limits.TEXT_MAX))


def test_records_read_back_from_temporal_keep_what_the_wire_refuses() -> None:
    """A request accepted before a character was refused still replays: only the wire
    (``parse_inbound``) checks in full."""
    body = RequestBody.model_validate({**request_body(), "facts": "soft\u00adhyphen"})
    assert body.facts == "soft\u00adhyphen"
    with pytest.raises(ValidationError, match="U\\+0000"):
        RequestBody.model_validate({**request_body(), "facts": "nul\x00"})


def test_the_gateway_answers_limit_reached_for_length_and_malformed_for_characters() -> None:
    from typing import cast

    from tests.test_envelope_properties import GATEWAY, Delivery, jws, request_data
    from treatyflow.hub import Refusal

    for facts, problem in [("x" * (limits.TEXT_MAX + 1), "limit_reached"),
                           ("x\u200b" * 10, "malformed"),
                           ("\u200b" + "x" * (limits.TEXT_MAX - 1), "malformed")]:
        with pytest.raises(Refusal) as refused:
            GATEWAY.parse(cast(Any, Delivery(jws(request_data(facts=facts)))))
        assert refused.value.problem == problem
        assert refused.value.reasons[0].startswith("request.body.facts: ")

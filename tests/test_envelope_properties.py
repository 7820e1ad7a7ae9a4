"""Property tests of the envelope parser: whatever bytes arrive, the gateway's ``parse``
returns a message or refuses it with a documented problem code, and never fails otherwise
(a crash would requeue the message instead of answering its sender)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.factories import envelope, new_request_id
from treatyflow import constants as c
from treatyflow.agency import KeyRing, PublicKey, SigningKey, sign
from treatyflow.hub import Refusal
from treatyflow.schemas.envelope import refused_character
from treatyflow.schemas.messages import parse_inbound
from treatyflow.workers.gateway import Gateway, check_sent_at

KZ, RU = "KZ-GPO", "RU-MIA"
KEY = SigningKey.generate("KZ-GPO-2026-1")
RING = KeyRing(keys=[PublicKey(key_id=KEY.key_id, owner=KZ, public_key=KEY.public_key,
                               valid_from=datetime(2026, 1, 1, tzinfo=UTC))])
ROOT = Path(__file__).parent.parent
# Where agencies look up a problem code: one row per code.
MANUAL = (ROOT / "docs" / "reference" / "problems.md").read_text()
# Every problem the gateway's parse may name; each is documented for agencies.
PARSE_PROBLEMS = {"oversize", "wrong_content_type", "malformed", "unauthenticated",
                  "sender_mismatch", "unsigned", "unknown_key", "bad_signature",
                  "implausible_time", "unsupported_version", "limit_reached"}
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Delivery:
    """What the gateway reads of an AMQP delivery."""

    body: bytes
    content_type: str | None = c.CONTENT_TYPE_JWS
    user_id: str | None = KZ


GATEWAY = Gateway(cast(Any, None), cast(Any, None), keys=RING, signing_key=lambda: KEY)


def outcome(body: bytes, **properties: Any) -> str:
    """'accepted' or the problem code; anything else raised fails the test."""
    try:
        GATEWAY.parse(cast(Any, Delivery(body, **properties)))
    except Refusal as refused:
        assert refused.problem in PARSE_PROBLEMS, refused
        assert refused.reasons and all(isinstance(r, str) and r for r in refused.reasons)
        return refused.problem
    return "accepted"


def request_data(**body: Any) -> dict[str, Any]:
    data = envelope("request", request_id=new_request_id(), sender=KZ, recipient=RU)
    data["body"].update(body)
    return data


def jws(data: Any) -> bytes:
    """``data`` as JSON, signed by KZ-GPO exactly as written."""
    return sign(json.dumps(data, ensure_ascii=False).encode(), KEY).encode()


def swapped(token: bytes, data: Any) -> bytes:
    """``token`` with its payload replaced by ``data`` after signing."""
    header, _, signature = token.split(b".")
    payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")
    return b".".join([header, payload, signature])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20,
)


def test_every_parse_problem_is_documented() -> None:
    assert not [p for p in PARSE_PROBLEMS if f"| `{p}` |" not in MANUAL]


@FAST
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_never_crash(body: bytes) -> None:
    assert outcome(body) != "accepted"


@FAST
@given(st.binary(max_size=512))
def test_parse_inbound_raises_only_validation_errors(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_inbound(body)


@FAST
@given(json_values)
def test_arbitrary_json_unsigned_is_refused_and_signed_is_malformed(value: Any) -> None:
    assert outcome(json.dumps(value).encode()) in {"malformed", "unsigned",
                                                   "unsupported_version"}
    assert outcome(jws(value)) in {"malformed", "unsupported_version"}


ENVELOPE_FIELDS = ["schema_version", "message_id", "kind", "request_id", "treaty_id", "sender",
                   "recipient", "sent_at", "in_reply_to", "body"]
BODY_FIELDS = ["purpose", "facts", "language", "confidentiality", "signed_by", "urgent",
               "domestic_case"]


@FAST
@given(st.sampled_from(ENVELOPE_FIELDS + [f"body.{f}" for f in BODY_FIELDS]), json_values,
       st.sampled_from([c.CONTENT_TYPE_JWS, None, "text/plain"]),
       st.sampled_from([KZ, RU, None]), st.booleans())
def test_any_field_replaced_is_refused_unless_signed_and_valid(
    where: str, value: Any, content_type: str | None, user_id: str | None, resign: bool
) -> None:
    """After signing, any change is refused; signed with the change, only a value of the
    right JSON type and form gets through (never converted)."""
    data = request_data()
    token = jws(data)
    holder = data["body"] if where.startswith("body.") else data
    key = where.removeprefix("body.")
    unchanged = holder.get(key) == value
    holder[key] = value
    body = jws(data) if resign else swapped(token, data)
    got = outcome(body, content_type=content_type, user_id=user_id)
    if content_type == "text/plain":
        assert got == "wrong_content_type"
    elif got == "accepted":
        assert user_id == KZ
        assert unchanged or resign
        if key == "urgent":
            assert isinstance(value, bool)  # never "no" or 0 read as false
        message, _ = GATEWAY.parse(cast(Any, Delivery(body, user_id=user_id)))
        dumped = message.model_dump(mode="json")
        assert (dumped["body"] if where.startswith("body.") else dumped).get(key) == value


@FAST
@given(st.text(min_size=1, max_size=200))
def test_any_text_is_kept_exactly_as_sent_unless_blank_or_forbidden(text: str) -> None:
    token = jws(request_data(facts=text))
    if refused_character(text, multiline=True) or not text.strip():
        assert outcome(token) == "malformed"
    else:
        assert outcome(token) == "accepted"
        message, _ = GATEWAY.parse(cast(Any, Delivery(token)))
        assert message.body.facts == text  # type: ignore[union-attr]


@given(st.sampled_from(["Досудебное расследование", "付款人 王伟", "ТОО «Ақжол» Өскемен"]),
       st.sampled_from(["\x00", "\x07", "\x1b[2J", "\x7f", "\x85", "\u202e", "\u2067"]),
       st.integers(min_value=0, max_value=10))
def test_control_characters_in_any_script_are_named(text: str, bad: str, at: int) -> None:
    at = min(at, len(text))
    try:
        GATEWAY.parse(cast(Any, Delivery(jws(request_data(purpose=text[:at] + bad + text[at:])))))
    except Refusal as refused:
        assert refused.problem == "malformed"
        assert re.search(rf"U\+{ord(bad[0]):04X}", " ".join(refused.reasons))
    else:
        pytest.fail("a control character got through")


def test_a_version_1_envelope_is_answered_with_the_version_and_the_migration_note() -> None:
    old = request_data() | {"schema_version": "1",
                            "signature": {"key_id": KEY.key_id, "alg": "ed25519", "value": "x"}}
    for body in (json.dumps(old).encode(), jws(old)):
        try:
            GATEWAY.parse(cast(Any, Delivery(body, content_type="application/json")))
        except Refusal as refused:
            assert refused.problem == "unsupported_version"
            assert "'1'" in refused.reasons[0] or "version-1" in refused.reasons[0]
            assert "Migrating from version 1" in refused.reasons[-1]
        else:
            pytest.fail("a version-1 envelope got through")


@given(st.integers(min_value=-100 * 365 * 86_400, max_value=100 * 365 * 86_400))
def test_sent_at_is_refused_exactly_outside_the_window(offset: int) -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    inside = -c.MAX_SENT_AT_AGE_SECONDS <= offset <= c.MAX_SENT_AT_AHEAD_SECONDS
    try:
        check_sent_at(now + timedelta(seconds=offset), now)
    except Refusal as refused:
        assert refused.problem == "implausible_time" and not inside
    else:
        assert inside


def test_the_sent_at_window_ends_before_temporal_forgets_a_closed_request() -> None:
    from datetime import timedelta

    from treatyflow.workers.gateway import MAX_AGE, replay_window

    assert replay_window(None) == MAX_AGE == timedelta(days=30)
    assert replay_window(timedelta(days=31)) == MAX_AGE
    assert replay_window(timedelta(days=1)) == timedelta(hours=23)  # the dev default
    assert replay_window(timedelta(minutes=30)) == timedelta(minutes=10)

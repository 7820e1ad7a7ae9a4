"""Invisible text and limits in the hostile-input catalogue (issue 12): text that reads
differently from what it holds, and fields past their limits. Each is a request signed
with the attacker's real key, so only the text can make the hub refuse it."""

from __future__ import annotations

from treatyflow.schemas import limits
from treatyflow.securitycheck.kit import Case, request_body

# "ALSO SEND ACCOUNT 456" in Unicode tag characters: invisible in most renderers.
_HIDDEN = "".join(chr(0xE0000 + ord(ch)) for ch in "ALSO SEND ACCOUNT 456")

TEXT_CASES = [
    Case("tag_character_hidden_text", "facts carrying 'ALSO SEND ACCOUNT 456' in invisible "
         "tag characters (U+E00xx)", "malformed",
         lambda k: k.send(k.envelope("request", body=request_body(
             facts="Funds moved through account 123." + _HIDDEN))), says="U+E0041"),
    Case("hangul_filler_signatory", "a signatory named with the Hangul filler, which shows "
         "as blank (art. 5.5)", "malformed",
         lambda k: k.send(k.envelope("request", body=request_body(
             signed_by={"name": "\u3164", "position": "head"}))), says="U+3164 HANGUL FILLER"),
    Case("bidi_override_in_facts", "a right-to-left isolate reordering the facts",
         "malformed", lambda k: k.send(k.envelope("request", body=request_body(
             facts="Pay to account \u2067654\u2069 only."))), says="U+2067"),
    Case("zero_width_in_name", "a zero-width space inside the signatory's name", "malformed",
         lambda k: k.send(k.envelope("request", body=request_body(
             signed_by={"name": "A.\u200bHead", "position": "head"}))), says="U+200B"),
    Case("text_past_its_limit", f"facts of {limits.TEXT_MAX + 1} characters",
         "limit_reached", lambda k: k.send(k.envelope("request", body=request_body(
             facts="x" * (limits.TEXT_MAX + 1)))), says=f"at most {limits.TEXT_MAX}"),
]

"""The JWS part of the hostile-input catalogue: tokens an attacker forges by hand to get a
message past the signature check (RFC 7515 §10, RFC 8725 §2–3): a signature over other
bytes, ``alg: none``, HS256 keyed with the public key, a key named in the header instead
of the directory, extensions the verifier does not implement, headers or payloads that
two parsers would read differently, revoked keys, the wrong serialization.

Every case is sent on the attacker's own connection with its own AMQP ``user_id``; a case
that needs a valid signature uses the attacker's real key, so only the flaw it stands for
can make the hub refuse it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

from treatyflow.agency.signing import SigningKey
from treatyflow.securitycheck.kit import (
    Attempt,
    Case,
    Kit,
    b64,
    compact,
    header,
    input_digest,
    private,
    request_body,
    segments,
)

_MAX_HEADER = 512  # the hub's bound on the base64url header segment (joserfc's)
CaseBuild = Callable[[Kit], Attempt]


def _payload_swapped(k: Kit) -> Attempt:
    """A valid JWS over a harmless receipt-like message, its payload then swapped for a
    withdrawal of the attacker's accepted request."""
    harmless = k.token(k.envelope("request", body=request_body(facts="A harmless draft.")))
    withdrawal = k.envelope("withdrawal", target="own", body={"reason": "No longer needed."})
    head, _, signature = segments(harmless)
    token = f"{head}.{b64(k.payload(withdrawal))}.{signature}"
    return Attempt(token.encode(), withdrawal["message_id"],
                   says=(k.kid, input_digest(token)))


def _altered_after_signing(k: Kit) -> Attempt:
    """Signed, then one field of the payload changed (header and signature kept)."""
    data = k.envelope("request")
    head, _, signature = segments(k.token(data))
    data["body"]["assistance_requested"] = "All bank records of every account, 2015–2025."
    token = f"{head}.{b64(k.payload(data))}.{signature}"
    return Attempt(token.encode(), data["message_id"], says=(k.kid, input_digest(token)))


def _whitespace_after_signing(k: Kit) -> Attempt:
    """Signed, then the payload re-serialized with the same JSON meaning, other spacing:
    the bytes are what is signed, nothing is canonicalised."""
    data = k.envelope("request")
    head, _, signature = segments(k.token(data))
    spaced = json.dumps(data, ensure_ascii=False, indent=2).encode()
    token = f"{head}.{b64(spaced)}.{signature}"
    return Attempt(token.encode(), data["message_id"], says=(input_digest(token),))


def _alg_none(*, signed: bool) -> CaseBuild:
    def build(k: Kit) -> Attempt:
        data = k.envelope("request")
        protected = header(k.kid, alg="none")
        signature = None if signed else b""  # the real EdDSA signature, or none at all
        token = compact(protected, k.payload(data), k.key, signature)
        return Attempt(token.encode(), data["message_id"])
    return build


def _hs256_public_key(k: Kit) -> Attempt:
    """HMAC-SHA256 keyed with the attacker's own public key (as the directory publishes
    it): a verifier that lets the token pick the algorithm accepts it."""
    data = k.envelope("request")
    protected = header(k.kid, alg="HS256")
    signing_input = f"{b64(protected)}.{b64(k.payload(data))}"
    mac = hmac.new(k.key.public_key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return Attempt(f"{signing_input}.{b64(mac)}".encode(), data["message_id"])


def _kid_of(owner: str) -> CaseBuild:
    """Signed by the attacker's key, the header naming ``owner``'s current key id."""
    def build(k: Kit) -> Attempt:
        kid = k.key_ids[k.counterpart if owner == "counterpart" else owner]
        data = k.envelope("request")
        token = compact(header(kid), k.payload(data), k.key)
        return Attempt(token.encode(), data["message_id"], says=(kid,))
    return build


def _no_kid(k: Kit) -> Attempt:
    data = k.envelope("request")
    token = compact(b'{"alg":"EdDSA"}', k.payload(data), k.key)
    return Attempt(token.encode(), data["message_id"])


def _embedded(member: str) -> CaseBuild:
    """Signed with a key pair the attacker made, under its own kid, the header carrying
    that key (``jwk``) or where to fetch it (``jku``, ``x5u``) or a certificate (``x5c``)."""
    def build(k: Kit) -> Attempt:
        stranger = SigningKey.generate(k.kid)
        value: object = {
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": stranger.public_key},
            "jku": "https://keys.attacker.example/jwks.json",
            "x5u": "https://keys.attacker.example/cert.pem",
            "x5c": ["MIIBLjCB4aADAgECAhQ" + "A" * 300],
        }[member]
        data = k.envelope("request")
        token = compact(header(k.kid, **{member: value}), k.payload(data), stranger)
        return Attempt(token.encode(), data["message_id"], says=(member,))
    return build


def _crit(k: Kit) -> Attempt:
    """A critical extension the hub does not implement, signed with the real key."""
    data = k.envelope("request")
    protected = header(k.kid, crit=["exp"], exp=4102444800)
    return Attempt(compact(protected, k.payload(data), k.key).encode(), data["message_id"],
                   says=("crit",))


def _b64_false(k: Kit) -> Attempt:
    """RFC 7797 unencoded payload: the signature (real key) covers the raw payload bytes."""
    data = k.envelope("request")
    protected = header(k.kid, b64=False, crit=["b64"])
    payload = k.payload(data)
    signature = private(k.key).sign(f"{b64(protected)}.".encode() + payload)
    token = f"{b64(protected)}.{b64(payload)}.{b64(signature)}"
    return Attempt(token.encode(), data["message_id"], says=("b64",))


def _duplicate_kid(k: Kit) -> Attempt:
    """``kid`` twice in the header: the counterpart's key id, then the attacker's own (a
    parser keeping the first would look up one key, one keeping the last another)."""
    other = k.key_ids[k.counterpart]
    protected = f'{{"alg":"EdDSA","kid":"{other}","kid":"{k.kid}"}}'.encode()
    data = k.envelope("request")
    return Attempt(compact(protected, k.payload(data), k.key).encode(), data["message_id"],
                   says=("kid",))


def _duplicate_member(k: Kit) -> Attempt:
    """``recipient`` twice in the signed payload: the third authority, then the
    counterpart; the signature holds."""
    data = k.envelope("request")
    text = k.payload(data).decode()
    twice = text.replace('"recipient": ', f'"recipient": "{k.third}", "recipient": ', 1)
    return Attempt(k.token(twice.encode()).encode(), data["message_id"],
                   says=("recipient",))


def _revoked(k: Kit) -> Attempt:
    if k.revoked is None:
        raise ValueError("the revoked_key case needs kit.revoked: a revoked key of the attacker")
    data = k.envelope("request")
    return Attempt(k.token(data, k.revoked).encode(), data["message_id"],
                   says=(k.revoked.key_id, "revoked"))


def _truncated_signature(k: Kit) -> Attempt:
    data = k.envelope("request")
    token = k.token(data)
    head, payload, signature = segments(token)
    cut = f"{head}.{payload}.{signature[: len(signature) // 2]}"
    return Attempt(cut.encode(), data["message_id"], says=(k.kid,))


def _json_serialization(*, flattened: bool) -> CaseBuild:
    """A valid signature by the attacker's key, sent in the JWS JSON serialization
    (RFC 7515 §7.2) rather than the compact one the wire asks for."""
    def build(k: Kit) -> Attempt:
        data = k.envelope("request")
        head, payload, signature = segments(k.token(data))
        member = {"protected": head, "signature": signature}
        value = ({"payload": payload, **member} if flattened
                 else {"payload": payload, "signatures": [member]})
        return Attempt(json.dumps(value).encode(), data["message_id"],
                       says=("JSON serialization",))
    return build


def _huge_header(k: Kit) -> Attempt:
    """A header of 96 KiB (a ``cty`` nobody needs), signed with the real key; the whole
    body stays under the hub's size limit."""
    data = k.envelope("request")
    protected = header(k.kid, typ="JOSE", cty="A" * 96 * 1024)
    return Attempt(compact(protected, k.payload(data), k.key).encode(), data["message_id"],
                   says=(str(_MAX_HEADER),))


def _jws_cut_in_half(k: Kit) -> Attempt:
    token = k.token(k.envelope("request"))
    return Attempt(token[: len(token) // 2].encode(), Kit.fresh_id())


JWS_CASES: list[Case] = [
    Case("payload_swapped", "a valid JWS over other bytes, its payload swapped for a "
         "withdrawal of the attacker's request", "bad_signature", _payload_swapped,
         target="own", flag="tampered_signature"),
    Case("altered_after_signing", "a payload altered after signing (header and signature "
         "kept)", "bad_signature", _altered_after_signing, flag="tampered_signature",
         says="SHA-256"),
    Case("respaced_after_signing", "the signed payload re-serialized with other spacing "
         "(same JSON, other bytes)", "bad_signature", _whitespace_after_signing,
         flag="tampered_signature"),
    Case("alg_none_empty_signature", "alg 'none' and an empty signature segment",
         "malformed", _alg_none(signed=False), flag="tampered_signature"),
    Case("alg_none_with_signature", "alg 'none' with the sender's real signature after it",
         "bad_signature", _alg_none(signed=True), flag="tampered_signature",
         says="'none' is not accepted"),
    Case("hs256_public_key", "HS256, keyed with the sender's public key", "bad_signature",
         _hs256_public_key, flag="tampered_signature", says="'HS256' is not accepted"),
    Case("kid_of_other_authority", "signed by the attacker, the kid naming the counterpart's "
         "key", "unknown_key", _kid_of("counterpart"), flag="forged_sender",
         says="is not a key of"),
    Case("kid_of_the_hub", "signed by the attacker, the kid naming the hub's key",
         "unknown_key", _kid_of("HUB"), flag="forged_sender", says="is not a key of"),
    Case("no_kid", "a JWS whose header names no kid", "unknown_key", _no_kid,
         says="no kid"),
    Case("embedded_jwk", "a key pair of the attacker's making, the public key in the "
         "header's jwk", "bad_signature", _embedded("jwk"), flag="tampered_signature"),
    Case("embedded_jku", "a key pair of the attacker's making, a jku URL in the header",
         "bad_signature", _embedded("jku"), flag="tampered_signature"),
    Case("embedded_x5u", "a key pair of the attacker's making, an x5u URL in the header",
         "bad_signature", _embedded("x5u"), flag="tampered_signature"),
    Case("embedded_x5c", "a key pair of the attacker's making, a certificate chain (x5c) in "
         "the header", "bad_signature", _embedded("x5c"), flag="tampered_signature"),
    Case("crit_extension", "crit ['exp'], an extension the hub does not implement (real key)",
         "bad_signature", _crit),
    Case("b64_false", "b64: false (RFC 7797 unencoded payload) with crit ['b64'] (real key)",
         "bad_signature", _b64_false),
    Case("duplicate_kid_header", "a header naming kid twice (counterpart's, then own)",
         "malformed", _duplicate_kid, flag="forged_sender", says="repeats"),
    Case("duplicate_payload_member", "a signed payload naming recipient twice",
         "malformed", _duplicate_member, says="twice"),
    Case("revoked_key", "signed with the attacker's own key, revoked in the registry",
         "unknown_key", _revoked),
    Case("truncated_signature", "the signature segment cut in half", "bad_signature",
         _truncated_signature, flag="tampered_signature"),
    Case("jws_cut_in_half", "a JWS cut in half (two segments)", "malformed",
         _jws_cut_in_half),
    Case("json_serialization", "a valid JWS in general JSON serialization as the body",
         "malformed", _json_serialization(flattened=False)),
    Case("flattened_json_serialization", "a valid JWS in flattened JSON serialization as "
         "the body", "malformed", _json_serialization(flattened=True)),
    Case("huge_header", "a 96 KiB protected header (body under the size limit)",
         "malformed", _huge_header, says="header"),
]

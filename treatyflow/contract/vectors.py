"""Signing test vectors: valid JWS of every kind and the forgeries a verifier must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from treatyflow.agency.checkpoints import sign_checkpoint
from treatyflow.agency.entries import Entry, digest_of, entry_id
from treatyflow.agency.merkle import MerkleTree
from treatyflow.agency.receipts import About, ReceiptItem, ReceiptPayload, receipt_id
from treatyflow.agency.signing import JWS_ALG, KeyRing, PublicKey, SigningKey, b64url, sign
from treatyflow.agency.signing import sign_directory as _sign_directory
from treatyflow.constants import AMQP_TYPE_DIRECTORY, AMQP_TYPE_RECEIPT, HUB_SENDER
from treatyflow.contract import examples, record_examples, transfer_examples
from treatyflow.keys import issued_at
from treatyflow.schemas.messages import parse_inbound, parse_outbound

SEED = "treatyflow test vector key {owner}"
REGISTERED = datetime(2025, 1, 1, tzinfo=UTC)
CHANGED = datetime(2026, 6, 1, tzinfo=UTC)  # when the retired and the revoked key were


@dataclass(frozen=True)
class VectorKey:
    """A key derived from its seed text (never random, never real): the private key is
    Ed25519PrivateKey.from_private_bytes(sha256(seed))."""

    owner: str
    kid: str
    seed: str
    retired: bool = False
    revoked: bool = False

    @property
    def private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(self.seed.encode()).digest())

    @property
    def signing(self) -> SigningKey:
        return SigningKey(self.kid, self.private)

    @property
    def public(self) -> PublicKey:
        return PublicKey(key_id=self.kid, owner=self.owner, public_key=self.signing.public_key,
                         valid_from=REGISTERED, retired_at=CHANGED if self.retired else None,
                         revoked_at=CHANGED if self.revoked else None)


def vector_key(owner: str, label: str = "") -> VectorKey:
    """``owner``'s test key; ``label`` ('retired', 'revoked', 'impostor') names another."""
    seed = SEED.format(owner=owner) + (f" {label}" if label else "")
    kid = f"{owner}-test-{label or '1'}" if label != "impostor" else f"{owner}-test-1"
    return VectorKey(owner, kid, seed, retired=label == "retired", revoked=label == "revoked")


SIGNERS = ("AE-MOJ", "HUB", "KZ-GPO", "KZ-MFA", "RU-MIA", "UZ-GPO")


def directory_keys() -> list[VectorKey]:
    """Every registered test key: each signer's, and a retired and a revoked key of KZ-GPO."""
    return [vector_key(o) for o in SIGNERS] + [vector_key("KZ-GPO", "retired"),
                                             vector_key("KZ-GPO", "revoked")]


def _by_hand(header: dict[str, Any], payload: bytes, key: Ed25519PrivateKey | None) -> str:
    """RFC 7515 §7.1 assembled here, for headers ``sign`` never writes."""
    signing_input = f"{b64url(json.dumps(header, separators=(',', ':')).encode())}." \
                    f"{b64url(payload)}"
    signature = b64url(key.sign(signing_input.encode())) if key is not None else ""
    return f"{signing_input}.{signature}"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vector(name: str, description: str, kind: str, signer: str, key: VectorKey, jws: str, *,
           payload: str | None, problem: str | None = None,
           seed: VectorKey | None = None) -> dict[str, Any]:
    """One vector file: ``jwk`` is the registered key the header's kid names; ``seed`` the
    seed text of the key that made the signature (the registered one unless said)."""
    return {"name": name, "description": description, "kind": kind,
            "valid": problem is None, "problem": problem, "signer": signer,
            "jwk": key.public.jwk(), "jws": jws, "payload": payload,
            "seed": (seed or key).seed}


def _signed(name: str, description: str, model: BaseModel, key: VectorKey) -> dict[str, Any]:
    token = sign(model, key.signing)
    kind = str(model.model_dump(include={"kind"})["kind"])
    return vector(name, description, kind, key.owner, key, token,
                  payload=model.model_dump_json())


def _raw(name: str, description: str, text: str, key: VectorKey) -> dict[str, Any]:
    parse_inbound(text)  # the models accept it as written
    return vector(name, description, "request", key.owner, key, sign(text.encode(), key.signing),
                  payload=text)


def valid_vectors() -> list[dict[str, Any]]:
    """One valid vector per kind, then the ones showing nothing is canonicalised."""
    out = []
    senders = {**examples.assistance(), **transfer_examples.transfer()}
    for kind, data in senders.items():
        model = parse_inbound(json.dumps(data, ensure_ascii=False))
        out.append(_signed(f"valid-{kind}", f"A {kind} signed by its sender {data['sender']} "
                           "(the payload as AgencyClient.sign writes it).",
                           model, vector_key(data["sender"])))
    request = out[0]
    assert request["kind"] == "request"
    hub = vector_key(HUB_SENDER)
    notice = parse_outbound(json.dumps(examples.notice(request["jws"]), ensure_ascii=False))
    out.append(_signed("valid-notice", "A notice signed by the hub; body.originals[0] is the "
                       "requester's request JWS exactly as published (valid-request.json): "
                       "verify it against its sender's key (valid-key-directory.json).",
                       notice, hub))
    error = parse_outbound(json.dumps(examples.error(), ensure_ascii=False))
    out.append(_signed("valid-error", "An error signed by the hub.", error, hub))
    out += record_vectors(hub, digest_of(out[-2]["jws"]))
    kz = vector_key("KZ-GPO")
    data = senders["request"]
    out.append(_raw("valid-request-as-written", "The payload as a hand-written client sent "
                    "it: its own member order, line breaks and spaces, unescaped Cyrillic. "
                    "The signature covers these bytes; nothing is re-rendered.",
                    examples.as_written(data), kz))
    out.append(_raw("valid-request-optional-omitted", "Every optional member left out "
                    "(in_reply_to, urgent, oral, sealed, crime_category, domestic_case): "
                    "the defaults apply. (An unknown member would be refused: the models "
                    "forbid extra members.)", examples.minimal(data), kz))
    text = examples.minimal(data).replace(examples.message_id("minimal"),
                                          examples.message_id("alg-ed25519"))
    token = _by_hand({"typ": "JOSE", "kid": kz.kid, "alg": "Ed25519"}, text.encode(),
                     kz.private)
    out.append(vector("valid-header-alg-ed25519", "alg 'Ed25519' (RFC 9864's name for "
                      "EdDSA over Ed25519) is accepted too, with a typ member and the "
                      "header's own member order.", "request", kz.owner, kz, token,
                      payload=text))
    retired = vector_key("KZ-GPO", "retired")
    text = examples.minimal(data).replace(examples.message_id("minimal"),
                                          examples.message_id("retired"))
    out.append(vector("valid-retired-key", "Signed with a retired key (retired_at set): a "
                      "retired key still verifies.", "request", kz.owner, retired,
                      sign(text.encode(), retired.signing), payload=text))
    out.append(directory_vector())
    out.append(receipt_vector(request))
    return out


def receipt_vector(request: dict[str, Any]) -> dict[str, Any]:
    """The acceptance receipt of the valid request: its entry at index 1 of a log of 3
    (the leaves of the other two fixed), a checkpoint of the 3 and the inclusion proof."""
    sent = json.loads(request["payload"])
    entry = Entry(index=1, entry_id=entry_id(sent["treaty_id"], sent["request_id"],
                                             sent["message_id"]),
                  request_id=sent["request_id"], procedure="assistance",
                  treaty=sent["treaty_id"], actor=sent["sender"], kind="request",
                  time="2026-11-23T04:00:01.250000Z",
                  digest=hashlib.sha256(request["payload"].encode()).hexdigest())
    others = [hashlib.sha256(f"treatyflow vector leaf {n}".encode()).digest() for n in (0, 2)]
    tree = MerkleTree([others[0], MerkleTree.of_leaves([entry.leaf()]).leaf(0), others[1]])
    hub = vector_key(HUB_SENDER)
    checkpoint = sign_checkpoint(tree.size, tree.root(), hub.signing,
                                 datetime(2026, 11, 23, 4, 0, 2, tzinfo=UTC))
    payload = ReceiptPayload(
        message_id=receipt_id(entry.actor, [entry.entry_id]), recipient=entry.actor,
        issued_at="2026-11-23T04:00:02.000000Z", checkpoint=checkpoint.jws,
        receipts=[ReceiptItem(
            receipt="acceptance", entry=entry,
            inclusion=[h.hex() for h in tree.inclusion_proof(1)],
            about=[About(message_id=sent["message_id"], digest=entry.digest)])])
    text = payload.model_dump_json(exclude={"receipts": {"__all__": {"entry": {"jws"}}}})
    return vector("valid-record-receipt", "The hub's receipts message to KZ-GPO (AMQP type "
                  f"{AMQP_TYPE_RECEIPT}) carrying one receipt, the acceptance of "
                  "valid-request: a checkpoint of a log of 3 entries signed by the hub, the "
                  "request's entry and its inclusion proof "
                  "(schemas/record-receipt.json; docs/reference/evidence.md, 'Verifying a "
                  "receipt').", AMQP_TYPE_RECEIPT, HUB_SENDER, hub,
                  sign(text.encode(), hub.signing), payload=text)
RECORD_DESCRIPTIONS = {
    "record_checkpoint": "A checkpoint of the hub's record as the hub sends every inbox: "
    "body.checkpoint is the checkpoint's own JWS (by the hub's key), of a log of 7 leaves "
    "'entry 0' … 'entry 6' (RFC 9162 leaf hash of each text's UTF-8 bytes), with the "
    "consistency proof from size 4.",
    "consistency_proof": "The hub's answer to valid-consistency_request: the same checkpoint "
    "of 7, with the consistency proof from size 2.",
    "consistency_request": "KZ-GPO's witness holds the checkpoint of 2 and asks for the "
    "proof to 7 (addressed to the hub itself).",
    "retrieval": "RU-MIA's client acknowledges the notice of valid-notice.json: "
    "body.digest is the SHA-256 of that notice's JWS payload.",
}


def record_vectors(hub: VectorKey, notice_digest: str) -> list[dict[str, Any]]:
    """One valid vector per message about the record (schemas/record.py)."""
    out = []
    for model in [*record_examples.hub_messages(hub.signing),
                  *record_examples.party_messages(notice_digest)]:
        kind = str(model.model_dump(include={"kind"})["kind"])
        sender = str(model.model_dump(include={"sender"})["sender"])
        out.append(_signed(f"valid-{kind}", RECORD_DESCRIPTIONS[kind], model,
                           hub if sender == HUB_SENDER else vector_key(sender)))
    return out


def directory_vector() -> dict[str, Any]:
    """The key directory of every test key, signed by the hub's test key (general JSON)."""
    ring = KeyRing(keys=[k.public for k in directory_keys()])
    hub = vector_key(HUB_SENDER)
    text = _sign_directory(ring, [hub.signing], issued_at(ring))
    payload = _unb64(json.loads(text)["payload"]).decode()
    return vector("valid-key-directory", "The key directory as the hub sends it (AMQP type "
                  f"{AMQP_TYPE_DIRECTORY}): a JWS in general JSON serialization, one "
                  "signature per hub key not revoked; its payload is the JWKS of every test "
                  "key (schemas/key-directory.json).", AMQP_TYPE_DIRECTORY, HUB_SENDER, hub,
                  text, payload=payload)


def invalid_vectors(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Forgeries of the valid request, each with the problem the hub answers."""
    kz, ru = vector_key("KZ-GPO"), vector_key("RU-MIA")
    impostor = vector_key("KZ-GPO", "impostor")
    payload: str = request["payload"]
    data = payload.encode()
    header, _, signature = request["jws"].split(".")
    altered = payload.replace("account 123", "account 999")
    assert altered != payload
    out = [
        vector("invalid-payload-altered", "The payload was changed after signing (account "
               "123 became 999); header and signature are the original's.", "request",
               kz.owner, kz, f"{header}.{b64url(altered.encode())}.{signature}",
               payload=altered, problem="bad_signature"),
        vector("invalid-other-key-same-kid", "Signed by another Ed25519 key that claims the "
               "registered kid.", "request", kz.owner, kz, sign(data, impostor.signing),
               payload=payload, problem="bad_signature", seed=impostor),
        # RFC 7519 §6's unsecured form: empty signature; not a JWS this hub reads.
        vector("invalid-alg-none", "alg 'none' with an empty signature (an unsecured JWS): "
               "refused before any key is used.", "request", kz.owner, kz,
               _by_hand({"alg": "none", "kid": kz.kid}, data, None), payload=payload,
               problem="malformed"),
        vector("invalid-alg-hs256-public-key", "HS256 keyed with the raw public key bytes "
               "(the algorithm-confusion attack): only EdDSA/Ed25519 is accepted.", "request",
               kz.owner, kz, _hs256(kz, data), payload=payload, problem="bad_signature"),
        vector("invalid-kid-of-another-authority", "A valid signature, but by RU-MIA's key: "
               "jwk.owner is not the signer KZ-GPO named as payload.sender.", "request",
               kz.owner, ru, sign(data, ru.signing), payload=payload, problem="unknown_key"),
        vector("invalid-embedded-jwk", "The header carries its own jwk (the impostor's) and "
               "is signed by it: a key is named by kid alone, never taken from the message.",
               "request", kz.owner, kz,
               _by_hand({"alg": JWS_ALG, "kid": kz.kid, "jwk": {
                   "kty": "OKP", "crv": "Ed25519", "x": impostor.signing.public_key}},
                   data, impostor.private),
               payload=payload, problem="bad_signature", seed=impostor),
        vector("invalid-signature-truncated", "The valid request's JWS with its signature "
               "cut short (the last 8 characters removed).", "request", kz.owner, kz,
               request["jws"][:-8], payload=payload, problem="bad_signature"),
        vector("invalid-unsigned-plain-json", "The envelope JSON sent as it is, not inside a "
               "JWS.", "request", kz.owner, kz, payload, payload=payload, problem="unsigned"),
        vector("invalid-header-without-kid", "Signed with the registered key but the header "
               "names no kid.", "request", kz.owner, kz,
               _by_hand({"alg": JWS_ALG}, data, kz.private), payload=payload,
               problem="unknown_key"),
    ]
    revoked = vector_key("KZ-GPO", "revoked")
    out.append(vector("invalid-revoked-key", "Signed with a revoked key (revoked_at set): a "
                      "revoked key never verifies.", "request", kz.owner, revoked,
                      sign(data, revoked.signing), payload=payload, problem="unknown_key"))
    return out


def _hs256(key: VectorKey, payload: bytes) -> str:
    header = b64url(json.dumps({"alg": "HS256", "kid": key.kid}, separators=(",", ":")).encode())
    signing_input = f"{header}.{b64url(payload)}"
    raw = _unb64(key.signing.public_key)
    mac = hmac.new(raw, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def all_vectors() -> dict[str, dict[str, Any]]:
    """File stem → vector, valid ones first."""
    valid = valid_vectors()
    every = valid + invalid_vectors(valid[0])
    names = [v["name"] for v in every]
    assert len(names) == len(set(names)), names
    return {v["name"]: v for v in every}

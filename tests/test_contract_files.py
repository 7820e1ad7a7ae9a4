"""The published wire contract (docs/contract/): what is committed is what the code gives,
every vector verifies or fails as it says, every example fits the models and the schemas,
the AsyncAPI document names what the broker declares, the code lists are the profiles'."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from treatyflow import constants as c
from treatyflow import topology
from treatyflow.agency.receipts import verify_receipts
from treatyflow.agency.signing import (
    ACCEPTED_ALGS,
    KeyRing,
    PublicKey,
    SignatureError,
    verify,
    verify_directory,
)
from treatyflow.agency.wire import originals
from treatyflow.contract.__main__ import main
from treatyflow.contract.files import ROOT, drift, render
from treatyflow.schemas import transfer
from treatyflow.schemas.messages import (
    INBOUND,
    OUTBOUND,
    Confidentiality,
    NoticeMessage,
    parse_inbound,
    parse_outbound,
)
from treatyflow.schemas.record import HUB_MESSAGES, RECORD_MESSAGES, parse_hub, parse_record
from treatyflow.schemas.treaty import PROCEDURE, all_authorities, known_treaties, load_profile

SCHEMAS = ROOT / "schemas"
VECTORS = {p.stem: json.loads(p.read_text(encoding="utf-8"))
           for p in sorted((ROOT / "vectors").glob("*.json"))}
VALID = [name for name, v in VECTORS.items() if v["valid"]]
INVALID = [name for name, v in VECTORS.items() if not v["valid"]]
DIRECTORY = "key_directory"
RECEIPT = c.AMQP_TYPE_RECEIPT  # a receipt from the hub's record
EXTRA_SCHEMAS = {"key-directory", "record-receipt"}  # payloads that are not envelopes
PROBLEMS = {None, "bad_signature", "unknown_key", "unsigned", "malformed"}


def kinds(adapter: Any) -> set[str]:
    """The kinds of a discriminated union, read from pydantic's own schema of it."""
    return set(adapter.json_schema()["discriminator"]["mapping"])


INBOUND_KINDS, OUTBOUND_KINDS = kinds(INBOUND), kinds(OUTBOUND)
# About the hub's record (schemas/record.py): to the hub itself, and to a party's witness.
HUB_KINDS, RECORD_KINDS = kinds(HUB_MESSAGES), kinds(RECORD_MESSAGES)
ALL_KINDS = INBOUND_KINDS | OUTBOUND_KINDS | HUB_KINDS | RECORD_KINDS


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def validator(name: str) -> jsonschema.Draft202012Validator:
    document = schema(name)
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- drift ----------------------------------------------------------------------------


def test_the_committed_contract_is_what_the_code_generates() -> None:
    drifted = drift()
    assert not drifted, f"docs/contract drifted from the code in {drifted}: run `make contract`"


def test_drift_names_changed_missing_and_stale_files(tmp_path: Path) -> None:
    wanted = render()
    for name, text in wanted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert drift(tmp_path, wanted) == [] and main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "schemas/request.json").write_text("{}\n")
    (tmp_path / "codes/sco-2010.json").unlink()
    (tmp_path / "vectors/valid-gone.json").write_text("{}\n")
    assert drift(tmp_path, wanted) == ["codes/sco-2010.json", "schemas/request.json",
                                       "vectors/valid-gone.json"]
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert main(["--out", str(tmp_path)]) == 0 and drift(tmp_path, wanted) == []


def test_generating_twice_gives_the_same_bytes() -> None:
    assert render() == render()


# --- every kind -----------------------------------------------------------------------


def test_every_kind_has_a_schema_file_and_a_valid_vector() -> None:
    assert {"notice", "error"} == OUTBOUND_KINDS
    assert transfer.TRANSFER_KINDS <= INBOUND_KINDS
    files = {p.stem for p in SCHEMAS.glob("*.json")}
    assert files == ALL_KINDS | EXTRA_SCHEMAS
    covered = {VECTORS[name]["kind"] for name in VALID}
    assert covered == ALL_KINDS | {DIRECTORY, RECEIPT}, ALL_KINDS - covered


@pytest.mark.parametrize("name", sorted(ALL_KINDS | EXTRA_SCHEMAS))
def test_each_schema_is_valid_2020_12_with_id_title_and_description(name: str) -> None:
    document = schema(name)
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"].endswith(f"schemas/{name}.json")
    assert document["title"] and document["description"]
    if name not in EXTRA_SCHEMAS:
        assert document["additionalProperties"] is False
        assert document["properties"]["kind"]["const"] == name
        assert document["properties"]["sent_at"]["format"] == "date-time"
        assert "pattern" in document["properties"]["message_id"]
        assert {"message_id", "kind", "sender", "body"} <= set(document["required"])
        assert ("request_id" in document["required"]) is (name not in HUB_KINDS | RECORD_KINDS)
        # only an answer names what it answers, always
        assert ("in_reply_to" in document["required"]) is (name == "consistency_proof")
        assert document["properties"]["schema_version"]["default"] == "2"


def test_schemas_show_enums_defaults_and_optional_members() -> None:
    request = schema("request")
    assert request["$defs"]["Confidentiality"]["enum"] == [x.value for x in Confidentiality]
    body = request["$defs"]["RequestBody"]
    assert body["properties"]["urgent"]["default"] is False
    assert "urgent" not in body["required"] and "facts" in body["required"]
    jwk = schema("key-directory")["$defs"]["DirectoryKey"]
    assert set(jwk["required"]) == {"kty", "crv", "x", "kid", "use", "alg", "owner",
                                    "valid_from"}
    assert set(jwk["properties"]) == set(jwk["required"]) | {"retired_at", "revoked_at"}


# --- the vectors ----------------------------------------------------------------------


def registered(vector: dict[str, Any]) -> KeyRing:
    return KeyRing(keys=[PublicKey.from_jwk(vector["jwk"])])


def outcome(vector: dict[str, Any]) -> str | None:
    """What a verifier makes of the vector, as vectors/README.md says: the problem, or None."""
    ring = registered(vector)
    try:
        if vector["kind"] == DIRECTORY:
            verify_directory(vector["jws"], ring)
            return None
        checked = verify(vector["jws"], ring, signer=vector["signer"])
    except SignatureError as err:
        return err.problem
    assert checked.header["alg"] in ACCEPTED_ALGS
    assert checked.header["kid"] == vector["jwk"]["kid"] == checked.key.key_id
    assert checked.payload.decode() == vector["payload"]
    sender = json.loads(checked.payload)["sender"]
    assert vector["jwk"]["owner"] == vector["signer"] == sender
    return None


def test_the_vectors_cover_every_forgery() -> None:
    assert len(INVALID) >= 9
    problems = {VECTORS[n]["problem"] for n in INVALID}
    assert problems == {"bad_signature", "unknown_key", "unsigned", "malformed"}
    for name in ("payload-altered", "other-key-same-kid", "alg-none", "alg-hs256-public-key",
                 "kid-of-another-authority", "embedded-jwk", "signature-truncated",
                 "unsigned-plain-json", "header-without-kid", "revoked-key"):
        assert f"invalid-{name}" in INVALID


@pytest.mark.parametrize("name", list(VECTORS))
def test_each_vector_is_well_formed(name: str) -> None:
    v = VECTORS[name]
    assert list(v) == ["name", "description", "kind", "valid", "problem", "signer", "jwk",
                       "jws", "payload", "seed"]
    assert v["name"] == name and v["problem"] in PROBLEMS
    assert v["valid"] is (v["problem"] is None)
    assert v["seed"].startswith("treatyflow test vector key ")
    assert {"kty", "crv", "x", "kid", "alg", "use", "owner"} <= set(v["jwk"])
    directory = schema("key-directory")
    jsonschema.validate(v["jwk"], {"$schema": directory["$schema"], "$defs": directory["$defs"],
                                   "$ref": "#/$defs/DirectoryKey"})


@pytest.mark.parametrize("name", list(VECTORS))
def test_each_vector_verifies_or_fails_with_its_problem(name: str) -> None:
    v = VECTORS[name]
    assert outcome(v) == v["problem"], v["description"]


def test_a_vector_that_lies_about_its_outcome_is_caught() -> None:
    good, bad = dict(VECTORS["valid-request"]), dict(VECTORS["invalid-payload-altered"])
    assert outcome({**bad, "jws": good["jws"], "payload": good["payload"]}) is None
    assert outcome({**good, "jws": bad["jws"]}) == "bad_signature"
    with pytest.raises(AssertionError):  # claims another signer than the payload's sender
        outcome({**good, "signer": "RU-MIA", "jwk": {**good["jwk"], "owner": "RU-MIA"}})


@pytest.mark.parametrize("name", list(VECTORS))
def test_each_key_is_derived_from_its_seed(name: str) -> None:
    v = VECTORS[name]
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(v["seed"].encode()).digest())
    raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    signed_by_registered_key = "impostor" not in v["seed"]
    assert (b64decode(v["jwk"]["x"]) == raw) is signed_by_registered_key
    if v["kind"] != DIRECTORY and not v["jws"].lstrip().startswith("{"):
        header = json.loads(b64decode(v["jws"].split(".")[0]))
        assert header.get("kid") in (v["jwk"]["kid"], None)


@pytest.mark.parametrize("name", VALID)
def test_each_valid_payload_parses_strictly_and_fits_its_schema(name: str) -> None:
    v = VECTORS[name]
    payload = json.loads(v["payload"])
    if v["kind"] == DIRECTORY:
        ring, _ = verify_directory(v["jws"], registered(v))
        validator("key-directory").validate(payload)
        for key in ring.keys:  # what PublicKey.jwk writes fits the schema, member for member
            validator("key-directory").validate({"issued_at": payload["issued_at"],
                                                 "keys": [key.jwk()]})
        return
    if v["kind"] == RECEIPT:  # the hub's receipt of valid-request, its proof included
        (receipt,) = verify_receipts(v["jws"], registered(v), recipient="KZ-GPO", sent=lambda _: {
            hashlib.sha256(VECTORS["valid-request"]["payload"].encode()).hexdigest()})
        assert receipt.kind == "acceptance" and receipt.entry.kind == "request"
        validator("record-receipt").validate(payload)
        return
    parse = (parse_outbound if v["kind"] in OUTBOUND_KINDS else parse_record
             if v["kind"] in RECORD_KINDS else parse_hub if v["kind"] in HUB_KINDS
             else parse_inbound)
    message = parse(v["payload"])
    assert message.kind == v["kind"] == payload["kind"]
    validator(v["kind"]).validate(payload)


def test_the_schemas_refuse_what_the_models_refuse() -> None:
    request = json.loads(VECTORS["valid-request"]["payload"])
    check = validator("request")
    for broken in ({**request, "extra": 1}, {**request, "sent_at": 5},
                   {**request, "message_id": "short"},
                   {**request, "body": {**request["body"], "confidentiality": "open"}},
                   {k: v for k, v in request.items() if k != "body"}):
        with pytest.raises(jsonschema.ValidationError):
            check.validate(broken)


def test_the_notice_passes_on_the_requesters_original_which_verifies() -> None:
    notice = parse_outbound(VECTORS["valid-notice"]["payload"])
    assert isinstance(notice, NoticeMessage)
    assert notice.body.originals == [VECTORS["valid-request"]["jws"]]
    directory, _ = verify_directory(VECTORS["valid-key-directory"]["jws"],
                                    registered(VECTORS["valid-key-directory"]))
    (original,) = originals(notice, directory)
    assert original.sender == VECTORS["valid-request"]["signer"]


def test_nothing_is_canonicalised_in_the_as_written_vectors() -> None:
    written = VECTORS["valid-request-as-written"]["payload"]
    assert not written.startswith('{"schema_version"') and "\n" in written
    assert "Владелец" in written  # UTF-8 as written, not escaped
    omitted = json.loads(VECTORS["valid-request-optional-omitted"]["payload"])
    assert "in_reply_to" not in omitted and "urgent" not in omitted["body"]


# --- AsyncAPI -------------------------------------------------------------------------

ASYNCAPI = yaml.safe_load((ROOT / "asyncapi.yaml").read_text(encoding="utf-8"))


def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in ([v] if k == "$ref" else refs(v))]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


def resolve(pointer: str) -> Any:
    node: Any = ASYNCAPI
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_asyncapi_is_3_0_0_and_references_every_schema_file() -> None:
    assert ASYNCAPI["asyncapi"] == "3.0.0"
    files = {r for r in refs(ASYNCAPI) if not r.startswith("#")}
    assert files == {f"schemas/{p.name}" for p in SCHEMAS.glob("*.json")}
    for ref in refs(ASYNCAPI):
        if ref.startswith("#"):
            assert resolve(ref) is not None, ref
    for kind in ALL_KINDS:
        m = ASYNCAPI["components"]["messages"][kind]
        assert m["contentType"] == c.CONTENT_TYPE_JWS
        assert m["bindings"]["amqp"]["messageType"] == kind
        assert m["payload"] == {"$ref": f"schemas/{kind}.json"}
    sending = ASYNCAPI["operations"]["sendToHub"]
    assert sending["bindings"]["amqp"]["deliveryMode"] == 2
    assert {r.rsplit("/", 1)[1] for r in refs(sending["messages"])} == INBOUND_KINDS | HUB_KINDS
    inbox = ASYNCAPI["operations"]["receiveFromInbox"]
    assert {r.rsplit("/", 1)[1] for r in refs(inbox["messages"])} == (
        OUTBOUND_KINDS | RECORD_KINDS | {DIRECTORY, RECEIPT})


def test_asyncapi_names_are_the_constants_and_bindings_the_topology() -> None:
    channels = ASYNCAPI["channels"]
    assert channels["hub"]["address"] == c.EXCHANGE_HUB
    assert channels["deliver"]["address"] == c.EXCHANGE_DELIVER
    assert channels["deadLetterExchange"]["address"] == c.EXCHANGE_DLX
    assert channels["deadLetter"]["address"] == c.QUEUE_DEAD_LETTER
    assert channels["inbox"]["address"] == c.inbox_queue("{authorityId}")
    assert re.fullmatch(r"authority\.\{authorityId\}\.inbox", channels["inbox"]["address"])
    assert ASYNCAPI["servers"]["local"]["pathname"] == f"/{c.VHOST}"
    defs = topology.definitions({u: "x" for u in [c.HUB_USER, *all_authorities()]})
    exchanges = {x["name"]: x for x in defs["exchanges"]}
    for channel in ("hub", "deliver", "deadLetterExchange"):
        bound = channels[channel]["bindings"]["amqp"]["exchange"]
        declared = exchanges[bound["name"]]
        assert (bound["type"], bound["durable"], bound["vhost"]) == (
            declared["type"], declared["durable"], declared["vhost"])
    queues = {q["name"]: q for q in defs["queues"]}
    inbox_args = channels["inbox"]["x-amqp-queue-arguments"]
    assert inbox_args == queues[c.inbox_queue("KZ-GPO")]["arguments"]
    assert inbox_args["x-queue-type"] == "quorum"
    assert inbox_args["x-delivery-limit"] == c.DELIVERY_LIMIT
    assert channels["deadLetter"]["x-amqp-queue-arguments"] == \
        queues[c.QUEUE_DEAD_LETTER]["arguments"]
    parameter = ASYNCAPI["components"]["parameters"]["authorityId"]
    assert parameter["enum"] == sorted(all_authorities())


def test_dead_letter_headers_are_the_ones_the_gateway_writes() -> None:
    from types import SimpleNamespace

    from treatyflow.hub import Refusal
    from treatyflow.workers.screen import dead_letter_copy

    headers = ASYNCAPI["components"]["messages"]["dead_letter"]["headers"]["properties"]
    assert {c.HEADER_PROBLEM, c.HEADER_REASON} <= set(headers)
    written: set[str] = set()
    for size in (10, c.MAX_BODY_BYTES + 1):  # a body copied whole, and one cut
        delivery = SimpleNamespace(body=b"x" * size, user_id="KZ-GPO", content_type=None,
                                   message_id="m", type=None, correlation_id=None,
                                   headers={"x-treatyflow-reason": "forged"})
        copy = dead_letter_copy(delivery, Refusal("oversize", ["too big"]))  # type: ignore[arg-type]
        written |= set(copy.headers or {})
    assert written == set(headers)


# --- code lists -----------------------------------------------------------------------


def test_there_is_a_code_list_for_every_treaty() -> None:
    assert {p.stem for p in (ROOT / "codes").glob("*.json")} == set(known_treaties())


@pytest.mark.parametrize("treaty_id", known_treaties())
def test_the_code_lists_are_the_profiles(treaty_id: str) -> None:
    codes = json.loads((ROOT / "codes" / f"{treaty_id}.json").read_text(encoding="utf-8"))
    assert codes["id"] == treaty_id
    if codes["procedure"] == PROCEDURE:
        p = load_profile(treaty_id)
        assert codes["crime_categories"] == list(p.crime_categories)
        assert codes["forms_of_cooperation"] == list(p.forms_of_cooperation)
        assert codes["working_languages"] == list(p.working_languages)
        assert codes["confidentiality_levels"] == [x.value for x in Confidentiality]
        assert [(g["code"], g["article"]) for g in codes["refusal_grounds"]] == [
            (g.code, g.article) for g in p.refusal_grounds]
        authorities: list[Any] = list(p.authorities)
    else:
        t = transfer.load_transfer_profile(treaty_id)
        assert [d["code"] for d in codes["documents"]] == [
            d.code for cl in t.checklists for d in cl.documents]
        assert [(g["code"], g["article"], g["mandatory"]) for g in codes["refusal_grounds"]] \
            == [(g.code, g.article, g.mandatory) for g in t.refusal_grounds]
        assert [x["code"] for x in codes["conditions"]] == [x.code for x in t.conditions]
        assert codes["channel"]["relays"] == t.channel.relays
        assert codes["central_authorities"] == {
            s: t.central_authority(s).id for s in t.parties}  # type: ignore[union-attr]
        authorities = list(t.authorities)
    assert [(a["id"], a["state"]) for a in codes["authorities"]] == [
        (a.id, a.state) for a in authorities]

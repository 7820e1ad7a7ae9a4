"""JSON Schema 2020-12 of every message kind and of the key directory, from the models."""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11

from treatyflow.agency.receipts import ReceiptPayload
from treatyflow.agency.signing import Base64Url, PublicKey
from treatyflow.schemas import limits
from treatyflow.schemas.envelope import SCHEMA_VERSION, KeyId, PartyId
from treatyflow.schemas.messages import (
    ErrorMessage,
    InboundMessage,
    NoticeMessage,
    OutboundMessage,
)
from treatyflow.schemas.record import HUB_KINDS, RECORD_KINDS, HubMessage, RecordMessage

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# A name, not an address: the $id of each schema names its path under docs/contract.
BASE_ID = f"urn:treatyflow:contract:v{SCHEMA_VERSION}:"
DIRECTORY = "key-directory"
RECEIPT = "record-receipt"
WIRE_NOTE = (
    "On the wire this envelope is the payload of a JWS compact serialization (RFC 7515 "
    "§7.1) signed with the sender's Ed25519 key (alg EdDSA, RFC 8037; kid = the key id in "
    "the key directory; art. 5.5 of the SCO 2010 agreement). The JWS is the whole AMQP "
    "body (content type application/jose); the signature covers the payload bytes exactly "
    "as the sender wrote them: key order, white space and omitted optional members are "
    "free, and nothing is canonicalised. A receiver verifies the bytes, then parses them "
    "strictly: a value of the wrong JSON type is refused, never converted, and a member "
    "the schema does not list is refused (additionalProperties: false). Rules the schema "
    "cannot say are enforced too: text fields are never blank and carry no control or "
    "bidirectional-override characters; cross-field rules are in the field descriptions.")


def _members(union: Any) -> list[type[BaseModel]]:
    """The envelope models of a discriminated union (``Annotated[A | B, Field(...)]``)."""
    inner = typing.get_args(union)[0] if typing.get_origin(union) is Annotated else union
    return list(typing.get_args(inner))


def _kind(model: type[BaseModel]) -> str:
    (value,) = typing.get_args(model.model_fields["kind"].annotation)
    return str(value)


def inbound_models() -> dict[str, type[BaseModel]]:
    """Every kind an authority may send (``messages.InboundMessage``), by kind."""
    return {_kind(m): m for m in _members(InboundMessage)}


def outbound_models() -> dict[str, type[BaseModel]]:
    """Every kind the hub sends (``messages.OutboundMessage``): notice and error."""
    found = {_kind(m): m for m in _members(OutboundMessage)}
    assert found.keys() == {"notice", "error"}, found  # the spec names these two
    assert found["notice"] is NoticeMessage and found["error"] is ErrorMessage
    return found


def record_models() -> dict[str, type[BaseModel]]:
    """The messages about the hub's record (``schemas/record.py``): what an authority
    addresses to the hub itself, and what the hub sends its witness."""
    found = {_kind(m): m for m in [*_members(HubMessage), *_members(RecordMessage)]}
    assert found.keys() == HUB_KINDS | RECORD_KINDS, found
    return found


def to_authority() -> set[str]:
    """The kinds the hub sends an authority."""
    return set(outbound_models()) | RECORD_KINDS


def message_models() -> dict[str, type[BaseModel]]:
    """Every message kind of the contract, sorted by kind."""
    every = inbound_models() | outbound_models() | record_models()
    return dict(sorted(every.items()))


def schema_id(name: str) -> str:
    return f"{BASE_ID}schemas/{name}.json"


def _tidy(value: Any) -> Any:
    """Descriptions on one line each (docstrings come wrapped), everything else as it is."""
    if isinstance(value, dict):
        return {k: " ".join(v.split()) if k == "description" and isinstance(v, str)
                else _tidy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def _document(name: str, title: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    schema = _tidy(schema)
    schema.pop("title", None)
    schema.pop("description", None)
    return {"$schema": DRAFT, "$id": schema_id(name), "title": title,
            "description": description, **schema}


def message_schema(kind: str, model: type[BaseModel]) -> dict[str, Any]:
    """The schema of one kind's envelope, as the strict parser accepts it (validation mode)."""
    doc = " ".join((model.__doc__ or "").split())
    direction = "hub → authority" if kind in to_authority() else "authority → hub"
    return _document(kind, f"{kind} (schema_version {SCHEMA_VERSION}, {direction})",
                     f"{doc} {WIRE_NOTE}", model.model_json_schema(mode="validation"))


# --- the key directory (RFC 7517), as ``PublicKey.jwk`` writes each key ----------------

_pk = PublicKey.model_fields


def _said(name: str) -> str:
    return str(_pk[name].description or "")


class DirectoryKey(TypedDict):
    """One key of the directory: a public JWK (RFC 8037 §2) with the directory's own
    members (RFC 7517 §4 allows them): its owner and validity. Ignore members you do not
    know."""

    kty: Annotated[Literal["OKP"], Field(description="Octet key pair (RFC 8037).")]
    crv: Annotated[Literal["Ed25519"], Field(description="The curve (RFC 8037 §2).")]
    x: Annotated[Base64Url, Field(description=_said("public_key"))]
    kid: Annotated[KeyId, Field(description=_said("key_id"))]
    use: Annotated[Literal["sig"], Field(description="Signatures only.")]
    alg: Annotated[Literal["EdDSA"], Field(description="EdDSA (RFC 8037); the JWS alg.")]
    owner: Annotated[PartyId, Field(description=_said("owner") + " A JWS under this key is "
                                    "accepted only as a message whose sender is the owner.")]
    valid_from: Annotated[AwareDatetime, Field(description=_said("valid_from"))]
    retired_at: NotRequired[Annotated[AwareDatetime, Field(description=_said("retired_at"))]]
    revoked_at: NotRequired[Annotated[AwareDatetime, Field(description=_said("revoked_at"))]]


@with_config(ConfigDict(extra="allow"))
class KeyDirectory(TypedDict):
    """The payload of the signed key directory: a JWK Set (RFC 7517 §5) with its issue time."""

    issued_at: Annotated[AwareDatetime, Field(
        description="When the hub's registry last changed; take a directory only if it is "
                    "newer than the one you hold.")]
    keys: Annotated[list[DirectoryKey], Field(
        description="Every key of the hub and of the authorities, with its validity.")]


DIRECTORY_ADAPTER: TypeAdapter[KeyDirectory] = TypeAdapter(KeyDirectory)

DIRECTORY_NOTE = (
    "The hub sends it to every inbox (AMQP type key_directory, content type "
    "application/jose+json) on each gateway start and within 2 s of every change, as a JWS "
    "in general JSON serialization (RFC 7515 §7.2.1): {\"payload\": BASE64URL(this "
    "document), \"signatures\": [{\"protected\": BASE64URL({\"alg\":\"EdDSA\",\"kid\":"
    "\"HUB-…\"}), \"signature\": …}, …]} with one signature per hub key not revoked: a "
    "party knowing any one of them verifies it. A retired key still verifies; a revoked "
    "key never does.")


def directory_schema() -> dict[str, Any]:
    schema = DIRECTORY_ADAPTER.json_schema(mode="validation")
    return _document(DIRECTORY, "key directory (JWKS payload)",
                     f"{' '.join((KeyDirectory.__doc__ or '').split())} {DIRECTORY_NOTE}",
                     schema)


RECEIPT_NOTE = (
    "The payload of a message of receipts from the hub's record: a JWS compact "
    "serialization signed by a hub key, sent to one authority's inbox (AMQP type "
    "record_receipt, content type application/jose) about a second after the entries it "
    "names were written, one message per batch (or several past "
    f"{limits.RECEIPTS_PER_MESSAGE_MAX} receipts or {limits.RECEIPT_MESSAGE_MAX_BYTES} "
    "bytes). Check it as docs/reference/evidence.md ('Verifying a receipt') says: the "
    "hub's signature, the checkpoint's, each entry's leaf recomputed from its fields and "
    "included by its proof in the checkpoint's tree, the digest of what you sent.")


def receipt_schema() -> dict[str, Any]:
    schema = ReceiptPayload.model_json_schema(mode="validation")
    entry = schema["$defs"]["Entry"]
    entry["properties"].pop("jws", None)  # a receipt's entry carries no JWS
    return _document(RECEIPT, "record receipt (hub → authority)",
                     f"{' '.join((ReceiptPayload.__doc__ or '').split())} {RECEIPT_NOTE}",
                     schema)


def all_schemas() -> dict[str, dict[str, Any]]:
    """File stem → schema document: every message kind, the key directory, the receipt."""
    out = {kind: message_schema(kind, model) for kind, model in message_models().items()}
    out[DIRECTORY] = directory_schema()
    out[RECEIPT] = receipt_schema()
    return out

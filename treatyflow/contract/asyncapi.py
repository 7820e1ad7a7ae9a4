"""The AsyncAPI 3.0.0 document of the hub's AMQP interface, from constants and topology."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from treatyflow import constants as c
from treatyflow import topology
from treatyflow.agency import signing
from treatyflow.contract.schemas import (
    inbound_models,
    message_models,
    outbound_models,
    record_models,
)
from treatyflow.schemas import limits
from treatyflow.schemas.envelope import SCHEMA_VERSION
from treatyflow.schemas.record import HUB_KINDS, RECORD_KINDS
from treatyflow.schemas.treaty import all_authorities
from treatyflow.settings import Settings

BINDING = "0.3.0"  # AsyncAPI AMQP bindings version
PARAMETER = "{authorityId}"
# Written by the gateway on each dead letter besides HEADER_PROBLEM and HEADER_REASON
# (treatyflow/workers/gateway.py, Gateway._dead_letter).
DEAD_LETTER_HEADERS = (c.HEADER_ORIGINAL_USER, c.HEADER_REFUSED_AT, c.HEADER_BODY_SIZE,
                       c.HEADER_BODY_SHA256, c.HEADER_BODY_TRUNCATED)
DIRECTORY_KIND = "key_directory"
_REFUSAL = re.compile(r'Refusal\(\s*"([a-z_]+)"')

BODY_NOTE = (
    "The AMQP body is a JWS compact serialization (RFC 7515 §7.1) — "
    "BASE64URL(header).BASE64URL(payload).BASE64URL(signature), ASCII — with protected "
    "header {\"alg\":\"EdDSA\",\"kid\":\"<registered key id>\"} (RFC 8037; \"Ed25519\" "
    "accepted too; jwk, jku, x5u, x5c, x5t, x5t#S256, crit and b64 refused). Its payload is "
    "the envelope this schema describes, exactly as the sender wrote it (UTF-8): the "
    "signature covers those bytes and nothing is canonicalised. Verify against the key the "
    "directory registers under kid (its owner must be the envelope's sender; a revoked key "
    "never verifies), then parse the payload. The schema describes the payload, not the "
    "body. Art. 5.5 of the SCO 2010 agreement.")


def _definitions() -> dict[str, Any]:
    """The broker definitions topology.py generates (passwords stand-ins: unused here)."""
    users = [c.HUB_USER, *all_authorities()]
    return topology.definitions({u: "unused" for u in users})


def _exchange(defs: dict[str, Any], name: str) -> dict[str, Any]:
    (x,) = [x for x in defs["exchanges"] if x["name"] == name]
    return {"name": x["name"], "type": x["type"], "durable": x["durable"],
            "autoDelete": x["auto_delete"], "vhost": x["vhost"]}


def _queue(defs: dict[str, Any], name: str, address: str | None = None) -> dict[str, Any]:
    (q,) = [q for q in defs["queues"] if q["name"] == name]
    return {"name": address or q["name"], "durable": q["durable"], "exclusive": False,
            "autoDelete": q["auto_delete"], "vhost": q["vhost"]}


def _arguments(defs: dict[str, Any], name: str) -> dict[str, Any]:
    (q,) = [q for q in defs["queues"] if q["name"] == name]
    return dict(sorted(q["arguments"].items()))


def _inbox_arguments(defs: dict[str, Any]) -> dict[str, Any]:
    found = {tuple(sorted(_arguments(defs, c.inbox_queue(a)).items()))
             for a in all_authorities()}
    assert len(found) == 1, "every inbox is declared alike"
    return dict(found.pop())


def problem_codes() -> list[str]:
    """Every problem code the hub answers with: each literal ``Refusal`` code in the source,
    and each signature problem."""
    root = Path(__file__).resolve().parent.parent
    codes = {m for p in sorted(root.rglob("*.py")) for m in _REFUSAL.findall(p.read_text())}
    codes |= {cls.problem for cls in (signing.Malformed, signing.Unsigned, signing.UnknownKey,
                                      signing.BadSignature)}
    return sorted(codes)


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


RECORD_NOTES = {
    "record_checkpoint": "Sent to every inbox (routing key "
    f"{c.CHECKPOINT_ROUTING_KEY!r} of {c.EXCHANGE_DELIVER}) each time the hub signs a "
    "checkpoint of a log that changed; message_id 'checkpoint-' + 32 hex digits of the "
    "SHA-256 of the checkpoint's JWS (a resend is the same message). Check it as "
    "docs/reference/evidence.md ('How a witness checks') says; never handed to the "
    "application.",
    "consistency_proof": "The answer to a consistency_request, in the asker's inbox.",
    "consistency_request": "Addressed to the hub itself (recipient HUB): no request's "
    "workflow sees it. Answered with a consistency_proof, or refused (out_of_range) with "
    "an error.",
    "retrieval": "Addressed to the hub itself (recipient HUB), sent by the client after the "
    "application handled notices (up to "
    f"{limits.RETRIEVALS_PER_MESSAGE_MAX} in one); each recorded as a 'retrieved' entry of "
    "its notice's request, once per recipient and notice. Notices not delivered to the "
    "sender are refused (unknown_notice, naming each by its place in body.notices), the "
    "others recorded.",
}


def _message(kind: str, model: Any) -> dict[str, Any]:
    doc = " ".join((model.__doc__ or "").split())
    about_record = kind in HUB_KINDS | RECORD_KINDS
    correlation = ("no correlation_id (it is about no request)" if about_record
                   else "correlation_id = request_id")
    out = {
        "name": kind, "title": kind, "summary": doc,
        "description": BODY_NOTE + f" AMQP properties: content_type {c.CONTENT_TYPE_JWS}, "
        f"delivery_mode 2, message_id = envelope message_id, {correlation}, "
        f"type = {kind!r}, user_id = the sender's authority id (RabbitMQ validates it; the hub "
        f"publishes as {c.HUB_USER}), timestamp = sent_at." + (
            f" {RECORD_NOTES[kind]}" if about_record else ""),
        "contentType": c.CONTENT_TYPE_JWS,
        "payload": {"$ref": f"schemas/{kind}.json"},
        "correlationId": _ref("components", "correlationIds", "requestId"),
        "bindings": {"amqp": {"messageType": kind, "bindingVersion": BINDING}},
    }
    if about_record:
        del out["correlationId"]
    return out


def _directory_message() -> dict[str, Any]:
    return {
        "name": DIRECTORY_KIND, "title": "key directory",
        "summary": "Every key of the hub and the authorities (a JWKS, RFC 7517), signed by "
                   "every hub key not revoked.",
        "description": "The AMQP body is a JWS in general JSON serialization (RFC 7515 "
        "§7.2.1) whose payload is the JWKS this schema describes; verify one signature under "
        "a hub key you trust, take the directory only if its issued_at is newer than the one "
        "you hold. Sent to every inbox (routing key "
        f"{c.DIRECTORY_ROUTING_KEY!r} of {c.EXCHANGE_DELIVER}) on each gateway start and "
        f"within 2 s of every change; content_type {c.CONTENT_TYPE_JWS_JSON}, type "
        f"{c.AMQP_TYPE_DIRECTORY!r}, message_id 'directory-' + 32 hex digits of its SHA-256.",
        "contentType": c.CONTENT_TYPE_JWS_JSON,
        "payload": {"$ref": "schemas/key-directory.json"},
        "bindings": {"amqp": {"messageType": c.AMQP_TYPE_DIRECTORY, "bindingVersion": BINDING}},
    }


def _receipt_message() -> dict[str, Any]:
    return {
        "name": c.AMQP_TYPE_RECEIPT, "title": "record receipt",
        "summary": "The hub's receipt of an entry of its record about what you sent: "
                   "accepted, refused, delivered to the other party, retrieved by it.",
        "description": "The AMQP body is a JWS compact serialization by a hub key whose "
        "payload this schema describes: the entry, a checkpoint the hub signed whose tree "
        "includes it, and the RFC 9162 inclusion proof (docs/reference/evidence.md, "
        "'Receipts'). Sent to the recipient's inbox in batches, one checkpoint a batch; "
        f"content_type {c.CONTENT_TYPE_JWS}, type {c.AMQP_TYPE_RECEIPT!r}, message_id "
        "'receipt-' + 40 hex digits fixed by the entry and recipient: drop one you hold.",
        "contentType": c.CONTENT_TYPE_JWS,
        "payload": {"$ref": "schemas/record-receipt.json"},
        "correlationId": _ref("components", "correlationIds", "requestId"),
        "bindings": {"amqp": {"messageType": c.AMQP_TYPE_RECEIPT, "bindingVersion": BINDING}},
    }


def _dead_letter_message() -> dict[str, Any]:
    headers: dict[str, Any] = {
        c.HEADER_PROBLEM: {"type": "string", "description": "The problem code, as in the "
                           "error sent to the sender.", "examples": problem_codes()},
        c.HEADER_REASON: {"type": "string", "maxLength": 4000,
                          "description": "Every reason, joined by '; '."},
        c.HEADER_ORIGINAL_USER: {"type": "string", "description": "The AMQP user_id of the "
                                 "delivery, as the broker validated it (the authority that "
                                 "sent it)."},
        c.HEADER_REFUSED_AT: {"type": "string", "format": "date-time",
                              "description": "When the hub refused it."},
        c.HEADER_BODY_SIZE: {"type": "integer", "description": "Only for a body over "
                             f"{c.MAX_BODY_BYTES} bytes: its size; the copy keeps its first "
                             f"{c.MAX_BODY_BYTES} bytes."},
        c.HEADER_BODY_SHA256: {"type": "string", "description": "Only for a body over "
                               f"{c.MAX_BODY_BYTES} bytes: the SHA-256 (hex) of the whole body."},
        c.HEADER_BODY_TRUNCATED: {"type": "boolean", "description": "true: the body is cut."},
    }
    return {
        "name": "dead_letter", "title": "refused message",
        "summary": "A message the hub refused, kept with its reason; nothing of it was applied.",
        "description": "The body, content type, type, message_id and correlation_id are the "
        "refused delivery's, unchanged (usually a JWS, possibly anything). The headers are "
        "the hub's alone and say why: none of the sender's headers is copied. Published "
        f"to {c.EXCHANGE_DLX} with routing key = the problem code; the broker also "
        f"dead-letters here a message redelivered more than {c.DELIVERY_LIMIT} times.",
        "headers": {"type": "object", "properties": headers,
                    "required": [c.HEADER_PROBLEM, c.HEADER_REASON]},
        "payload": {"type": "string", "description": "The refused body as it arrived."},
    }


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document (plain data, in reading order)."""
    defs = _definitions()
    records = record_models()
    inbound = [*inbound_models(), *sorted(k for k in records if k in HUB_KINDS)]
    outbound = [*outbound_models(), *sorted(k for k in records if k in RECORD_KINDS)]
    inbox = c.inbox_queue(PARAMETER)
    to_inbox = [*outbound, DIRECTORY_KIND, c.AMQP_TYPE_RECEIPT]
    settings = Settings()
    channels: dict[str, Any] = {
        "hub": {
            "address": c.EXCHANGE_HUB, "title": "the hub exchange",
            "description": f"Authorities publish every message here ({c.EXCHANGE_HUB}, a topic "
            "exchange), with publisher confirms and the routing key = their own authority "
            f"id: it routes into their own lane {c.inbound_queue('{authorityId}')}, which the "
            "hub serves beside the other senders' lanes. The broker refuses any other routing "
            "key (ACCESS_REFUSED) and a message over "
            f"{c.MAX_MESSAGE_BYTES} bytes (PRECONDITION_FAILED); a full lane nacks the "
            "publish. An authority may write nowhere else.",
            "messages": {k: _ref("components", "messages", k) for k in inbound},
            "bindings": {"amqp": {"is": "routingKey", "exchange": _exchange(defs, c.EXCHANGE_HUB),
                                  "bindingVersion": BINDING}},
        },
        "inbox": {
            "address": inbox, "title": "an authority's inbox",
            "description": "Each authority reads only its own inbox (a quorum queue) and acks "
            "a message only after handling it. Every message is signed by the hub; verify it, "
            "and each original a notice passes on, before acting on it.",
            "parameters": {"authorityId": _ref("components", "parameters", "authorityId")},
            "messages": {k: _ref("components", "messages", k) for k in to_inbox},
            "bindings": {"amqp": {"is": "queue", "queue": _queue(
                defs, c.inbox_queue(sorted(all_authorities())[0]), inbox),
                "bindingVersion": BINDING}},
            "x-amqp-queue-arguments": _inbox_arguments(defs),
        },
        "deliver": {
            "address": c.EXCHANGE_DELIVER, "title": "the delivery exchange",
            "description": "Only the hub writes here: routing key = the recipient's authority "
            f"id, {c.DIRECTORY_ROUTING_KEY!r} for the key directory, or "
            f"{c.CHECKPOINT_ROUTING_KEY!r} for a checkpoint of the hub's record (every inbox "
            "is bound to all three).",
            "messages": {k: _ref("components", "messages", k) for k in to_inbox},
            "bindings": {"amqp": {"is": "routingKey",
                                  "exchange": _exchange(defs, c.EXCHANGE_DELIVER),
                                  "bindingVersion": BINDING}},
        },
        "deadLetterExchange": {
            "address": c.EXCHANGE_DLX, "title": "the dead-letter exchange",
            "description": f"Every refused message goes here, and on to {c.QUEUE_DEAD_LETTER}.",
            "messages": {"dead_letter": _ref("components", "messages", "dead_letter")},
            "bindings": {"amqp": {"is": "routingKey", "exchange": _exchange(defs, c.EXCHANGE_DLX),
                                  "bindingVersion": BINDING}},
        },
        "deadLetter": {
            "address": c.QUEUE_DEAD_LETTER, "title": "the dead-letter queue",
            "description": "What the hub refused, with its reason; read by the hub's operators.",
            "messages": {"dead_letter": _ref("components", "messages", "dead_letter")},
            "bindings": {"amqp": {"is": "queue", "queue": _queue(defs, c.QUEUE_DEAD_LETTER),
                                  "bindingVersion": BINDING}},
            "x-amqp-queue-arguments": _arguments(defs, c.QUEUE_DEAD_LETTER),
        },
    }
    publish = {"deliveryMode": 2, "timestamp": True, "mandatory": True,
               "bindingVersion": BINDING}
    operations = {
        "sendToHub": {
            "action": "send", "channel": _ref("channels", "hub"),
            "title": "Send a message to the hub",
            "description": "Sign the envelope (JWS compact, your key) and publish the JWS as "
            "the body; user_id = your authority id, routing key = your authority id, no "
            f"headers of your own (AMQP properties over {c.MAX_HEADER_BYTES} bytes are "
            "refused as oversize). The hub answers a refusal with an error in your inbox.",
            "messages": [_ref("channels", "hub", "messages", k) for k in inbound],
            "bindings": {"amqp": {**publish, "cc": ["{authorityId}"]}},
        },
        "receiveFromInbox": {
            "action": "receive", "channel": _ref("channels", "inbox"),
            "title": "Read your inbox",
            "messages": [_ref("channels", "inbox", "messages", k) for k in to_inbox],
            "bindings": {"amqp": {"ack": True, "bindingVersion": BINDING}},
        },
        "deliverToInbox": {
            "action": "send", "channel": _ref("channels", "deliver"),
            "title": "The hub delivers to an inbox",
            "messages": [_ref("channels", "deliver", "messages", k) for k in to_inbox],
            "bindings": {"amqp": {**publish, "userId": c.HUB_USER}},
        },
        "receiveDeadLetters": {
            "action": "receive", "channel": _ref("channels", "deadLetter"),
            "title": "Read refused messages (operators)",
            "messages": [_ref("channels", "deadLetter", "messages", "dead_letter")],
            "bindings": {"amqp": {"ack": True, "bindingVersion": BINDING}},
        },
    }
    messages = {k: _message(k, m) for k, m in message_models().items()}
    messages[DIRECTORY_KIND] = _directory_message()
    messages[c.AMQP_TYPE_RECEIPT] = _receipt_message()
    messages["dead_letter"] = _dead_letter_message()
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "treatyflow hub", "version": SCHEMA_VERSION,
            "description": "Requests between states' competent authorities, carried by the "
            "treatyflow hub over AMQP 0-9-1 (RabbitMQ). Every message is a JWS signed by its "
            "sender; the payload schemas are JSON Schema 2020-12 files beside this document "
            f"(schemas/). info.version is the envelope's schema_version ({SCHEMA_VERSION}). "
            "Generated by `make contract` from treatyflow/constants.py, treatyflow/topology.py "
            "and the pydantic models.",
        },
        "defaultContentType": c.CONTENT_TYPE_JWS,
        "servers": {"local": {
            "host": f"{settings.amqp_host}:{settings.amqp_port}", "protocol": "amqp",
            "protocolVersion": "0-9-1", "pathname": f"/{c.VHOST}",
            "description": f"The local stack (make up); vhost {c.VHOST}. Log in as your "
            "authority id with the password in <state>/secrets/amqp-passwords.json.",
            "security": [_ref("components", "securitySchemes", "authority")],
        }},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "parameters": {"authorityId": {
                "description": "An authority id of a treaty profile (codes/<treaty>.json).",
                "enum": sorted(all_authorities()), "examples": ["KZ-GPO"]}},
            "correlationIds": {"requestId": {
                "description": "The AMQP correlation_id property: the envelope's request_id.",
                "location": "$message.header#/correlation_id"}},
            "securitySchemes": {"authority": {
                "type": "userPassword",
                "description": "AMQP PLAIN: user = your authority id. The broker lets it "
                f"write only to {c.EXCHANGE_HUB}, under its own id as routing key, and read "
                "only its own inbox."}},
        },
    }

"""The hostile-input catalogue: one table of broken or hostile inputs an authority could send,
each with the refusal it must get.

Shared by ``make security-check`` (``python -m treatyflow.securitycheck``, an outside client)
and ``tests/test_hostile.py``. It uses only what an agency has: AMQP (aio-pika), the
contract models, the client library (``treatyflow.agency``) and its own key.

Every message on the wire is a JWS compact serialization (content type
``application/jose``) whose payload is the envelope as its sender wrote it: a case about
the envelope is signed with the attacker's real key, so the hub refuses what is wrong in
the payload, not a missing signature. The JWS forgeries are in ``jws_cases.py``; what a
case is built from in ``kit.py``; running one in ``runner.py``.

Two layers refuse:

- **gateway** cases reach ``hub.inbound``: the sender must get an ``error`` naming
  ``problem``, the message must sit in ``hub.dead-letter`` with that problem in its
  ``x-treatyflow-problem`` header, and no request may change;
- **broker** cases never get that far: RabbitMQ closes the channel (``ACCESS_REFUSED`` or
  ``PRECONDITION_FAILED``) and nothing reaches any queue.

Cases of the ``transfer`` procedure (KZ–UAE 2018 transfer of convicted persons) are sent by a
central authority of that treaty (a ``Kit`` whose ``treaty`` is ``kz-uae-2018``): the same
refusals, plus what the treaty's diplomatic channel (art. 5.1, 6.1) and checklist (art. 6.2,
7) make hostile there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aio_pika
from aio_pika.abc import AbstractChannel

from treatyflow import constants as c
from treatyflow.agency.signing import SigningKey
from treatyflow.schemas.messages import MIGRATION_NOTE
from treatyflow.securitycheck.jws_cases import JWS_CASES
from treatyflow.securitycheck.kit import (
    JSON,
    TREATY,
    Attempt,
    Case,
    Kit,
    Probe,
    b64,
    compact,
    header,
    ministry_of,
    request_body,
    segments,
    transfer_body,
)
from treatyflow.securitycheck.limit_cases import LIMIT_CASES
from treatyflow.securitycheck.runner import (
    ACCESS_REFUSED,
    PRECONDITION_FAILED,
    Result,
    attempt,
    current_key_ids,
    dead_letters,
    notice,
    open_target,
)
from treatyflow.securitycheck.text_cases import TEXT_CASES
from treatyflow.simulation.transfer import document, transfer_request_content

__all__ = [
    "CATALOGUE", "TREATY", "Attempt", "Case", "Kit", "Result", "attempt", "current_key_ids",
    "dead_letters", "notice", "open_target", "request_body",
]

# Latin letters and the Cyrillic letters that look the same.
_CONFUSABLE = str.maketrans("ABCEHKMOPTX", "АВСЕНКМОРТХ")
# The words of the migration note an old client must be shown.
_MIGRATION = MIGRATION_NOTE.split("(")[-1].split(")")[0]


# --- builders that need more than one line ---------------------------------------------


def _truncated_json(k: Kit) -> Attempt:
    """A JWS (valid signature) over a request cut in half."""
    payload = k.payload(k.envelope("request"))
    return k.signed_raw(payload[: len(payload) // 2])


def _borrowed_signature(k: Kit) -> Attempt:
    """The withdrawal's own header and payload, the signature of another message."""
    other = k.token(k.envelope("request"))
    data = k.envelope("withdrawal", target="own", body={"reason": "No longer needed."})
    head, payload, _ = segments(k.token(data))
    token = f"{head}.{payload}.{segments(other)[2]}"
    return Attempt(token.encode(), data["message_id"])


def _unknown_key(k: Kit) -> Attempt:
    """Signed, naming a key id the hub never registered."""
    data = k.envelope("request")
    return Attempt(k.token(data, SigningKey.generate(f"{k.attacker}-1999-9")).encode(),
                   data["message_id"], says=(f"{k.attacker}-1999-9",))


def _confusable_sender(k: Kit) -> Attempt:
    return k.send(k.envelope("request", sender=k.attacker.translate(_CONFUSABLE)))


def _replayed(k: Kit) -> Attempt:
    data = k.envelope("withdrawal", target="own", body={"reason": "Case closed at home."},
                      message_id=k.accepted_message_id)
    return k.send(data)


def _version_1(k: Kit) -> Attempt:
    """A version-1 envelope as an old client sends it: plain JSON, schema_version '1',
    the Ed25519 signature in a ``signature`` member."""
    data = k.envelope("request", schema_version="1")
    data["signature"] = {"alg": "ed25519", "key_id": k.kid, "value": b64(bytes(64))}
    return k.send(data, sign_it=False)


def _signature_member(k: Kit) -> Attempt:
    """A JWS (valid signature) whose version-2 envelope still carries a ``signature``."""
    data = k.envelope("request")
    data["signature"] = {"alg": "ed25519", "key_id": k.kid, "value": b64(bytes(64))}
    return k.send(data)


def _transfer_foreign_key(k: Kit) -> Attempt:
    """Signed by the attacker, naming its foreign ministry's registered key."""
    data = k.envelope("transfer_request")
    kid = k.key_ids[ministry_of(k.attacker)]
    return Attempt(compact(header(kid), k.payload(data), k.key).encode(), data["message_id"])


def _transfer_stranger_key(k: Kit) -> Attempt:
    """Signed with a key pair the attacker made itself, under its own registered key id."""
    data = k.envelope("transfer_request")
    return Attempt(k.token(data, SigningKey.generate(k.kid)).encode(), data["message_id"])


def _relay_own_message(k: Kit) -> Attempt:
    """The requesting central authority passes its own request on to the other state's
    ministry itself, as though its own ministry had relayed it (art. 5.1)."""
    other = ministry_of(k.counterpart)
    return k.send(k.envelope("transfer_relay", target="own", recipient=other, body={
        "relayed_message_id": k.accepted_message_id, "note_reference": "Note 1/2026"}))


def _relay_in_ministry_name(k: Kit) -> Attempt:
    """The same relay with the envelope's sender set to the attacker's ministry."""
    return k.send(k.envelope("transfer_relay", target="own", sender=ministry_of(k.attacker),
                             recipient=ministry_of(k.counterpart), body={
                                 "relayed_message_id": k.accepted_message_id,
                                 "note_reference": "Note 1/2026"}))


def _transfer_changed_duplicate(k: Kit) -> Attempt:
    """The accepted transfer request's message id, with another person in the body."""
    body = transfer_body(k.attacker)
    body["person"] = {**body["person"], "full_name": "Another person", "prisoner_ref": "X-1"}
    return k.send(k.envelope("transfer_request", target="own", body=body,
                             message_id=k.accepted_message_id))


def _bad_checklist(k: Kit) -> Attempt:
    """The art. 7.1 checklist with a document whose fields are of the wrong kinds."""
    docs = [document(code) for code in ("personal_data", "sentence_information", "consent")]
    docs.append({"code": "final_judgment", "language": 7, "translation": "english",
                 "signed": "yes", "stamped": None, "ref": ""})
    return k.send(k.envelope("transfer_request",
                             body=transfer_body(k.attacker, documents=docs)))


def _to_hub(k: Kit, kind: str, body: dict[str, object]) -> Attempt:
    """A message addressed to the hub itself (docs/contract: retrieval, consistency_request),
    validly signed by the attacker."""
    return k.send({"schema_version": "2", "message_id": k.fresh_id(),
                   "sent_at": datetime.now(UTC).isoformat(), "kind": kind,
                   "sender": k.attacker, "recipient": c.HUB_SENDER, "body": body})


def _foreign_retrieval(k: Kit) -> Attempt:
    """A retrieval of a notice of a request between two other authorities: recording it
    would put the attacker in that request's record as having received its notices."""
    return _to_hub(k, "retrieval", {"notices": [{
        "notice_message_id": k.fresh_id(), "request_id": k.targets["foreign"],
        "treaty_id": k.treaty, "digest": "0" * 64}]})


# --- broker probes --------------------------------------------------------------------


def _publish(exchange: str, routing_key: Callable[[Kit], str], *,
             user_id: Callable[[Kit], str] | None = None) -> Probe:
    async def probe(k: Kit, channel: AbstractChannel) -> None:
        ex = await channel.get_exchange(exchange, ensure=False) if exchange else \
            channel.default_exchange
        who = user_id(k) if user_id else k.attacker
        await ex.publish(aio_pika.Message(b'{"kind": "notice"}', user_id=who,
                                          content_type="application/json"),
                         routing_key=routing_key(k))
    return probe


async def _put_back(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    await message.nack(requeue=True)


def _read(queue: Callable[[Kit], str], *, consume: bool = False) -> Probe:
    async def probe(k: Kit, channel: AbstractChannel) -> None:
        q = await channel.get_queue(queue(k), ensure=False)
        if consume:
            await q.consume(_put_back)
        else:
            await q.get(fail=False, no_ack=False)
    return probe


async def _declare_spy_queue(k: Kit, channel: AbstractChannel) -> None:
    queue = await channel.declare_queue(f"spy-{k.attacker}", exclusive=True)
    await queue.bind(c.EXCHANGE_DELIVER, routing_key=k.counterpart)


def _far(days: int) -> Callable[[Kit], Attempt]:
    def build(k: Kit) -> Attempt:
        when = datetime.now(UTC) + timedelta(days=days)
        return k.send(k.envelope("request", sent_at=when.isoformat()))
    return build


_OVERSIZE = "x" * (c.MAX_BODY_BYTES + 1)

CATALOGUE: list[Case] = [
    # --- bytes that are not an envelope (the payload of a JWS by the attacker's real key,
    # so that it is the payload the hub refuses, not the signature)
    Case("not_json", "plain text, not a JWS", "malformed", lambda k: k.raw(b"this is not JSON")),
    Case("signed_not_json", "a JWS whose payload is plain text", "malformed",
         lambda k: k.signed_raw(b"this is not JSON"), says="Invalid JSON"),
    Case("truncated_json", "a JWS over a request cut in half", "malformed", _truncated_json),
    Case("empty_body", "an empty body", "malformed", lambda k: k.raw(b"")),
    Case("json_array", "a JWS over a JSON array instead of an object", "malformed",
         lambda k: k.signed_raw(b'["request", "KZ-GPO"]')),
    Case("not_utf8", "a JWS over bytes that are not UTF-8", "malformed",
         lambda k: k.signed_raw(b'{"kind": "request", "facts": "\xff\xfe\xfa"}')),
    Case("deep_nesting", "a JWS over JSON arrays nested 5000 levels deep", "malformed",
         lambda k: k.signed_raw(b"[" * 5000 + b"]" * 5000)),
    Case("deep_nested_object", "a JWS over JSON objects nested 5000 levels deep",
         "malformed", lambda k: k.signed_raw(b'{"a":' * 5000 + b"1" + b"}" * 5000)),
    Case("deep_nested_plain", "plain JSON objects nested 5000 levels deep (no JWS)",
         "unsigned", lambda k: k.raw(b'{"a":' * 5000 + b"1" + b"}" * 5000, JSON)),
    Case("nan_literal", "a NaN where a boolean belongs (not JSON)", "malformed",
         lambda k: k.send(k.envelope("request", body=request_body(urgent=float("nan"))))),
    Case("wrong_content_type", "a valid signed request sent as text/plain", "wrong_content_type",
         lambda k: k.send(k.envelope("request"), content_type="text/plain")),
    Case("oversize", f"a JWS over {c.MAX_BODY_BYTES} bytes", "oversize",
         lambda k: k.send(k.envelope("request", body=request_body(facts=_OVERSIZE)))),
    # --- envelopes the contract refuses
    Case("missing_field", "a request without sent_at", "malformed",
         lambda k: k.send({f: v for f, v in k.envelope("request").items() if f != "sent_at"}),
         says="sent_at"),
    Case("wrong_types", "message_id a number, urgent a word", "malformed",
         lambda k: k.send(k.envelope("request", message_id=42,
                                     body=request_body(urgent="perhaps")))),
    Case("strict_types", "urgent \"no\": a string where a boolean belongs (never coerced)",
         "malformed", lambda k: k.send(k.envelope("request", body=request_body(urgent="no"))),
         says="body.urgent: Input should be a valid boolean"),
    Case("unknown_kind", "kind 'extradition' (not a kind of this contract)", "malformed",
         lambda k: k.send(k.envelope("extradition"))),
    Case("unknown_schema_version", "a JWS over an envelope of schema_version '3'",
         "unsupported_version",
         lambda k: k.send(k.envelope("request", schema_version="3")), says="'3'"),
    Case("version_1_envelope", "a version-1 envelope: plain JSON, schema_version '1', a "
         "signature member", "unsupported_version", _version_1, says=_MIGRATION),
    Case("signature_member", "a JWS over a version-2 envelope still carrying a signature "
         "member", "unsupported_version", _signature_member, says="'signature'"),
    Case("unknown_field", "an extra top-level field 'priority'", "malformed",
         lambda k: k.send(k.envelope("request", priority="high"))),
    Case("path_in_request_id", "request_id '../../etc/passwd'", "malformed",
         lambda k: k.send(k.envelope("request", request_id="../../etc/passwd"))),
    Case("control_characters", "BEL and NUL inside the facts", "malformed",
         lambda k: k.send(k.envelope("request", body=request_body(facts="Funds\x07 moved\x00.")))),
    Case("bidi_override", "a right-to-left override hiding text in the purpose", "malformed",
         lambda k: k.send(k.envelope("request", body=request_body(
             purpose="Investigation of \u202egnidnepsrevo\u202c fraud.")))),
    Case("refusal_without_reasons", "a refusal with no grounds and no written reason",
         "malformed", lambda k: k.send(k.envelope("refusal", target="incoming", body={
             "extent": "whole", "grounds": [], "reason": ""})),
         target="incoming"),
    # --- who sends
    Case("sender_mismatch", "envelope sender = another authority, on the attacker's connection",
         "sender_mismatch", lambda k: k.send(k.envelope("request", sender=k.counterpart,
                                                        recipient=k.attacker)),
         flag="forged_sender"),
    Case("confusable_sender", "sender id with Cyrillic look-alike letters", "malformed",
         _confusable_sender, flag="forged_sender"),
    Case("unsigned", "a valid request as plain JSON, not a JWS", "unsigned",
         lambda k: k.send(k.envelope("request"), sign_it=False)),
    Case("unsigned_as_jose", "a valid request as plain JSON, content type application/jose",
         "unsigned", lambda k: k.send(k.envelope("request"), sign_it=False,
                                      content_type=c.CONTENT_TYPE_JWS)),
    Case("unknown_key", "signed, naming a key id the hub never registered", "unknown_key",
         _unknown_key, says="not registered"),
    Case("borrowed_signature", "another message's signature pasted onto a withdrawal",
         "bad_signature", _borrowed_signature, target="own", flag="tampered_signature"),
    # --- what the treaty and the lifecycle refuse
    Case("unknown_authority", "a request to an authority no treaty party designated",
         "invalid_request", lambda k: k.send(k.envelope("request", recipient="XX-NOWHERE"))),
    Case("unknown_treaty", "treaty_id 'sco-2099'", "unknown_treaty",
         lambda k: k.send(k.envelope("request", treaty_id="sco-2099"))),
    Case("far_past", "sent_at 40 years ago", "implausible_time", _far(-40 * 365)),
    Case("far_future", "sent_at 70 years ahead", "implausible_time", _far(70 * 365)),
    Case("replayed_message_id", "a withdrawal reusing the message id of an accepted request",
         "replayed_message_id", _replayed, target="own"),
    Case("unknown_request", "a receipt for a request nobody sent", "unknown_request",
         lambda k: k.send(k.envelope("receipt"))),
    Case("another_authoritys_request", "a refusal of a request between two other authorities "
         "(answered as though it did not exist: a stranger learns nothing)",
         "unknown_request", lambda k: k.send(k.envelope("refusal", target="foreign", body={
             "extent": "whole", "grounds": ["security"], "reason": "Not ours, but refused."})),
         target="foreign"),
    Case("report_before_receipt", "an execution report before the receipt", "not_allowed_now",
         lambda k: k.send(k.envelope("execution_report", target="incoming", body={
             "extent": "full", "summary": "Done.", "confidentiality": "restricted"})),
         target="incoming"),
    Case("wrong_side", "a receipt from the requesting side of its own request",
         "not_allowed_now", lambda k: k.send(k.envelope("receipt", target="own")),
         target="own"),
    Case("squatted_request_id", "a new request under an id of the counterpart's namespace "
         "(an id it would use next)", "invalid_request",
         lambda k: k.send(k.envelope("request", request_id=k.fresh_request_id(k.counterpart))),
         says="begins with the id of the authority that sends it"),
    Case("squatted_open_request", "a new request under the id of an open request between two "
         "other authorities (refused for its namespace alone: nothing tells it exists)",
         "invalid_request", lambda k: k.send(k.envelope("request", target="foreign")),
         target="foreign", says="begins with the id of the authority that sends it"),
    Case("request_id_taken", "a second request under an open request's id", "not_allowed_now",
         lambda k: k.send(k.envelope("request", target="own")), target="own"),
    Case("after_final_state", "a withdrawal of a request already withdrawn", "request_closed",
         lambda k: k.send(k.envelope("withdrawal", target="closed",
                                     body={"reason": "Withdrawn a second time."})),
         target="closed"),
    # --- the transfer of convicted persons (KZ–UAE 2018), sent by a central authority
    Case("transfer_unsigned", "a transfer request without a signature (art. 6.2: signed)",
         "unsigned", lambda k: k.send(k.envelope("transfer_request"), sign_it=False),
         procedure="transfer"),
    Case("transfer_ministry_key", "a transfer request naming the foreign ministry's key id",
         "unknown_key", _transfer_foreign_key, procedure="transfer"),
    Case("transfer_stranger_key", "a transfer request signed with a key pair not registered "
         "for its sender", "bad_signature", _transfer_stranger_key, procedure="transfer",
         flag="tampered_signature"),
    Case("transfer_relay_skipping_ministry", "a central authority relays its own request to "
         "the other state's ministry, as though its ministry had (art. 5.1)", "not_allowed_now",
         _relay_own_message, target="own", procedure="transfer", says="art. 5.1"),
    Case("transfer_relay_in_ministry_name", "a relay whose envelope sender is the foreign "
         "ministry, published on the central authority's connection", "sender_mismatch",
         _relay_in_ministry_name, target="own", procedure="transfer", flag="forged_sender"),
    Case("transfer_decision_before_receipt", "an art. 8.6 decision on a transfer request that "
         "has not yet reached its recipient through the ministries (art. 5.1, 6.1)",
         "not_allowed_now",
         lambda k: k.send(k.envelope("transfer_decision", target="incoming", body={})),
         target="incoming", procedure="transfer", says="has not yet reached"),
    Case("transfer_under_sco_treaty", "a transfer request under treaty_id sco-2010 (the "
         "request-for-assistance procedure)", "not_allowed_now",
         lambda k: k.send(k.envelope("transfer_request", treaty_id=TREATY)),
         procedure="transfer", says="transfer-of-convicted-person procedure"),
    Case("sco_request_under_transfer_treaty", "a request for assistance under treaty_id "
         "kz-uae-2018", "not_allowed_now",
         lambda k: k.send(k.envelope("request", body=request_body())), procedure="transfer",
         says="not a message of the transfer"),
    Case("transfer_to_non_party", "a transfer request to RU-MIA, no central authority of the "
         "treaty (art. 5.2)", "invalid_request",
         lambda k: k.send(k.envelope("transfer_request", recipient="RU-MIA")),
         procedure="transfer", says="RU-MIA"),
    Case("transfer_consent_not_written", "a transfer request whose consent was not given in "
         "writing (art. 8.5)", "invalid_request",
         lambda k: k.send(k.envelope("transfer_request", body=transfer_body(
             k.attacker, consent={**transfer_request_content()["consent"],
                                  "in_writing": False}))), procedure="transfer",
         says="8.5"),
    Case("transfer_bad_checklist", "a document of the art. 7 checklist with a number for its "
         "language, 'yes' for signed, no stamp and no reference", "malformed", _bad_checklist,
         procedure="transfer", says="documents"),
    Case("transfer_changed_duplicate", "the accepted transfer request's message id again, "
         "with another person in it", "replayed_message_id", _transfer_changed_duplicate,
         target="own", procedure="transfer"),
    # --- JWS forgeries (jws_cases.py)
    # --- what is addressed to the hub itself (its record)
    Case("retrieval_of_a_foreign_notice", "a retrieval of a notice of a request between two "
         "other authorities (answered as for a notice that does not exist)", "unknown_notice",
         _foreign_retrieval, target="foreign"),
    Case("consistency_out_of_range", "a consistency proof asked from a tree size the hub's "
         "log never reached", "out_of_range",
         lambda k: _to_hub(k, "consistency_request", {"from_tree_size": 10**12})),
    Case("hub_kind_to_an_authority", "a retrieval addressed to another authority instead of "
         "the hub", "malformed", lambda k: k.send({
             "schema_version": "2", "message_id": k.fresh_id(),
             "sent_at": datetime.now(UTC).isoformat(), "kind": "retrieval",
             "sender": k.attacker, "recipient": k.counterpart, "body": {"notices": [{
                 "notice_message_id": k.fresh_id(), "request_id": k.targets["own"],
                 "treaty_id": k.treaty, "digest": "0" * 64}]}}), target="own"),
    *JWS_CASES,
    # --- invisible text and limits (text_cases.py, issue 12)
    *TEXT_CASES,
    # --- the broker: straight at another inbox, or reading what is not yours
    Case("deliver_to_other_inbox", "publish into treatyflow.deliver, routing key = another "
         "authority", ACCESS_REFUSED,
         probe=_publish(c.EXCHANGE_DELIVER, lambda k: k.counterpart), flag="cross_inbox_read"),
    Case("deliver_to_own_inbox", "a forged hub notice into the attacker's own inbox",
         ACCESS_REFUSED, probe=_publish(c.EXCHANGE_DELIVER, lambda k: k.attacker)),
    Case("default_exchange_to_inbox", "default exchange, routing key = another inbox queue",
         ACCESS_REFUSED, probe=_publish("", lambda k: c.inbox_queue(k.counterpart)),
         flag="cross_inbox_read"),
    Case("amq_direct_to_inbox", "amq.direct, routing key = another authority", ACCESS_REFUSED,
         probe=_publish("amq.direct", lambda k: k.counterpart), flag="cross_inbox_read"),
    Case("dead_letter_exchange", "publish into treatyflow.dlx", ACCESS_REFUSED,
         probe=_publish(c.EXCHANGE_DLX, lambda k: "malformed")),
    Case("foreign_user_id", "AMQP user_id = another authority", PRECONDITION_FAILED,
         probe=_publish(c.EXCHANGE_HUB, lambda k: k.attacker, user_id=lambda k: k.counterpart),
         flag="forged_sender"),
    Case("get_other_inbox", "basic.get on another authority's inbox", ACCESS_REFUSED,
         probe=_read(lambda k: c.inbox_queue(k.counterpart)), flag="cross_inbox_read"),
    Case("consume_other_inbox", "basic.consume on another authority's inbox", ACCESS_REFUSED,
         probe=_read(lambda k: c.inbox_queue(k.counterpart), consume=True),
         flag="cross_inbox_read"),
    Case("read_dead_letter", "basic.get on hub.dead-letter", ACCESS_REFUSED,
         probe=_read(lambda k: c.QUEUE_DEAD_LETTER)),
    Case("read_hub_inbound", "basic.get on hub.inbound", ACCESS_REFUSED,
         probe=_read(lambda k: c.QUEUE_INBOUND)),
    Case("spy_queue", "declare a queue and bind it to treatyflow.deliver", ACCESS_REFUSED,
         probe=_declare_spy_queue, flag="cross_inbox_read"),
    # --- byte limits, forged hub headers, lanes, a flood (limit_cases.py, issue 12)
    *LIMIT_CASES,
]

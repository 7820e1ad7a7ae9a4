"""The hostile-input catalogue: one table of broken or hostile inputs an authority could send,
each with the refusal it must get.

Shared by ``make security-check`` (``python -m treatyflow.securitycheck``, an outside client)
and ``tests/test_hostile.py``. It uses only what an agency has: AMQP (aio-pika), the
contract models, the client library (``treatyflow.agency``) and its own key.

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

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection

from treatyflow import constants as c
from treatyflow.agency import AgencyClient
from treatyflow.agency.signing import KeyRing, SigningKey, sign
from treatyflow.schemas.messages import ErrorMessage, OutboundMessage, parse_inbound
from treatyflow.workers.transfers import (
    AE_MOFA,
    KZ_MFA,
    TRANSFER_TREATY,
    document,
    executing_request_content,
    transfer_request_content,
)

TREATY = "sco-2010"
# The foreign ministry that carries each state's messages (art. 5.1: diplomatic channels).
MINISTRY = {"KZ": KZ_MFA, "AE": AE_MOFA}
# How long a withdrawn request's workflow is given to finish before a case aims at it.
CLOSING_SECONDS = 3.0
ACCESS_REFUSED = "ACCESS_REFUSED"
PRECONDITION_FAILED = "PRECONDITION_FAILED"
# The requests a case may aim at, opened before the catalogue runs (see ``open_targets``).
Target = Literal["own", "incoming", "foreign", "closed"]
Procedure = Literal["sco", "transfer"]
# Summary flags of the security check's last line a case stands for.
Flag = Literal["cross_inbox_read", "forged_sender", "tampered_signature"]
# Latin letters and the Cyrillic letters that look the same.
_CONFUSABLE = str.maketrans("ABCEHKMOPTX", "АВСЕНКМОРТХ")


def request_body(**overrides: Any) -> dict[str, Any]:
    """A valid request body (art. 5.4, 5.5, 11) in the working language, mixed scripts."""
    body: dict[str, Any] = {
        "purpose": "Досудебное расследование мошенничества; счета находятся за рубежом.",
        "assistance_requested": "Выписки по счёту 123 за 2025 год (bank statements).",
        "facts": "В марте–июне 2025 года средства прошли через счёт 123; "
                 "получатель — ТОО «Ақжол»; 付款人 王伟.",
        "confidentiality": "confidential",
        "form_of_cooperation": "information_exchange",
        "crime_category": "economic_money_laundering_terrorist_financing",
        "language": "ru",
        "signed_by": {"name": "А. Абенов", "position": "deputy"},
        "sealed": True,
    }
    body.update(overrides)
    return body


@dataclass(frozen=True)
class Attempt:
    """Bytes published to the hub exchange as they are, with these AMQP properties."""

    body: bytes
    message_id: str
    content_type: str | None = "application/json"


@dataclass
class Kit:
    """What a case is built from: who attacks, with which key, and the requests it aims at."""

    attacker: str
    counterpart: str
    third: str
    key: SigningKey
    targets: dict[str, str] = field(default_factory=dict)  # Target -> request id
    accepted_message_id: str = ""  # the message id of the attacker's accepted request
    treaty: str = TREATY
    key_ids: dict[str, str] = field(default_factory=dict)  # owner -> current key id (public)

    @staticmethod
    def fresh_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def fresh_request_id() -> str:
        return f"HX-{uuid.uuid4().hex[:10].upper()}"

    def envelope(self, kind: str, *, target: Target | None = None, body: Any = None,
                 **fields: Any) -> dict[str, Any]:
        """A valid envelope from the attacker (about ``target``, or a new request)."""
        sender = fields.get("sender", self.attacker)
        if body is None:
            body = (request_body() if kind == "request" else
                    transfer_body(sender) if kind == "transfer_request" else {})
        data: dict[str, Any] = {
            "schema_version": "1", "message_id": self.fresh_id(), "kind": kind,
            "request_id": self.targets[target] if target else self.fresh_request_id(),
            "treaty_id": self.treaty, "sender": self.attacker, "recipient": self.counterpart,
            "sent_at": datetime.now(UTC).isoformat(), "in_reply_to": None, "body": body,
        }
        data.update(fields)
        return data

    def signed(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with the attacker's signature over it (the contract must parse it)."""
        message = sign(parse_inbound(json.dumps(data, ensure_ascii=False)), self.key)
        return json.loads(message.model_dump_json())  # type: ignore[no-any-return]

    def send(self, data: dict[str, Any], *, sign_it: bool = True,
             content_type: str | None = "application/json") -> Attempt:
        """The envelope as an attempt, signed unless told otherwise."""
        out = self.signed(data) if sign_it else data
        return Attempt(json.dumps(out, ensure_ascii=False).encode(), str(data["message_id"]),
                       content_type)

    def raw(self, body: bytes) -> Attempt:
        return Attempt(body, self.fresh_id())


def transfer_body(sender: str, **overrides: Any) -> dict[str, Any]:
    """A valid transfer request of ``sender``'s state (art. 4, 6, 7, 8): Kazakhstan asks as
    the sentencing state (art. 7.1), the UAE as the executing state (art. 7.2)."""
    body = (transfer_request_content() if sender.startswith("KZ-")
            else executing_request_content())
    body.update(overrides)
    return body


def ministry_of(authority: str) -> str:
    return MINISTRY[authority.split("-")[0]]


Probe = Callable[[Kit, AbstractChannel], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    """One hostile input: ``build`` (a message through the gateway) or ``probe`` (an AMQP
    operation the broker must refuse), and the refusal expected."""

    name: str
    what: str
    problem: str  # the error's problem code, or the broker's reply name
    build: Callable[[Kit], Attempt] | None = None
    probe: Probe | None = None
    target: Target | None = None
    flag: Flag | None = None
    procedure: Procedure = "sco"  # whose kit sends it: a transfer case, a transfer party's
    says: str | None = None  # words the error's reasons must hold (the article, the party)

    @property
    def layer(self) -> Literal["gateway", "broker"]:
        return "gateway" if self.build is not None else "broker"


# --- builders that need more than one line ---------------------------------------------


def _truncated(k: Kit) -> Attempt:
    whole = k.send(k.envelope("request"))
    return Attempt(whole.body[: len(whole.body) // 2], whole.message_id)


def _tampered(k: Kit) -> Attempt:
    data = k.signed(k.envelope("request"))
    data["body"]["assistance_requested"] = "All bank records of every account, 2015–2025."
    return Attempt(json.dumps(data, ensure_ascii=False).encode(), data["message_id"])


def _borrowed_signature(k: Kit) -> Attempt:
    other = k.signed(k.envelope("request"))
    data = k.envelope("withdrawal", target="own", body={"reason": "No longer needed."})
    data["signature"] = other["signature"]
    return Attempt(json.dumps(data, ensure_ascii=False).encode(), data["message_id"])


def _unknown_key(k: Kit) -> Attempt:
    data = k.signed(k.envelope("request"))
    data["signature"]["key_id"] = f"{k.attacker}-1999-9"
    return Attempt(json.dumps(data, ensure_ascii=False).encode(), data["message_id"])


def _confusable_sender(k: Kit) -> Attempt:
    data = k.envelope("request", sender=k.attacker.translate(_CONFUSABLE))
    return k.send(data, sign_it=False)


def _replayed(k: Kit) -> Attempt:
    data = k.envelope("withdrawal", target="own", body={"reason": "Case closed at home."},
                      message_id=k.accepted_message_id)
    return k.send(data)


def _transfer_foreign_key(k: Kit) -> Attempt:
    """Signed by the attacker, naming its foreign ministry's registered key."""
    data = k.signed(k.envelope("transfer_request"))
    data["signature"]["key_id"] = k.key_ids[ministry_of(k.attacker)]
    return Attempt(json.dumps(data, ensure_ascii=False).encode(), data["message_id"])


def _transfer_stranger_key(k: Kit) -> Attempt:
    """Signed with a key pair the attacker made itself, under its own registered key id."""
    stranger = SigningKey.generate(k.key.key_id)
    message = sign(parse_inbound(json.dumps(k.envelope("transfer_request"))), stranger)
    return Attempt(message.model_dump_json().encode(), message.message_id)


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
    return k.send(k.envelope("transfer_request", body=transfer_body(k.attacker, documents=docs)),
                  sign_it=False)


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
    # --- bytes that are not an envelope
    Case("not_json", "plain text, not JSON", "malformed", lambda k: k.raw(b"this is not JSON")),
    Case("truncated_json", "a signed request cut in half", "malformed", _truncated),
    Case("empty_body", "an empty body", "malformed", lambda k: k.raw(b"")),
    Case("json_array", "a JSON array instead of an object", "malformed",
         lambda k: k.raw(b'["request", "KZ-GPO"]')),
    Case("not_utf8", "bytes that are not UTF-8", "malformed",
         lambda k: k.raw(b'{"kind": "request", "facts": "\xff\xfe\xfa"}')),
    Case("deep_nesting", "JSON nested 5000 levels deep", "malformed",
         lambda k: k.raw(b"[" * 5000 + b"]" * 5000)),
    Case("nan_literal", "a NaN where a boolean belongs (not JSON)", "malformed",
         lambda k: k.raw(json.dumps(k.envelope("request", body=request_body(urgent=float("nan"))))
                         .encode())),
    Case("wrong_content_type", "a valid signed request sent as text/plain", "wrong_content_type",
         lambda k: k.send(k.envelope("request"), content_type="text/plain")),
    Case("oversize", f"a request over {c.MAX_BODY_BYTES} bytes", "oversize",
         lambda k: k.send(k.envelope("request", body=request_body(facts=_OVERSIZE)),
                          sign_it=False)),
    # --- envelopes the contract refuses
    Case("missing_field", "a request without sent_at", "malformed",
         lambda k: k.send({f: v for f, v in k.envelope("request").items() if f != "sent_at"},
                          sign_it=False)),
    Case("wrong_types", "message_id a number, urgent a word", "malformed",
         lambda k: k.send(k.envelope("request", message_id=42,
                                     body=request_body(urgent="perhaps")), sign_it=False)),
    Case("unknown_kind", "kind 'extradition' (not a kind of this contract)", "malformed",
         lambda k: k.send(k.envelope("extradition"), sign_it=False)),
    Case("unknown_schema_version", "schema_version '2'", "malformed",
         lambda k: k.send(k.envelope("request", schema_version="2"), sign_it=False)),
    Case("unknown_field", "an extra top-level field 'priority'", "malformed",
         lambda k: k.send(k.envelope("request", priority="high"), sign_it=False)),
    Case("path_in_request_id", "request_id '../../etc/passwd'", "malformed",
         lambda k: k.send(k.envelope("request", request_id="../../etc/passwd"), sign_it=False)),
    Case("control_characters", "BEL and NUL inside the facts", "malformed",
         lambda k: k.send(k.envelope("request", body=request_body(facts="Funds\x07 moved\x00.")),
                          sign_it=False)),
    Case("bidi_override", "a right-to-left override hiding text in the purpose", "malformed",
         lambda k: k.send(k.envelope("request", body=request_body(
             purpose="Investigation of \u202egnidnepsrevo\u202c fraud.")), sign_it=False)),
    Case("refusal_without_reasons", "a refusal with no grounds and no written reason",
         "malformed", lambda k: k.send(k.envelope("refusal", target="incoming", body={
             "extent": "whole", "grounds": [], "reason": ""}), sign_it=False),
         target="incoming"),
    # --- who sends
    Case("sender_mismatch", "envelope sender = another authority, on the attacker's connection",
         "sender_mismatch", lambda k: k.send(k.envelope("request", sender=k.counterpart,
                                                        recipient=k.attacker)),
         flag="forged_sender"),
    Case("confusable_sender", "sender id with Cyrillic look-alike letters", "malformed",
         _confusable_sender, flag="forged_sender"),
    Case("unsigned", "a valid request without a signature", "unsigned",
         lambda k: k.send(k.envelope("request"), sign_it=False)),
    Case("unknown_key", "signed, naming a key id the hub never registered", "unknown_key",
         _unknown_key),
    Case("tampered_body", "a signature over a different body (altered after signing)",
         "bad_signature", _tampered, flag="tampered_signature"),
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
    Case("another_authoritys_request", "a refusal of a request between two other authorities",
         "not_allowed_now", lambda k: k.send(k.envelope("refusal", target="foreign", body={
             "extent": "whole", "grounds": ["security"], "reason": "Not ours, but refused."})),
         target="foreign"),
    Case("report_before_receipt", "an execution report before the receipt", "not_allowed_now",
         lambda k: k.send(k.envelope("execution_report", target="incoming", body={
             "extent": "full", "summary": "Done.", "confidentiality": "restricted"})),
         target="incoming"),
    Case("wrong_side", "a receipt from the requesting side of its own request",
         "not_allowed_now", lambda k: k.send(k.envelope("receipt", target="own")),
         target="own"),
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
         probe=_publish(c.EXCHANGE_HUB, lambda k: "", user_id=lambda k: k.counterpart),
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
]


# --- running one case ------------------------------------------------------------------


class Expecting(Protocol):
    """An authority's inbox as the runner reads it."""

    async def expect(self, match: Callable[[OutboundMessage], bool],
                     timeout: float = 15) -> OutboundMessage: ...


@dataclass
class Result:
    """What one case got: ``refused_with`` is the error's problem code or the broker's
    reply name (None: not refused); ``message_id`` is the id to find it by."""

    case: Case
    refused_with: str | None
    reasons: list[str]
    message_id: str | None = None
    request_id: str | None = None  # the request the input names, if its body says

    @property
    def as_expected(self) -> bool:
        said = self.case.says is None or any(self.case.says in r for r in self.reasons)
        return self.refused_with == self.case.problem and said


def _named_request(body: bytes) -> str | None:
    """The ``request_id`` a body names, if it is a JSON object that names one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    found = data.get("request_id") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


def _broker_reply(err: BaseException) -> str | None:
    if isinstance(err, aiormq.exceptions.ChannelAccessRefused):
        return ACCESS_REFUSED
    if isinstance(err, aiormq.exceptions.ChannelPreconditionFailed):
        return PRECONDITION_FAILED
    return None


async def attempt(case: Case, kit: Kit, client: AgencyClient, inbox: Expecting,
                  connection: AbstractConnection, timeout: float = 15) -> Result:
    """Send one case as the attacker and say how it was refused."""
    if case.build is not None:
        bad = case.build(kit)
        properties: dict[str, Any] = {"message_id": bad.message_id}
        if bad.content_type is not None:
            properties["content_type"] = bad.content_type
        await client.publish_raw(bad.body, **properties)
        try:
            error = await inbox.expect(
                lambda m: isinstance(m, ErrorMessage)
                and m.body.refused_message_id == bad.message_id, timeout)
        except (AssertionError, TimeoutError):
            return Result(case, None, [], bad.message_id, _named_request(bad.body))
        assert isinstance(error, ErrorMessage)
        return Result(case, error.body.problem, error.body.reasons, bad.message_id,
                      _named_request(bad.body))
    assert case.probe is not None
    channel = await connection.channel(publisher_confirms=True)
    try:
        await case.probe(kit, channel)
        await asyncio.sleep(0.3)  # a refused consume closes the channel asynchronously
        if channel.is_closed:
            raise RuntimeError("channel closed")
    except Exception as err:  # noqa: BLE001 - the broker's reply is the result
        reply = _broker_reply(err) or _broker_reply(err.__cause__ or err)
        return Result(case, reply, [str(err)[:200]])
    finally:
        if not channel.is_closed:
            await channel.close()
    return Result(case, None, ["the broker let it through"])


async def dead_letters(url: str, wanted: set[str], timeout: float = 10) -> dict[str, str]:
    """The problem header of each wanted message id found in ``hub.dead-letter``, read
    without taking anything out (every message read goes back to the queue)."""
    found: dict[str, str] = {}
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=0)
        queue = await channel.get_queue(c.QUEUE_DEAD_LETTER, ensure=False)
        idle = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if message.message_id in wanted:
                found[message.message_id] = str((message.headers or {}).get(c.HEADER_PROBLEM))
                if set(found) >= wanted:
                    idle.set()

        await queue.consume(on_message)
        try:
            await asyncio.wait_for(idle.wait(), timeout)
        except TimeoutError:
            pass
        # Closing the channel unacked returns every message to the queue.
    return found


def current_key_ids(ring: KeyRing) -> dict[str, str]:
    """Each owner's current key id, from the public key registry (a ``KeyRing``)."""
    out: dict[str, str] = {}
    for key in ring.keys:
        if key.current:
            out[key.owner] = key.key_id
    return out


def notice(request_id: str, event: str) -> Callable[[OutboundMessage], bool]:
    """Matches the hub's notice of ``event`` about ``request_id``."""
    return lambda m: m.kind == "notice" and m.request_id == request_id and \
        getattr(m.body, "event", None) == event


async def open_target(kit: Kit, target: Target, attacker: AgencyClient, attacker_box: Expecting,
                      counterpart: AgencyClient, counterpart_box: Expecting) -> list[str]:
    """Open a fresh request for one case to aim at, with valid messages only, put its id in
    ``kit.targets`` and return the ids of the messages applied to it. ``own``: attacker →
    counterpart; ``incoming``: counterpart → attacker, no receipt yet; ``foreign``:
    counterpart → third (the attacker is no party to it); ``closed``: the attacker's,
    withdrawn and finished.

    Fresh per case, because the treaty clock moves requests on by itself (a receipt is
    deemed after 5 treaty days: 5 s on the local stack's demo clock)."""
    mine = target in ("own", "closed")
    sender = kit.attacker if mine else kit.counterpart
    recipient = {"own": kit.counterpart, "closed": kit.counterpart, "incoming": kit.attacker,
                 "foreign": kit.third}[target]
    transfer = kit.treaty == TRANSFER_TREATY
    opening = parse_inbound(json.dumps(kit.envelope(
        "transfer_request" if transfer else "request", sender=sender, recipient=recipient)))
    await (attacker if mine else counterpart).publish(opening)
    kit.targets[target] = opening.request_id
    applied = [opening.message_id]
    if transfer:
        if target not in ("own", "incoming"):
            raise ValueError(f"no {target} target for a transfer case")
        # Accepted and put on the diplomatic channel; no ministry relays it here, so an
        # incoming request never reaches the attacker (art. 5.1).
        await (attacker_box if mine else counterpart_box).expect(
            notice(opening.request_id, "dispatched"))
        if mine:
            kit.accepted_message_id = opening.message_id
        return applied
    if target == "incoming":
        await attacker_box.expect(notice(opening.request_id, "request_delivered"))
    else:
        await (attacker_box if mine else counterpart_box).expect(
            notice(opening.request_id, "request_accepted"))
    if target == "own":
        kit.accepted_message_id = opening.message_id
    if target == "closed":
        withdrawal = await attacker.publish(parse_inbound(json.dumps(kit.envelope(
            "withdrawal", target="closed", body={"reason": "Case closed at home."}))))
        applied.append(withdrawal.message_id)
        await counterpart_box.expect(notice(opening.request_id, "withdrawn"))
        await asyncio.sleep(CLOSING_SECONDS)  # the workflow delivers its last notices, ends
    return applied

"""What the hostile-input catalogue's cases are built from: the attacker's ``Kit`` (who it
is, its key, the requests it aims at), the ``Attempt`` a case sends, the ``Case`` itself,
and the JWS pieces an attacker can forge by hand (any header, any signature).

Uses only what an agency has: the contract, the client library and its own key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aio_pika.abc import AbstractChannel
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from treatyflow import constants as c
from treatyflow.agency.signing import SigningKey, sign
from treatyflow.simulation.transfer import (
    AE_MOFA,
    KZ_MFA,
    executing_request_content,
    transfer_request_content,
)

TREATY = "sco-2010"
JOSE = c.CONTENT_TYPE_JWS  # application/jose: a JWS compact serialization
JSON = "application/json"
# The foreign ministry that carries each state's messages (art. 5.1: diplomatic channels).
MINISTRY = {"KZ": KZ_MFA, "AE": AE_MOFA}
# The requests a case may aim at, opened before the catalogue runs (see ``open_target``).
Target = Literal["own", "incoming", "foreign", "closed"]
Procedure = Literal["sco", "transfer"]
# Summary flags of the security check's last line a case stands for.
Flag = Literal["cross_inbox_read", "forged_sender", "tampered_signature"]


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


def transfer_body(sender: str, **overrides: Any) -> dict[str, Any]:
    """A valid transfer request of ``sender``'s state (art. 4, 6, 7, 8): Kazakhstan asks as
    the sentencing state (art. 7.1), the UAE as the executing state (art. 7.2)."""
    body = (transfer_request_content() if sender.startswith("KZ-")
            else executing_request_content())
    body.update(overrides)
    return body


def ministry_of(authority: str) -> str:
    return MINISTRY[authority.split("-")[0]]


# --- JWS by hand -----------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Base64url without padding, as JOSE writes every segment."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def private(key: SigningKey) -> Ed25519PrivateKey:
    """The raw Ed25519 key behind ``key`` (from its PEM form, as an agency holds it)."""
    loaded = serialization.load_pem_private_key(key.to_pem(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    return loaded


def header(kid: str, **members: Any) -> bytes:
    """A protected header naming ``kid`` (alg EdDSA unless ``members`` say otherwise)."""
    return json.dumps({"alg": "EdDSA", "kid": kid, **members}, separators=(",", ":")).encode()


def compact(protected: bytes, payload: bytes, key: SigningKey | None,
            signature: bytes | None = None) -> str:
    """``BASE64URL(protected).BASE64URL(payload).BASE64URL(signature)``: the signature is
    ``key``'s Ed25519 signature over the signing input unless ``signature`` is given
    (``b""`` for none at all), whatever ``protected`` says."""
    signing_input = f"{b64(protected)}.{b64(payload)}"
    if signature is None:
        assert key is not None
        signature = private(key).sign(signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def segments(token: str) -> tuple[str, str, str]:
    head, payload, signature = token.split(".")
    return head, payload, signature


def input_digest(token: str) -> str:
    """SHA-256 hex of a compact JWS's signing input (what the hub names in its reason)."""
    return hashlib.sha256(token.rsplit(".", 1)[0].encode()).hexdigest()


def payload_of(body: bytes) -> bytes | None:
    """The payload a compact JWS carries (unverified), or None if ``body`` is not one."""
    parts = body.strip().split(b".")
    if len(parts) != 3:
        return None
    try:
        return unb64(parts[1].decode("ascii"))
    except ValueError:
        return None


# --- what a case sends -----------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """Bytes published to the hub exchange as they are, with these AMQP properties, and
    the words the error's reasons must hold that only the built bytes know (a key id, the
    SHA-256 of what was signed)."""

    body: bytes
    message_id: str
    content_type: str | None = JOSE
    says: tuple[str, ...] = ()
    headers: dict[str, Any] | None = None  # AMQP headers of the attacker's own


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
    revoked: SigningKey | None = None  # a key of the attacker the registry revoked
    burst: int = 200  # the hub's per-sender burst (Settings.sender_burst), for the flood

    @staticmethod
    def fresh_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def fresh_request_id(requesting: str) -> str:
        """A new id in ``requesting``'s namespace (a request id begins with its sender's)."""
        return f"{requesting}-HX-{uuid.uuid4().hex[:10].upper()}"

    def envelope(self, kind: str, *, target: Target | None = None, body: Any = None,
                 **fields: Any) -> dict[str, Any]:
        """A valid envelope from the attacker (about ``target``, or a new request)."""
        sender = fields.get("sender", self.attacker)
        if body is None:
            body = (request_body() if kind == "request" else
                    transfer_body(sender) if kind == "transfer_request" else {})
        data: dict[str, Any] = {
            "schema_version": "2", "message_id": self.fresh_id(), "kind": kind,
            "request_id": self.targets[target] if target else self.fresh_request_id(sender),
            "treaty_id": self.treaty, "sender": self.attacker, "recipient": self.counterpart,
            "sent_at": datetime.now(UTC).isoformat(), "in_reply_to": None, "body": body,
        }
        data.update(fields)
        return data

    @staticmethod
    def payload(data: dict[str, Any]) -> bytes:
        """The envelope JSON as a sender writes it (UTF-8, scripts as they are)."""
        return json.dumps(data, ensure_ascii=False).encode()

    def token(self, data: dict[str, Any] | bytes, key: SigningKey | None = None) -> str:
        """A compact JWS of ``data`` (an envelope, or any bytes) by the attacker's key."""
        raw = data if isinstance(data, bytes) else self.payload(data)
        return sign(raw, key or self.key)

    def send(self, data: dict[str, Any], *, sign_it: bool = True,
             content_type: str | None = None) -> Attempt:
        """The envelope as an attempt: a JWS by the attacker's key (content type
        application/jose), or unless told otherwise plain JSON (application/json)."""
        if sign_it:
            return Attempt(self.token(data).encode(), str(data["message_id"]),
                           content_type or JOSE)
        return Attempt(self.payload(data), str(data["message_id"]), content_type or JSON)

    def raw(self, body: bytes, content_type: str | None = JOSE) -> Attempt:
        return Attempt(body, self.fresh_id(), content_type)

    def signed_raw(self, payload: bytes) -> Attempt:
        """Any bytes as the payload of a JWS by the attacker's key: the signature holds,
        so what the hub says is about the payload."""
        return Attempt(self.token(payload).encode(), self.fresh_id())

    @property
    def kid(self) -> str:
        return self.key.key_id


Probe = Callable[[Kit, AbstractChannel], Awaitable[None]]
# How many more than the burst a flood sends: the bucket refills while the hub reads them.
FLOOD_MARGIN = 150


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
    # A flood: ``build``'s bytes sent ``Kit.burst`` + ``FLOOD_MARGIN`` times at once; the
    # case is met when one of them is refused with ``problem``.
    flood: bool = False

    @property
    def layer(self) -> Literal["gateway", "broker"]:
        return "gateway" if self.build is not None else "broker"

"""Ed25519 signatures on envelopes: the canonical form, signing, verifying, key rings.

Art. 5.5 of the SCO 2010 agreement asks for a request signed by the head of the
requesting authority (or a deputy) or sealed by it; on the wire every message is signed
by the sending authority's key, and every message the hub sends by the hub's key.

The signature covers the *canonical form* of the envelope: the envelope as the contract
models read it (``model_dump(mode="json")``: every field, defaults filled in), without its
``signature`` field, as JSON with sorted keys, no whitespace, UTF-8 (``ensure_ascii`` off).
Key order, whitespace and escapes of the JSON as sent do not matter; any change to a value
does. Ed25519 is deterministic: the same envelope and key always give the same signature.

This module needs only ``cryptography``, ``pydantic`` and the contract models: an agency
uses it without the hub.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal, Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from treatyflow.constants import SIGNATURE_ALG
from treatyflow.schemas.messages import KeyId, Signature, canonical

__all__ = [
    "BadSignature",
    "KeyRing",
    "KeySource",
    "PublicKey",
    "SignatureError",
    "SigningKey",
    "UnknownKey",
    "Unsigned",
    "b64url",
    "canonical",
    "sign",
    "verify",
]

Envelope = TypeVar("Envelope", bound=BaseModel)
Base64Url = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+={0,2}$")]


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 4648 §5), as signatures and public keys travel."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SigningKey:
    """One private Ed25519 key and the id under which its public half is registered."""

    def __init__(self, key_id: str, private_key: Ed25519PrivateKey) -> None:
        self.key_id = key_id
        self._private = private_key

    @classmethod
    def generate(cls, key_id: str) -> SigningKey:
        return cls(key_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, key_id: str, pem: bytes) -> SigningKey:
        """A key from its PKCS#8 PEM form (unencrypted), as the key files hold it."""
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"key {key_id} is not an Ed25519 private key")
        return cls(key_id, private)

    def to_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self) -> str:
        """The raw 32-byte public key, base64url: what the registry holds."""
        return b64url(self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def sign_bytes(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:  # never the private key
        return f"SigningKey({self.key_id!r})"


def sign(envelope: Envelope, key: SigningKey) -> Envelope:
    """A copy of ``envelope`` carrying the signature of ``key`` over its canonical form
    (any signature it had is replaced)."""
    value = b64url(key.sign_bytes(canonical(envelope)))
    signature = Signature(key_id=key.key_id, alg=SIGNATURE_ALG, value=value)
    return envelope.model_copy(update={"signature": signature})


# --- public keys -----------------------------------------------------------------------


class PublicKey(BaseModel):
    """One registered public key of an authority (or of the hub)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key_id: KeyId = Field(description="Unique across the registry; named in signatures.")
    owner: str = Field(description="The authority id that signs with it, or 'HUB'.",
                       examples=["KZ-GPO", "HUB"])
    alg: Literal["ed25519"] = SIGNATURE_ALG
    public_key: Base64Url = Field(description="The raw 32-byte Ed25519 public key, base64url.")
    valid_from: AwareDatetime = Field(description="When the key was registered.")
    retired_at: AwareDatetime | None = Field(
        None, description="When a newer key replaced it for signing. A retired key still "
                          "verifies (messages in flight, clients not yet switched).")
    revoked_at: AwareDatetime | None = Field(
        None, description="When it was revoked (e.g. compromised): it never verifies again.")

    @property
    def current(self) -> bool:
        """Used to sign new messages: neither retired nor revoked."""
        return self.retired_at is None and self.revoked_at is None

    def verify_bytes(self, signature: bytes, data: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(_unb64url(self.public_key)).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


class KeyRing(BaseModel):
    """A set of public keys, e.g. the hub's registry or the hub's keys an agency trusts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    keys: list[PublicKey] = Field(default_factory=list)

    def lookup(self, key_id: str) -> PublicKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def of(self, owner: str) -> list[PublicKey]:
        return [k for k in self.keys if k.owner == owner]

    def only(self, owners: Iterable[str]) -> KeyRing:
        wanted = set(owners)
        return KeyRing(keys=[k for k in self.keys if k.owner in wanted])


class KeySource(Protocol):
    """Anything that finds a public key by id: a ``KeyRing``, or a registry file that
    reloads itself when it changes."""

    def lookup(self, key_id: str) -> PublicKey | None: ...


# --- verifying ---------------------------------------------------------------------------


class SignatureError(ValueError):
    """A message whose signature cannot be accepted; ``problem`` is the error code."""

    problem = "bad_signature"


class Unsigned(SignatureError):
    """No signature at all."""

    problem = "unsigned"


class UnknownKey(SignatureError):
    """The key id is not registered, is another party's, or was revoked."""

    problem = "unknown_key"


class BadSignature(SignatureError):
    """The signature does not match the envelope: altered after signing, or forged."""

    problem = "bad_signature"


def verify(envelope: BaseModel, keys: KeySource) -> PublicKey:
    """The key that signed ``envelope``; raises a ``SignatureError`` naming the problem.

    The key must be registered to the envelope's ``sender`` and not revoked; a retired key
    still verifies (art. 5.5: the sender's signature, under any key it has not revoked)."""
    signature: Signature | None = getattr(envelope, "signature", None)
    sender: str = getattr(envelope, "sender", "")
    if signature is None:
        raise Unsigned("the message is not signed; sign it with your authority's Ed25519 key "
                       "(art. 5.5; README, 'Signing')")
    key = keys.lookup(signature.key_id)
    if key is None:
        raise UnknownKey(f"key {signature.key_id!r} is not registered")
    if key.owner != sender:
        raise UnknownKey(f"key {signature.key_id!r} is not a key of {sender}")
    if key.revoked_at is not None:
        raise UnknownKey(f"key {signature.key_id!r} of {sender} was revoked at "
                         f"{_iso(key.revoked_at)}; sign with a current key")
    try:
        raw = _unb64url(signature.value)
    except (binascii.Error, ValueError) as err:
        raise BadSignature("the signature value is not base64url") from err
    if not key.verify_bytes(raw, canonical(envelope)):
        raise BadSignature(f"the signature under key {signature.key_id!r} does not match the "
                           "message: it was altered after signing, or signed by another key")
    return key


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")

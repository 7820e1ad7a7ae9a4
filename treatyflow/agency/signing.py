"""Signatures on the wire: JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037), and the key
directory as a JWKS (RFC 7517) signed by the hub.

Art. 5.5 of the SCO 2010 agreement asks for a request signed by the head of the
requesting authority (or a deputy) or sealed by it. On the wire every message is a JWS in
compact serialization whose payload is the envelope JSON exactly as its sender wrote it,
signed with the sender's Ed25519 key and naming it in ``kid``. Whoever receives it
verifies those bytes and only then parses them: nothing is canonicalised, so any
mainstream JOSE library signs and verifies, and a field added later breaks no signature.

The key directory is a JWKS of every key of the hub and of the authorities, with its
owner and validity; it travels as a JWS in general JSON serialization carrying one
signature per hub key still valid, so a party that knows any of the hub's keys can check
a directory issued after a rotation of the hub's key.

Only ``cryptography``, ``joserfc`` and ``pydantic`` are needed: an agency uses this module
without the hub.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import OKPKey
from joserfc.jws import JWSAlgModel
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "ACCEPTED_ALGS",
    "JWS_ALG",
    "BadSignature",
    "KeyRing",
    "KeySource",
    "Malformed",
    "PublicKey",
    "SignatureError",
    "SigningKey",
    "UnknownKey",
    "Unsigned",
    "Verified",
    "b64url",
    "sign",
    "sign_directory",
    "verify",
    "verify_directory",
    "verify_directory_self_signed",
]

# RFC 8037's name for Ed25519 signatures; RFC 9864 names the same algorithm "Ed25519",
# which is accepted too. Every other algorithm ("none", HS256 keyed with a public key,
# RSA, ECDSA) is refused before any key is touched.
JWS_ALG = "EdDSA"
ACCEPTED_ALGS = ("EdDSA", "Ed25519")
# Header parameters that would make a verifier fetch or trust a key other than the one
# the directory registers under ``kid``, or change what the signature covers (RFC 7797
# ``b64``; ``crit`` lists extensions this verifier does not implement): all refused.
REFUSED_HEADERS = ("jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64")
MAX_TOKEN_BYTES = 4 * 1024 * 1024  # the verifier's own bound; the gateway's is smaller
MAX_HEADER_BYTES = jws.JWSRegistry.max_header_length  # joserfc's bound on the header segment
_COMPACT = re.compile(rb"^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")
_KEY_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$"
Base64Url = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")]

warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)


class _Registry(jws.JWSRegistry):
    """joserfc's registry, less the SecurityWarning it raises at every use of "EdDSA"
    (RFC 9864 deprecates the name, not the algorithm: the contract signs as EdDSA). The
    warning was filtered out, but raising it still cost each signature and check a
    tenth of its time."""

    def get_alg(self, name: str) -> JWSAlgModel:
        if name == JWS_ALG and name in (self.allowed or ()):
            return self.algorithms[name]
        return super().get_alg(name)


def _registry(limit: int, algorithms: Iterable[str] = ACCEPTED_ALGS) -> jws.JWSRegistry:
    registry = _Registry(algorithms=list(algorithms))
    registry.max_payload_length = limit
    return registry


_REGISTRY = _registry(MAX_TOKEN_BYTES)
_SIGNING = _registry(MAX_TOKEN_BYTES, [JWS_ALG])  # what the hub and agencies sign with


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 4648 §5), as JOSE writes binary values."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- keys ------------------------------------------------------------------------------


class SigningKey:
    """One private Ed25519 key and the key id (``kid``) its public half is registered under."""

    def __init__(self, key_id: str, private_key: Ed25519PrivateKey) -> None:
        self.key_id = key_id
        self._private = private_key
        self._jwk = OKPKey.import_key(private_key, {"kid": key_id})

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
        """The raw 32-byte public key, base64url: the JWK's ``x``."""
        return b64url(self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def private_jwk(self) -> dict[str, Any]:
        """The key as a private JWK (``d`` included): for test vectors, never sent."""
        return {**self._jwk.as_dict(private=True), "kid": self.key_id, "alg": JWS_ALG}

    def __repr__(self) -> str:  # never the private key
        return f"SigningKey({self.key_id!r})"


class PublicKey(BaseModel):
    """One registered public key of an authority (or of the hub), with its validity."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key_id: Annotated[str, StringConstraints(pattern=_KEY_ID)] = Field(
        description="Unique across the directory: the JWS ``kid``.")
    owner: str = Field(description="The authority id that signs with it, or 'HUB'.",
                       examples=["KZ-GPO", "HUB"])
    alg: Literal["ed25519"] = "ed25519"
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

    def jwk(self) -> dict[str, Any]:
        """The key as a public JWK (RFC 8037 §2) with the directory's own members: its
        ``owner`` and validity (RFC 7517 §4 lets a JWK carry members of its own)."""
        out: dict[str, Any] = {"kty": "OKP", "crv": "Ed25519", "x": self.public_key,
                               "kid": self.key_id, "use": "sig", "alg": JWS_ALG,
                               "owner": self.owner, "valid_from": _iso(self.valid_from)}
        if self.retired_at is not None:
            out["retired_at"] = _iso(self.retired_at)
        if self.revoked_at is not None:
            out["revoked_at"] = _iso(self.revoked_at)
        return out

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any]) -> PublicKey:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise ValueError(f"key {jwk.get('kid')!r} is not an Ed25519 (OKP) key")
        return cls(key_id=jwk["kid"], owner=jwk["owner"], public_key=jwk["x"],
                   valid_from=jwk["valid_from"], retired_at=jwk.get("retired_at"),
                   revoked_at=jwk.get("revoked_at"))

    def _okp(self) -> OKPKey:
        return _okp_key(self.public_key)


@functools.lru_cache(maxsize=8192)
def _okp_key(x: str) -> OKPKey:
    """The JWK of a raw public key, imported once (a pure function of its bytes)."""
    return OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": x})


class KeyRing(BaseModel):
    """A set of public keys: the hub's registry, or the directory an agency holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    keys: list[PublicKey] = Field(default_factory=list)

    def lookup(self, key_id: str) -> PublicKey | None:
        return self._by_id.get(key_id)

    @functools.cached_property
    def _by_id(self) -> dict[str, PublicKey]:
        """The first key of each id (a ring is frozen: built once, on the first lookup;
        a directory of SIENA's size is thousands of keys)."""
        index: dict[str, PublicKey] = {}
        for key in self.keys:
            index.setdefault(key.key_id, key)
        return index

    def of(self, owner: str) -> list[PublicKey]:
        return [k for k in self.keys if k.owner == owner]

    def only(self, owners: Iterable[str]) -> KeyRing:
        wanted = set(owners)
        return KeyRing(keys=[k for k in self.keys if k.owner in wanted])

    def jwks(self) -> dict[str, Any]:
        """The ring as a JWK Set (RFC 7517 §5)."""
        return {"keys": [k.jwk() for k in self.keys]}

    @classmethod
    def from_jwks(cls, jwks: dict[str, Any]) -> KeyRing:
        return cls(keys=[PublicKey.from_jwk(k) for k in jwks.get("keys", [])])


class KeySource(Protocol):
    """Anything that finds a public key by id: a ``KeyRing``, or a registry file that
    reloads itself when it changes."""

    def lookup(self, key_id: str) -> PublicKey | None: ...


# --- signing ---------------------------------------------------------------------------


def sign(payload: bytes | BaseModel, key: SigningKey) -> str:
    """A compact JWS of ``payload`` (bytes as they are; a model as its JSON) by ``key``.

    Ed25519 is deterministic: the same bytes and key always give the same JWS, so a
    retried publish is the same message."""
    data = payload.model_dump_json().encode() if isinstance(payload, BaseModel) else payload
    header = {"alg": JWS_ALG, "kid": key.key_id}
    return jws.serialize_compact(header, data, key._jwk, registry=_SIGNING)


# --- verifying -------------------------------------------------------------------------


class SignatureError(ValueError):
    """A message whose signature cannot be accepted; ``problem`` is the error code."""

    problem = "bad_signature"


class Malformed(SignatureError):
    """Not a JWS compact serialization at all, or its header is not one we accept."""

    problem = "malformed"


class Unsigned(SignatureError):
    """Plain JSON, not a JWS: nothing is signed."""

    problem = "unsigned"


class UnknownKey(SignatureError):
    """No ``kid``, or one that is not registered, is another party's, or was revoked."""

    problem = "unknown_key"


class BadSignature(SignatureError):
    """The signature does not match the bytes: altered after signing, forged, or signed
    with another algorithm than EdDSA."""

    problem = "bad_signature"


@dataclass(frozen=True)
class Verified:
    """A JWS whose signature checked out: the signed payload bytes and the key."""

    token: str
    payload: bytes
    key: PublicKey
    header: dict[str, Any]

    @property
    def digest(self) -> str:
        """SHA-256 of the payload as signed: the message's identity in the record."""
        return sha256_hex(self.payload)


def _object(raw: bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object, refusing duplicate member names (two parsers must never
    read different values out of one signed text)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in items:
            if name in out:
                raise ValueError(f"{what} repeats the member {name!r}")
            out[name] = value
        return out

    value = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs)
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def header_of(token: str | bytes) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified (to find its ``kid``)."""
    raw = token.encode() if isinstance(token, str) else token
    found = _COMPACT.match(raw.strip())
    if found is None:
        if raw.lstrip().startswith(b"{"):
            if _json_serialized(raw):  # security check: signed, only not compact
                raise Malformed("the body is a JWS in JSON serialization (RFC 7515 §7.2); "
                                "send the JWS compact serialization "
                                "(BASE64URL(header).BASE64URL(payload).BASE64URL(signature))")
            raise Unsigned("the message is plain JSON, not a JWS: send the envelope JSON as "
                           "the payload of a JWS compact serialization signed with your "
                           "authority's Ed25519 key (alg EdDSA, kid your key id; art. 5.5)")
        raise Malformed("the body is not a JWS compact serialization "
                        "(BASE64URL(header).BASE64URL(payload).BASE64URL(signature))")
    # Security check: a header over joserfc's own bound was refused later as a signature
    # that "does not match"; say what is wrong instead.
    if len(found.group(1)) > MAX_HEADER_BYTES:
        raise Malformed(f"the JWS header is {len(found.group(1))} bytes (base64url); the "
                        f"limit is {MAX_HEADER_BYTES}")
    try:
        return _object(_unb64url(found.group(1)), "the JWS header")
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # nested too deep
        raise Malformed(f"the JWS header is not base64url JSON: {err}") from err


def _json_serialized(raw: bytes) -> bool:
    """Whether ``raw`` is a JWS in (general or flattened) JSON serialization."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and "payload" in value and (
        "signatures" in value or "protected" in value or "signature" in value)


def verify(token: str | bytes, keys: KeySource, *, signer: str | None = None,
           limit: int = MAX_TOKEN_BYTES) -> Verified:
    """Check a compact JWS against the directory; raises a ``SignatureError`` naming the
    problem. ``signer``: the owner the key must belong to (the connected authority, or
    'HUB'); a retired key still verifies, a revoked one never does (art. 5.5)."""
    raw = token.encode() if isinstance(token, str) else bytes(token)
    if len(raw) > limit:
        raise Malformed(f"the JWS is {len(raw)} bytes; the limit is {limit}")
    header = header_of(raw)
    alg = header.get("alg")
    if alg not in ACCEPTED_ALGS:
        raise BadSignature(f"alg {alg!r} is not accepted: sign with EdDSA (Ed25519, RFC 8037)")
    refused = [name for name in REFUSED_HEADERS if name in header]
    if refused:
        raise BadSignature(f"header parameter(s) {', '.join(refused)} are not accepted: the "
                           "key is named by kid alone and the payload is base64url")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnknownKey("the JWS header names no kid; put your registered key id in it")
    key = keys.lookup(kid)
    if key is None:
        raise UnknownKey(f"key {kid!r} is not registered")
    if signer is not None and key.owner != signer:
        raise UnknownKey(f"key {kid!r} is not a key of {signer}")
    if key.revoked_at is not None:
        raise UnknownKey(f"key {kid!r} of {key.owner} was revoked at "
                         f"{_iso(key.revoked_at)}; sign with a current key")
    text = raw.strip()
    signing_input = text.rsplit(b".", 1)[0]
    registry = _REGISTRY if limit <= MAX_TOKEN_BYTES else _registry(limit)
    try:
        checked = jws.deserialize_compact(text, key._okp(), algorithms=list(ACCEPTED_ALGS),
                                          registry=registry)
    except JoseError as err:
        raise BadSignature(
            f"the signature under key {kid!r} does not match the signed bytes (SHA-256 of "
            f"the JWS signing input {sha256_hex(signing_input)}): altered after signing, "
            f"or signed by another key ({err.error})") from err
    return Verified(token=text.decode(), payload=checked.payload, key=key, header=header)


# --- the key directory -----------------------------------------------------------------


class Directory(BaseModel):
    """The payload of a signed key directory: the JWKS and when the hub issued it."""

    model_config = ConfigDict(extra="allow")
    issued_at: AwareDatetime
    keys: list[dict[str, Any]]


def sign_directory(ring: KeyRing, signers: Iterable[SigningKey], issued_at: datetime) -> str:
    """The directory as a JWS in general JSON serialization (RFC 7515 §7.2.1), with one
    signature per key in ``signers`` (every hub key not revoked)."""
    # Security check: issued_at to the microsecond. Cut to the second, a directory issued
    # in the same second as the one an agency holds (a revocation right after a rotation)
    # looked no newer, and Directory.update never took it.
    payload = json.dumps({"issued_at": issued_at.isoformat(), **ring.jwks()},
                         separators=(",", ":")).encode()
    keys = list(signers)
    if not keys:
        raise ValueError("a directory needs at least one hub key to sign it")
    members: list[Any] = [{"protected": {"alg": JWS_ALG, "kid": k.key_id}} for k in keys]
    by_kid = {k.key_id: k._jwk for k in keys}

    def pick(member: Any) -> OKPKey:
        return by_kid[member.headers()["kid"]]

    value = jws.serialize_json(members, payload, pick, registry=_SIGNING)
    return json.dumps(value, separators=(",", ":"))


def verify_directory(text: str | bytes, trusted: KeySource) -> tuple[KeyRing, datetime]:
    """The directory's keys and issue time, if at least one of its signatures is by a hub
    key in ``trusted`` that is not revoked; raises ``SignatureError`` otherwise."""
    try:
        value = _object(text.encode() if isinstance(text, str) else text, "the directory")
        signatures = value.get("signatures")
        if not isinstance(signatures, list) or not signatures:
            raise ValueError("no signatures")
    except (ValueError, UnicodeDecodeError) as err:
        raise Malformed(f"the directory is not a JWS in JSON serialization: {err}") from err
    problems = []
    for member in signatures:
        try:
            protected = _object(_unb64url(member["protected"]), "a directory header")
            compact = f"{member['protected']}.{value['payload']}.{member['signature']}"
            checked = verify(compact, trusted, signer="HUB")
        except (SignatureError, KeyError, TypeError, ValueError) as err:
            problems.append(f"{locals().get('protected', {}).get('kid')}: {err}")
            continue
        directory = Directory.model_validate_json(checked.payload)
        return KeyRing.from_jwks({"keys": directory.keys}), directory.issued_at
    raise BadSignature("no signature of the directory is by a hub key you trust: "
                       + "; ".join(problems))


def verify_directory_self_signed(text: str | bytes) -> tuple[KeyRing, datetime]:
    """A directory checked against the hub keys it lists itself. This proves it whole and
    signed by a hub key it names, not who made it: the trust anchor a request's workflow
    starts from, before it takes only directories a key of the held one signed."""
    try:
        value = _object(text.encode() if isinstance(text, str) else text, "the directory")
        listed = Directory.model_validate_json(_unb64url(value["payload"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise Malformed(f"the directory is not a JWS in JSON serialization: {err}") from err
    return verify_directory(text, KeyRing.from_jwks({"keys": listed.keys}))


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")

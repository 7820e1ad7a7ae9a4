"""Signatures (art. 5.5): the canonical form, sign and verify, the key registry with
rotation and revocation, and what an agency's inbox makes of the hub's messages."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.factories import envelope, message, new_request_id
from treatyflow import keys
from treatyflow.agency import (
    BadSignature,
    KeyRing,
    PublicKey,
    SigningKey,
    UnknownKey,
    Unsigned,
    Unverified,
    canonical,
    read_delivery,
    sign,
    verify,
)
from treatyflow.schemas.messages import (
    INBOUND,
    ErrorBody,
    ErrorMessage,
    NoticeMessage,
    parse_inbound,
)

KZ, RU = "KZ-GPO", "RU-MIA"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def registered(key: SigningKey, owner: str, **dates: datetime | None) -> PublicKey:
    return PublicKey(key_id=key.key_id, owner=owner, public_key=key.public_key,
                     valid_from=NOW, **dates)


@pytest.fixture
def kz_key() -> SigningKey:
    return SigningKey.generate("KZ-GPO-2026-1")


@pytest.fixture
def ring(kz_key: SigningKey) -> KeyRing:
    return KeyRing(keys=[registered(kz_key, KZ)])


def request(**kwargs: object):  # type: ignore[no-untyped-def]
    return message("request", request_id=kwargs.pop("request_id", new_request_id()),
                   sender=KZ, recipient=RU, **kwargs)  # type: ignore[arg-type]


# --- the canonical form ---------------------------------------------------------------


def test_canonical_form_ignores_key_order_and_whitespace(kz_key: SigningKey) -> None:
    data = envelope("request", request_id=new_request_id(), sender=KZ, recipient=RU)
    compact = json.dumps(data, separators=(",", ":"))
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=4, ensure_ascii=True)
    a, b = parse_inbound(compact), parse_inbound(shuffled)
    assert canonical(a) == canonical(b)
    # Signed in one layout, verified in the other: the agency's JSON layout is free.
    signed = sign(a, kz_key)
    relaid = parse_inbound(json.dumps(
        dict(sorted(json.loads(signed.model_dump_json()).items(), reverse=True)), indent=2))
    verify(relaid, KeyRing(keys=[registered(kz_key, KZ)]))


def test_canonical_form_is_sorted_compact_utf8_without_the_signature(
    kz_key: SigningKey,
) -> None:
    m = request(body={**envelope("request", request_id="X-1", sender=KZ, recipient=RU)["body"],
                      "facts": "Средства переведены через счета в 2025 году."})
    signed = sign(m, kz_key)
    text = canonical(signed).decode("utf-8")
    assert canonical(signed) == canonical(m)  # the signature is not part of what it signs
    assert "signature" not in json.loads(text)
    assert "Средства" in text  # UTF-8, not \\u escapes
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False)


def test_signing_is_deterministic_so_a_retried_publish_is_identical(kz_key: SigningKey) -> None:
    m = request()
    assert sign(m, kz_key).model_dump_json() == sign(m, kz_key).model_dump_json()


# --- sign and verify ------------------------------------------------------------------


def test_signed_message_verifies_and_names_its_key(kz_key: SigningKey, ring: KeyRing) -> None:
    signed = sign(request(), kz_key)
    assert signed.signature is not None
    assert signed.signature.key_id == "KZ-GPO-2026-1" and signed.signature.alg == "ed25519"
    assert verify(signed, ring).owner == KZ
    # It survives the wire: serialised, parsed again, still valid.
    verify(parse_inbound(signed.model_dump_json()), ring)


def test_unsigned_message_fails(ring: KeyRing) -> None:
    with pytest.raises(Unsigned, match="not signed"):
        verify(request(), ring)


@pytest.mark.parametrize("change", [
    ("body", "facts", "Funds moved through account 999 instead."),
    ("top", "recipient", "RU-GPO"),
    ("top", "sent_at", "2027-01-01T00:00:00+00:00"),
    ("top", "in_reply_to", "0f6a1c9e-2b44-4c1e-9d0b-7a3e5c2f1d88"),
])
def test_message_altered_after_signing_fails(
    kz_key: SigningKey, ring: KeyRing, change: tuple[str, str, str]
) -> None:
    data = json.loads(sign(request(), kz_key).model_dump_json())
    where, field, value = change
    (data["body"] if where == "body" else data)[field] = value
    with pytest.raises(BadSignature, match="altered after signing"):
        verify(INBOUND.validate_python(data), ring)


def test_signature_of_another_key_fails(kz_key: SigningKey, ring: KeyRing) -> None:
    impostor = SigningKey.generate(kz_key.key_id)  # claims the registered key id
    with pytest.raises(BadSignature):
        verify(sign(request(), impostor), ring)


def test_key_of_another_authority_fails(kz_key: SigningKey) -> None:
    ru_key = SigningKey.generate("RU-MIA-2026-1")
    ring = KeyRing(keys=[registered(kz_key, KZ), registered(ru_key, RU)])
    # RU-MIA's key, valid signature, but the envelope says KZ-GPO sent it.
    with pytest.raises(UnknownKey, match="not a key of KZ-GPO"):
        verify(sign(request(), ru_key), ring)


def test_unknown_key_id_fails(ring: KeyRing) -> None:
    with pytest.raises(UnknownKey, match="not registered"):
        verify(sign(request(), SigningKey.generate("KZ-GPO-2099-7")), ring)


def test_pem_round_trip_keeps_the_key(kz_key: SigningKey, ring: KeyRing) -> None:
    again = SigningKey.from_pem(kz_key.key_id, kz_key.to_pem())
    assert again.public_key == kz_key.public_key
    verify(sign(request(), again), ring)
    assert "PRIVATE" not in repr(again)


# --- the registry: files, rotation, revocation -----------------------------------------


def test_local_stack_keys_are_owner_only_files(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    ring = keys.load_or_create_keys(secrets)
    assert {k.owner for k in ring.keys} == set(keys.owners())
    assert "HUB" in {k.owner for k in ring.keys}
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(keys.registry_path(secrets)).st_mode) == 0o600
    pem = keys.private_key_path(secrets, KZ, ring.of(KZ)[0].key_id)
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pem.parent).st_mode) == 0o700
    # Idempotent: a second run keeps every key.
    assert keys.load_or_create_keys(secrets) == ring
    # The private key on disk signs what the registry verifies.
    verify(sign(request(), keys.signing_key(secrets, KZ)), ring)


def test_a_registry_that_cannot_be_read_fails_closed(tmp_path: Path) -> None:
    """A revoked key must not keep verifying because the registry could not be re-read."""
    secrets = tmp_path / "secrets"
    key_id = keys.load_or_create_keys(secrets, [KZ]).of(KZ)[0].key_id
    registry = keys.RegistryFile(secrets)
    assert registry.lookup(key_id) is not None
    keys.registry_path(secrets).write_text('{"keys": [')  # a broken hand edit
    with pytest.raises(ValueError):
        registry.lookup(key_id)
    keys.registry_path(secrets).unlink()
    with pytest.raises(OSError):
        registry.lookup(key_id)


def test_rotation_keeps_the_old_key_verifying_and_signs_with_the_new(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    keys.load_or_create_keys(secrets, [KZ])
    old = keys.signing_key(secrets, KZ)
    in_flight = sign(request(), old)
    new_public = keys.rotate(secrets, KZ)
    new = keys.signing_key(secrets, KZ)
    assert new.key_id == new_public.key_id != old.key_id
    ring = keys.read_registry(secrets)
    assert ring.lookup(old.key_id).retired_at is not None  # type: ignore[union-attr]
    verify(sign(request(), new), ring)
    verify(in_flight, ring)  # signed before the rotation: still valid
    verify(sign(request(), old), ring)  # a client not yet switched: still valid


def test_revoked_key_no_longer_verifies(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    keys.load_or_create_keys(secrets, [KZ])
    old = keys.signing_key(secrets, KZ)
    signed = sign(request(), old)
    keys.rotate(secrets, KZ)
    keys.revoke(secrets, old.key_id)
    with pytest.raises(UnknownKey, match="revoked"):
        verify(signed, keys.read_registry(secrets))
    verify(sign(request(), keys.signing_key(secrets, KZ)), keys.read_registry(secrets))


def test_registering_an_agencys_own_public_key_keeps_no_private_key(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    keys.load_or_create_keys(secrets, [KZ])
    own = SigningKey.generate("unused")
    added = keys.rotate(secrets, KZ, public_key=own.public_key)
    assert not keys.private_key_path(secrets, KZ, added.key_id).exists()
    with pytest.raises(keys.KeyStoreError, match="no private key"):
        keys.signing_key(secrets, KZ)
    agency_key = SigningKey(added.key_id, own._private)  # the agency's side of it
    verify(sign(request(), agency_key), keys.read_registry(secrets))


def test_rotate_refuses_an_owner_nobody_knows(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyStoreError, match="neither an authority"):
        keys.rotate(tmp_path, "XX-NOBODY")


def test_registry_file_sees_a_rotation_and_a_revocation_without_restart(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    keys.load_or_create_keys(secrets, [KZ, "HUB"])
    registry = keys.RegistryFile(secrets)  # what a running gateway holds
    old = keys.signing_key(secrets, KZ)
    new = keys.rotate(secrets, KZ)
    verify(sign(request(), keys.signing_key(secrets, KZ)), registry)
    assert registry.lookup(new.key_id) is not None
    keys.revoke(secrets, old.key_id)
    with pytest.raises(UnknownKey, match="revoked"):
        verify(sign(request(), old), registry)
    hub = keys.CurrentKey(secrets, "HUB")
    first = hub().key_id
    keys.rotate(secrets, "HUB")
    assert hub().key_id != first  # the worker signs with the new hub key, no restart


# --- the agency's inbox ------------------------------------------------------------------


def notice(recipient: str = KZ) -> NoticeMessage:
    return NoticeMessage.model_validate({
        "kind": "notice", "message_id": "5937cbef-ebee-5a8d-993e-0c008cfefed5",
        "request_id": "KZ-GPO-2026-0042", "treaty_id": "sco-2010", "sender": "HUB",
        "recipient": recipient, "sent_at": NOW,
        "body": {"event": "received", "status": "received", "requesting": KZ, "requested": RU},
    })


@pytest.fixture
def hub_key() -> SigningKey:
    return SigningKey.generate("HUB-2026-1")


@pytest.fixture
def hub_ring(hub_key: SigningKey) -> KeyRing:
    return KeyRing(keys=[registered(hub_key, "HUB")])


def test_inbox_passes_a_notice_signed_by_the_hub(hub_key: SigningKey, hub_ring: KeyRing) -> None:
    read = read_delivery(sign(notice(), hub_key).model_dump_json().encode(), hub_ring)
    assert isinstance(read, NoticeMessage) and read.body.event == "received"


def test_inbox_surfaces_what_fails_verification(hub_key: SigningKey, hub_ring: KeyRing) -> None:
    unsigned = read_delivery(notice().model_dump_json().encode(), hub_ring)
    assert isinstance(unsigned, Unverified) and unsigned.problem == "unsigned"
    data = json.loads(sign(notice(), hub_key).model_dump_json())
    data["body"]["status"] = "executed"
    altered = read_delivery(json.dumps(data).encode(), hub_ring)
    assert isinstance(altered, Unverified) and altered.problem == "bad_signature"
    assert altered.message is not None and altered.message.body.status == "executed"
    stranger = read_delivery(
        sign(notice(), SigningKey.generate("HUB-2026-9")).model_dump_json().encode(), hub_ring)
    assert isinstance(stranger, Unverified) and stranger.problem == "unknown_key"
    garbage = read_delivery(b"{not json", hub_ring)
    assert isinstance(garbage, Unverified) and garbage.problem == "malformed"


def test_inbox_refuses_a_message_signed_by_an_authority_not_the_hub(kz_key: SigningKey) -> None:
    error = ErrorMessage(kind="error", message_id="a3c2b1d0-1111-5222-8333-944455556666",
                         request_id="KZ-GPO-2026-0042", treaty_id="sco-2010", sender=KZ,
                         recipient=RU, sent_at=NOW,
                         body=ErrorBody(problem="malformed", reasons=["fake"]))
    read = read_delivery(sign(error, kz_key).model_dump_json().encode(),
                         KeyRing(keys=[registered(kz_key, KZ)]))
    assert isinstance(read, Unverified) and read.problem == "unknown_key"
    assert "not the hub" in read.reason


def test_client_without_keys_refuses_to_sign_or_read() -> None:
    from treatyflow.agency import AgencyClient

    client = AgencyClient(KZ, "amqp://unused")
    with pytest.raises(RuntimeError, match="no signing key"):
        client.sign(request())
    signer = AgencyClient(KZ, "amqp://unused", signing_key=SigningKey.generate("KZ-GPO-2026-1"))
    assert signer.sign(request()).signature is not None


def test_the_agency_remembers_recent_ids_only() -> None:
    from treatyflow.agency.client import RecentIds

    seen = RecentIds(capacity=3)
    for message_id in ("m1", "m2", "m3", "m4"):
        seen.add(message_id)
    assert len(seen) == 3 and "m1" not in seen and "m4" in seen
    seen.add("m2")  # seen again: now the most recent, so it outlives m3
    seen.add("m5")
    assert "m2" in seen and "m3" not in seen

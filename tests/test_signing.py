"""Signatures (art. 5.5): JWS over the bytes as sent, verification and its refusals, the
key registry with rotation and revocation, the signed key directory, and what an agency's
inbox makes of the hub's messages and of the originals they pass on."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from joserfc import jws
from joserfc.jwk import OctKey
from pydantic import ValidationError

from tests.factories import envelope, message, new_request_id
from treatyflow import keys
from treatyflow.agency import (
    BadSignature,
    Directory,
    KeyRing,
    Malformed,
    PublicKey,
    SigningKey,
    UnknownKey,
    Unsigned,
    Unverified,
    originals,
    read_delivery,
    sign,
    sign_directory,
    verify,
    verify_directory,
)
from treatyflow.schemas.messages import (
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


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in token.split(".")]


# --- the JWS -----------------------------------------------------------------------------


def test_a_message_is_a_compact_jws_with_eddsa_and_the_key_id(kz_key: SigningKey) -> None:
    token = sign(b'{"a":1}', kz_key)
    header, payload, signature = segments(token)
    assert json.loads(header) == {"alg": "EdDSA", "kid": "KZ-GPO-2026-1"}
    assert payload == b'{"a":1}' and len(signature) == 64


def test_the_signature_covers_the_bytes_as_sent_and_nothing_is_rewritten(
        kz_key: SigningKey, ring: KeyRing) -> None:
    """Key order, white space, escapes, an unknown optional member: the sender's bytes
    are what is verified and what comes back, exactly."""
    data = envelope("request", request_id=new_request_id(), sender=KZ, recipient=RU)
    body = json.dumps(data["body"], ensure_ascii=True)
    written = (f'{{ "body": {body},\n  "kind":"request", "sender": "KZ-GPO", '
               f'"recipient": "RU-MIA", "message_id": "{data["message_id"]}", '
               f'"request_id": "{data["request_id"]}", "treaty_id": "sco-2010",'
               f' "sent_at": "{data["sent_at"]}", "schema_version": "2" }}')
    checked = verify(sign(written.encode(), kz_key), ring, signer=KZ)
    assert checked.payload == written.encode()
    assert parse_inbound(checked.payload).body.facts == data["body"]["facts"]  # type: ignore[union-attr]


def test_a_jws_assembled_by_hand_from_the_rfcs_verifies(kz_key: SigningKey, ring: KeyRing) -> None:
    """No library of ours on the signing side: RFC 7515 §7.1 with RFC 8037 by hand."""
    header = b64(b'{"kid":"KZ-GPO-2026-1","alg":"EdDSA","typ":"JOSE"}')
    payload = b64(b'{"anything": "as written"}')
    value = kz_key._private.sign(f"{header}.{payload}".encode())
    checked = verify(f"{header}.{payload}.{b64(value)}", ring)
    assert checked.payload == b'{"anything": "as written"}' and checked.key.owner == KZ


def test_signing_is_deterministic_so_a_retried_publish_is_identical(kz_key: SigningKey) -> None:
    m = request()
    assert sign(m, kz_key) == sign(m, kz_key)


def test_plain_json_is_unsigned_and_garbage_is_malformed(ring: KeyRing) -> None:
    with pytest.raises(Unsigned, match="not a JWS"):
        verify(request().model_dump_json(), ring)
    for garbage in (b"hello", b"a.b", b"a.b.c.d", b"!!.??.**", b""):
        with pytest.raises(Malformed):
            verify(garbage, ring)


def test_a_payload_altered_after_signing_names_the_key_and_the_digest(
        kz_key: SigningKey, ring: KeyRing) -> None:
    header, _, signature = sign(b'{"facts":"as signed"}', kz_key).split(".")
    altered = b64(b'{"facts":"altered"}')
    forged = f"{header}.{altered}.{signature}"
    with pytest.raises(BadSignature) as refused:
        verify(forged, ring)
    assert "KZ-GPO-2026-1" in str(refused.value)
    signing_input = forged.rsplit(".", 1)[0].encode()
    import hashlib
    assert hashlib.sha256(signing_input).hexdigest() in str(refused.value)


def test_other_algorithms_are_refused_before_any_key_is_used(
        kz_key: SigningKey, ring: KeyRing) -> None:
    payload = b'{"a":1}'
    none = f"{b64(json.dumps({'alg': 'none', 'kid': kz_key.key_id}).encode())}.{b64(payload)}."
    with pytest.raises((BadSignature, Malformed)):
        verify(none, ring)
    none_sig = none + b64(b"x")
    with pytest.raises(BadSignature, match="'none' is not accepted"):
        verify(none_sig, ring)
    # HS256 keyed with the public key, the classic confusion attack.
    hmac_key = OctKey.import_key(kz_key.public_key.encode())
    hs = jws.serialize_compact({"alg": "HS256", "kid": kz_key.key_id}, payload, hmac_key,
                               algorithms=["HS256"])
    with pytest.raises(BadSignature, match="'HS256' is not accepted"):
        verify(hs, ring)


def test_a_key_carried_in_the_header_is_never_trusted(kz_key: SigningKey, ring: KeyRing) -> None:
    stranger = SigningKey.generate("KZ-GPO-2026-1")  # same kid, another key
    token = sign(b'{"a":1}', stranger)
    with pytest.raises(BadSignature):
        verify(token, ring)
    header = {"alg": "EdDSA", "kid": kz_key.key_id,
              "jwk": {"kty": "OKP", "crv": "Ed25519", "x": stranger.public_key}}
    h = b64(json.dumps(header).encode())
    p = b64(b'{"a":1}')
    forged = f"{h}.{p}.{b64(stranger._private.sign(f'{h}.{p}'.encode()))}"
    with pytest.raises(BadSignature, match="jwk"):
        verify(forged, ring)


def test_the_key_must_belong_to_the_signer(kz_key: SigningKey) -> None:
    ring = KeyRing(keys=[registered(kz_key, KZ)])
    with pytest.raises(UnknownKey, match="not a key of RU-MIA"):
        verify(sign(request(), kz_key), ring, signer=RU)
    with pytest.raises(UnknownKey, match="not registered"):
        verify(sign(request(), SigningKey.generate("KZ-GPO-2026-9")), ring)
    alg_only = b64(b'{"alg":"EdDSA"}')
    no_kid = f"{alg_only}.{b64(b'{}')}.{b64(bytes(64))}"
    with pytest.raises(UnknownKey, match="no kid"):
        verify(no_kid, ring)


def test_a_header_with_a_repeated_member_is_malformed(kz_key: SigningKey, ring: KeyRing) -> None:
    h = b64(b'{"alg":"EdDSA","kid":"KZ-GPO-2026-1","kid":"RU-MIA-2026-1"}')
    p = b64(b"{}")
    token = f"{h}.{p}.{b64(kz_key._private.sign(f'{h}.{p}'.encode()))}"
    with pytest.raises(Malformed, match="repeats"):
        verify(token, ring)


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
    read = read_delivery(sign(notice(), hub_key).encode(), hub_ring)
    assert isinstance(read, NoticeMessage) and read.body.event == "received"


def test_a_member_the_hub_adds_later_breaks_no_older_agency(
    hub_key: SigningKey, hub_ring: KeyRing
) -> None:
    """The additive-change policy: a newer hub's notice with a member this client does not
    know (at the top and in the body) verifies, since the signature covers the bytes, and
    parses; an agency's own message with an unknown member is still refused."""
    newer = json.loads(notice().model_dump_json())
    newer["priority"] = "high"
    newer["body"]["case_officer_desk"] = "B-12"
    read = read_delivery(sign(json.dumps(newer).encode(), hub_key).encode(), hub_ring)
    assert isinstance(read, NoticeMessage) and read.body.event == "received"
    request = envelope("request", request_id="KZ-GPO-2026-0042", sender=KZ, recipient=RU)
    request["priority"] = "high"
    with pytest.raises(ValidationError, match="priority"):
        parse_inbound(json.dumps(request))


def test_inbox_surfaces_what_fails_verification(hub_key: SigningKey, hub_ring: KeyRing) -> None:
    unsigned = read_delivery(notice().model_dump_json().encode(), hub_ring)
    assert isinstance(unsigned, Unverified) and unsigned.problem == "unsigned"
    header, _, signature = sign(notice(), hub_key).split(".")
    data = json.loads(notice().model_dump_json())
    data["body"]["status"] = "executed"
    altered = read_delivery(f"{header}.{b64(json.dumps(data).encode())}.{signature}".encode(),
                            hub_ring)
    assert isinstance(altered, Unverified) and altered.problem == "bad_signature"
    stranger = read_delivery(sign(notice(), SigningKey.generate("HUB-2026-9")).encode(), hub_ring)
    assert isinstance(stranger, Unverified) and stranger.problem == "unknown_key"
    garbage = read_delivery(b"{not json", hub_ring)
    assert isinstance(garbage, Unverified) and garbage.problem == "unsigned"
    noise = read_delivery(b"not a jws", hub_ring)
    assert isinstance(noise, Unverified) and noise.problem == "malformed"
    wrong_type = json.loads(notice().model_dump_json())
    wrong_type["body"]["overdue"] = "no"
    coerced = read_delivery(sign(json.dumps(wrong_type).encode(), hub_key).encode(), hub_ring)
    assert isinstance(coerced, Unverified) and coerced.problem == "malformed"
    assert "body.overdue" in coerced.reason


def test_inbox_refuses_a_message_signed_by_an_authority_not_the_hub(kz_key: SigningKey) -> None:
    error = ErrorMessage(kind="error", message_id="a3c2b1d0-1111-5222-8333-944455556666",
                         request_id="KZ-GPO-2026-0042", treaty_id="sco-2010", sender=KZ,
                         recipient=RU, sent_at=NOW,
                         body=ErrorBody(problem="malformed", reasons=["fake"]))
    read = read_delivery(sign(error, kz_key).encode(), KeyRing(keys=[registered(kz_key, KZ)]))
    assert isinstance(read, Unverified) and read.problem == "unknown_key"
    assert "not a key of HUB" in read.reason


def passing_on(original: str, request_id: str) -> NoticeMessage:
    data = json.loads(notice(RU).model_dump_json())
    data["request_id"] = request_id
    data["body"] |= {"event": "request_delivered", "originals": [original]}
    return NoticeMessage.model_validate(data)


def test_the_original_travels_and_verifies_against_its_senders_key(
        kz_key: SigningKey, hub_key: SigningKey) -> None:
    directory = KeyRing(keys=[registered(kz_key, KZ), registered(hub_key, "HUB")])
    sent = request()
    token = sign(sent, kz_key)
    read = read_delivery(sign(passing_on(token, sent.request_id), hub_key).encode(), directory)
    assert isinstance(read, NoticeMessage)
    (original,) = originals(read, directory)
    assert original == sent and original.sender == KZ


def test_an_original_the_hub_or_anyone_altered_is_refused(
        kz_key: SigningKey, hub_key: SigningKey) -> None:
    ru_key = SigningKey.generate("RU-MIA-2026-1")
    directory = KeyRing(keys=[registered(kz_key, KZ), registered(ru_key, RU),
                              registered(hub_key, "HUB")])
    sent = request()
    header, _, signature = sign(sent, kz_key).split(".")
    changed = json.loads(sent.model_dump_json())
    changed["body"]["facts"] = "Something the requester never wrote."
    altered = f"{header}.{b64(json.dumps(changed).encode())}.{signature}"
    read = read_delivery(sign(passing_on(altered, sent.request_id), hub_key).encode(), directory)
    assert isinstance(read, Unverified) and read.problem == "bad_original"
    # Signed by RU-MIA, claiming to come from KZ-GPO: the key's owner is the sender.
    posing = sign(sent, ru_key)
    read = read_delivery(sign(passing_on(posing, sent.request_id), hub_key).encode(), directory)
    assert isinstance(read, Unverified) and "names KZ-GPO" in read.reason
    # A genuine original of another request.
    other = read_delivery(sign(passing_on(sign(sent, kz_key), "RQ-OTHER"), hub_key).encode(),
                          directory)
    assert isinstance(other, Unverified) and "not RQ-OTHER" in other.reason


def test_client_without_keys_refuses_to_sign_or_read() -> None:
    from treatyflow.agency import AgencyClient

    client = AgencyClient(KZ, "amqp://unused")
    with pytest.raises(RuntimeError, match="no signing key"):
        client.sign(request())
    signer = AgencyClient(KZ, "amqp://unused", signing_key=SigningKey.generate("KZ-GPO-2026-1"))
    assert signer.sign(request()).count(".") == 2


# --- the key directory -------------------------------------------------------------------


def test_the_directory_is_a_jwks_signed_by_every_valid_hub_key(
        kz_key: SigningKey, hub_key: SigningKey) -> None:
    new_hub = SigningKey.generate("HUB-2026-2")
    ring = KeyRing(keys=[registered(kz_key, KZ), registered(hub_key, "HUB", retired_at=NOW),
                         registered(new_hub, "HUB")])
    text = sign_directory(ring, [hub_key, new_hub], NOW)
    value = json.loads(text)
    assert len(value["signatures"]) == 2
    encoded = value["payload"]
    payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert {k["kid"] for k in payload["keys"]} == {kz_key.key_id, hub_key.key_id, new_hub.key_id}
    jwk = next(k for k in payload["keys"] if k["kid"] == kz_key.key_id)
    assert jwk | {"valid_from": None} == {"kty": "OKP", "crv": "Ed25519", "x": kz_key.public_key,
                                          "kid": kz_key.key_id, "use": "sig", "alg": "EdDSA",
                                          "owner": KZ, "valid_from": None}
    # A party that knew only the old hub key learns the new one through it.
    only_old = KeyRing(keys=[registered(hub_key, "HUB")])
    got, issued = verify_directory(text, only_old)
    assert got == ring and issued == NOW


def test_a_directory_not_signed_by_a_trusted_hub_key_is_refused(
        kz_key: SigningKey, hub_key: SigningKey) -> None:
    trusted = KeyRing(keys=[registered(hub_key, "HUB")])
    impostor = SigningKey.generate(hub_key.key_id)  # the hub's kid, another key
    forged = sign_directory(KeyRing(keys=[registered(kz_key, KZ)]), [impostor], NOW)
    with pytest.raises(BadSignature, match="no signature of the directory"):
        verify_directory(forged, trusted)
    by_authority = KeyRing(keys=[registered(hub_key, "HUB"), registered(kz_key, KZ)])
    with pytest.raises(BadSignature):
        verify_directory(sign_directory(by_authority, [kz_key], NOW), by_authority)
    with pytest.raises(Malformed):
        verify_directory(b"[]", trusted)


def test_a_held_directory_takes_only_newer_verified_ones(
        kz_key: SigningKey, hub_key: SigningKey) -> None:
    first = KeyRing(keys=[registered(hub_key, "HUB")])
    held = Directory(first, NOW)
    newer = KeyRing(keys=[*first.keys, registered(kz_key, KZ)])
    assert held.update(sign_directory(newer, [hub_key], NOW + timedelta(minutes=1)))
    assert held.lookup(kz_key.key_id) is not None
    assert not held.update(sign_directory(first, [hub_key], NOW))  # older: kept the newer
    assert held.lookup(kz_key.key_id) is not None


def test_the_registry_exports_the_same_directory_until_it_changes(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    keys.load_or_create_keys(secrets, [KZ, "HUB"])
    text = keys.signed_directory(secrets)
    assert keys.signed_directory(secrets) == text
    old_hub = keys.signing_key(secrets, "HUB")
    keys.rotate(secrets, "HUB")
    rotated = keys.signed_directory(secrets)
    assert rotated != text
    trusted = KeyRing(keys=[p for p in keys.read_registry(secrets).keys
                            if p.key_id == old_hub.key_id])
    ring, _ = verify_directory(rotated, trusted)
    assert len(ring.of("HUB")) == 2


def test_the_agency_remembers_recent_ids_only() -> None:
    from treatyflow.agency.client import RecentIds

    seen = RecentIds(capacity=3)
    for message_id in ("m1", "m2", "m3", "m4"):
        seen.add(message_id)
    assert len(seen) == 3 and "m1" not in seen and "m4" in seen
    seen.add("m2")  # seen again: now the most recent, so it outlives m3
    seen.add("m5")
    assert "m2" in seen and "m3" not in seen

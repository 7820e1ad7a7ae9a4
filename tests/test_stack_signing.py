"""Signatures on the real stack (art. 5.5), on the JWS wire: the gateway refuses what is not
a JWS by the sender's own key over the bytes it sends, keys rotate without a restart,
agencies verify what the hub sends them and the originals it passes on, and follow the
key directory the hub sends to their inboxes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import aio_pika
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.conftest import (
    KZ,
    RU,
    Mailbox,
    Opened,
    Parties,
    channel_of,
    cli,
    dead_letter,
    error_about,
    event,
    next_raw,
    status,
)
from tests.factories import envelope, message, new_message_id, new_request_id, request_body
from treatyflow import constants as c
from treatyflow import keys
from treatyflow.agency import (
    AgencyClient,
    Directory,
    KeyRing,
    SignatureError,
    SigningKey,
    Unverified,
    Verified,
    originals,
    sign,
    verify,
    verify_directory,
)
from treatyflow.schemas.messages import (
    MIGRATION_NOTE,
    ErrorMessage,
    InboundMessage,
    NoticeMessage,
    parse_outbound,
)
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords

pytestmark = pytest.mark.stack

# Used by no other stack test: a requester and a requested authority whose inboxes these
# tests read themselves (raw, or through a Directory that follows the hub's directories).
SRC, TJ = "KZ-SRC", "TJ-MIA"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def payload_of(token: str) -> bytes:
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def assert_refused_and_nothing_changed(
    sender_box: Mailbox, settings: Settings, client: Client, refused: InboundMessage,
    problem: str, *, request_id: str, timeline: list[str],
) -> ErrorMessage:
    """The sender got an error naming ``problem``; the original sits in the dead-letter
    queue with the reason; no party's entry was added to the request's timeline."""
    error = await sender_box.expect(error_about(refused.message_id))
    assert isinstance(error, ErrorMessage)
    assert error.body.problem == problem, error.body
    kept = await dead_letter(settings, refused.message_id)
    assert kept.headers[c.HEADER_PROBLEM] == problem
    assert str(kept.headers[c.HEADER_REASON]) == "; ".join(error.body.reasons)
    # A day lasts a second on the test stack, so a deadline (the hub's own entry, such as
    # receipt_deemed) may fall meanwhile; what the parties caused must be unchanged.
    entries = (await status(client, request_id)).timeline
    assert [e.event for e in entries if e.actor != c.HUB_SENDER] == timeline
    assert all(e.message_id != refused.message_id for e in entries)
    return error


Refused = Callable[[InboundMessage, str], Awaitable[ErrorMessage]]


@pytest_asyncio.fixture
async def refused(opened: Opened, stack_client: Client, stack_settings: Settings) -> Refused:
    """Checks that RU-MIA's message about the opened request was refused with a problem
    and changed nothing (as assert_refused_and_nothing_changed); returns the error."""
    async def check(message: InboundMessage, problem: str) -> ErrorMessage:
        return await assert_refused_and_nothing_changed(
            opened.ru_box, stack_settings, stack_client, message, problem,
            request_id=opened.rid, timeline=["request_sent"])
    return check


def receipt_of(opened: Opened, **body: object) -> InboundMessage:
    """RU-MIA's receipt of the opened request."""
    return message("receipt", request_id=opened.rid, sender=RU, recipient=KZ, body=body)


async def publish_jws(client: AgencyClient, token: str, of: InboundMessage) -> None:
    """A JWS made by hand, published as it is on ``client``'s connection."""
    await client.publish_raw(token.encode(), content_type=c.CONTENT_TYPE_JWS,
                             message_id=of.message_id)


async def publish_json(client: AgencyClient, data: str, message_id: str) -> None:
    """An envelope as plain JSON, no JWS around it, published on ``client``'s connection."""
    await client.publish_raw(data.encode(), content_type="application/json",
                             message_id=message_id)


async def test_unsigned_message_is_refused_and_changes_nothing(
    opened: Opened, refused: Refused, stack_client: Client
) -> None:
    receipt = receipt_of(opened)
    await publish_json(opened.ru, receipt.model_dump_json(), receipt.message_id)
    assert "not a JWS" in (await refused(receipt, "unsigned")).body.reasons[0]
    # An unsigned new request starts no workflow at all.
    fresh = message("request", request_id=new_request_id(), sender=KZ, recipient=RU)
    await publish_json(opened.kz, fresh.model_dump_json(), fresh.message_id)
    assert (await opened.kz_box.expect(error_about(fresh.message_id))).body.problem == \
        "unsigned"
    with pytest.raises(Exception, match="not found|NotFound|workflow"):
        await stack_client.get_workflow_handle(
            c.workflow_id("sco-2010", fresh.request_id)).describe()


async def test_message_signed_with_another_authoritys_key_is_refused(
    opened: Opened, refused: Refused
) -> None:
    kz, ru = opened.kz, opened.ru
    # RU-MIA's connection and sender, but KZ-GPO's key and kid: a valid JWS of the wrong party.
    receipt = receipt_of(opened)
    await ru.publish_signed(kz.sign(receipt), receipt)
    error = await refused(receipt, "unknown_key")
    assert kz.signing_key is not None
    assert f"key {kz.signing_key.key_id!r} is not a key of {RU}" in error.body.reasons[0]


async def test_message_altered_after_signing_names_the_kid_and_the_digest(
    opened: Opened, refused: Refused
) -> None:
    ru = opened.ru
    receipt = receipt_of(opened, note="received by the duty officer")
    head, payload, signature = ru.sign(receipt).split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["body"]["note"] = "received by someone else"  # changed in transit
    altered = f"{head}.{b64(json.dumps(data).encode())}.{signature}"
    await publish_jws(ru, altered, receipt)
    reason = (await refused(receipt, "bad_signature")).body.reasons[0]
    assert ru.signing_key is not None and repr(ru.signing_key.key_id) in reason
    digest = hashlib.sha256(altered.rsplit(".", 1)[0].encode()).hexdigest()
    assert digest in reason and "altered after signing" in reason


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_alg_none_or_hs256_keyed_with_the_public_key_is_refused(
    opened: Opened, refused: Refused, alg: str
) -> None:
    ru = opened.ru
    assert ru.signing_key is not None
    kid, public = ru.signing_key.key_id, ru.signing_key.public_key
    receipt = receipt_of(opened)
    protected = b64(json.dumps({"alg": alg, "kid": kid}).encode())
    signing_input = f"{protected}.{b64(receipt.model_dump_json().encode())}"
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    # alg none with a signature segment (an empty one is not even a compact JWS)
    await publish_jws(ru, f"{signing_input}.{b64(mac)}", receipt)
    error = await refused(receipt, "bad_signature")
    assert f"alg {alg!r} is not accepted" in error.body.reasons[0]


async def test_version_1_envelope_is_refused_with_the_migration_note(
    opened: Opened, refused: Refused
) -> None:
    old = envelope("receipt", request_id=opened.rid, sender=RU, recipient=KZ, body={})
    old |= {"schema_version": "1", "signature": {"alg": "ed25519", "key_id": "RU-MIA-2026-1",
                                                 "value": b64(bytes(64))}}
    await publish_json(opened.ru, json.dumps(old), old["message_id"])
    error = await refused(receipt_of(opened).model_copy(
        update={"message_id": old["message_id"]}), "unsupported_version")
    assert "schema_version '1'" in error.body.reasons[0]
    assert MIGRATION_NOTE in error.body.reasons


async def test_a_wrong_json_type_is_malformed_naming_the_field_never_coerced(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    data = envelope("request", request_id=new_request_id(), sender=KZ, recipient=RU,
                    body=request_body(urgent="no"))  # a string where a boolean belongs
    assert kz.signing_key is not None
    await kz.publish_raw(sign(json.dumps(data).encode(), kz.signing_key).encode(),
                         content_type=c.CONTENT_TYPE_JWS, message_id=data["message_id"])
    error = await kz_box.expect(error_about(data["message_id"]))
    assert isinstance(error, ErrorMessage) and error.body.problem == "malformed"
    assert any("body.urgent: Input should be a valid boolean" in r for r in error.body.reasons)
    kept = await dead_letter(stack_settings, data["message_id"])
    assert kept.headers[c.HEADER_PROBLEM] == "malformed"
    with pytest.raises(Exception, match="not found|NotFound|workflow"):
        await stack_client.get_workflow_handle(
            c.workflow_id("sco-2010", data["request_id"])).describe()


async def test_an_unreadable_body_is_answered_by_its_amqp_message_id(
    authorities, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    amqp_id = new_message_id()
    await kz.publish_raw(b"\x00 not a JWS at all", content_type=c.CONTENT_TYPE_JWS,
                         message_id=amqp_id)
    error = await kz_box.expect(error_about(amqp_id))
    assert isinstance(error, ErrorMessage)
    assert error.body.problem == "malformed"
    assert error.body.refused_message_id == amqp_id and error.in_reply_to is None
    assert (await dead_letter(stack_settings, amqp_id)).headers[c.HEADER_PROBLEM] == "malformed"


async def test_rotated_key_signs_new_requests_while_the_old_one_still_verifies(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    requester, requested = "UZ-GPO", "KZ-SPS"  # used by no other test or scenario
    uz, uz_box = await authorities(requester)
    _, sps_box = await authorities(requested)
    secrets = stack_settings.secrets_dir
    old_key = uz.signing_key
    assert old_key is not None
    in_flight = new_request_id(requester)
    await uz.publish(message("request", request_id=in_flight, sender=requester,
                             recipient=requested))
    await sps_box.expect(event(in_flight, "request_delivered"))

    rotated = keys.rotate(secrets, requester)  # the running gateway is not restarted
    uz.signing_key = keys.signing_key(secrets, requester)
    assert uz.signing_key.key_id == rotated.key_id != old_key.key_id
    fresh = new_request_id(requester)
    await uz.publish(message("request", request_id=fresh, sender=requester,
                             recipient=requested))
    assert uz.last_sent is not None
    assert verify(uz.last_sent, keys.read_registry(secrets)).key.key_id == rotated.key_id
    await uz_box.expect(event(fresh, "request_accepted"))

    # The in-flight request's next message, from a system still on the old key.
    withdrawal = message("withdrawal", request_id=in_flight, sender=requester,
                         recipient=requested, body={"reason": "Case closed at home."})
    await uz.publish_signed(sign(withdrawal, old_key), withdrawal)
    await sps_box.expect(event(in_flight, "withdrawn"))
    assert (await status(stack_client, in_flight)).status == "withdrawn"

    # Once revoked, the old key opens nothing.
    keys.revoke(secrets, old_key.key_id)
    late = message("withdrawal", request_id=fresh, sender=requester, recipient=requested,
                   body={"reason": "Signed with the revoked key."})
    await uz.publish_signed(sign(late, old_key), late)
    error = await assert_refused_and_nothing_changed(
        uz_box, stack_settings, stack_client, late, "unknown_key", request_id=fresh,
        timeline=["request_sent"])
    assert "revoked" in error.body.reasons[0] and old_key.key_id in error.body.reasons[0]


async def test_requested_authority_gets_the_requesters_original_jws_and_it_verifies(
    kz_ru: Parties, stack_settings: Settings
) -> None:
    kz, _, _, ru_box = kz_ru
    rid = new_request_id()
    sent = await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU))
    delivered = await ru_box.expect(event(rid, "request_delivered"))
    assert isinstance(delivered, NoticeMessage)
    assert delivered.body.originals == [kz.last_sent]  # exactly as KZ-GPO published it
    registry = keys.read_registry(stack_settings.secrets_dir)
    [original] = originals(delivered, registry)
    assert original.message_id == sent.message_id and original.sender == KZ
    assert verify(delivered.body.originals[0], registry).key.owner == KZ
    # The same original with its payload altered no longer verifies for the agency.
    head, _, signature = delivered.body.originals[0].split(".")
    changed = json.loads(payload_of(delivered.body.originals[0]))
    changed["body"]["facts"] = "Something the requester never wrote."
    forged = delivered.model_copy(update={"body": delivered.body.model_copy(update={
        "originals": [f"{head}.{b64(json.dumps(changed).encode())}.{signature}"]})})
    with pytest.raises(SignatureError):
        originals(forged, registry)


async def _publish_as_hub(settings: Settings, body: bytes, message_id: str, to: str) -> None:
    """Put bytes into an authority's inbox through the delivery exchange (only the hub
    user may): how a forged or damaged notice would reach an agency."""
    async with channel_of(settings, c.HUB_USER, publisher_confirms=True) as channel:
        exchange = await channel.get_exchange(c.EXCHANGE_DELIVER, ensure=False)
        await exchange.publish(
            aio_pika.Message(body, message_id=message_id, content_type=c.CONTENT_TYPE_JWS,
                             user_id=c.HUB_USER), routing_key=to)


async def test_agency_verifies_the_hubs_signature_on_what_it_receives(
    opened: Opened, stack_settings: Settings
) -> None:
    _, kz_box, ru, ru_box, rid = opened
    accepted = await kz_box.expect(event(rid, "request_accepted"))  # verified, or Unverified
    stray = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ, body={})
    await ru.publish(stray)
    await ru_box.expect(error_about(stray.message_id))  # errors are signed too

    # A notice damaged on its way in, one signed by an authority's key, then one with no
    # signature: surfaced, not passed on.
    copy = NoticeMessage.model_validate({**accepted.model_dump(),
                                         "message_id": f"copy-of-{accepted.message_id}"})
    genuine = sign(copy, keys.signing_key(stack_settings.secrets_dir, c.HUB_SENDER))
    head, _, signature = genuine.split(".")
    damaged = json.loads(payload_of(genuine))
    damaged["body"]["status"] = "executed"
    damaged_token = f"{head}.{b64(json.dumps(damaged).encode())}.{signature}"
    await _publish_as_hub(stack_settings, damaged_token.encode(), copy.message_id, KZ)
    flagged = await kz_box.expect_unverified(lambda u: u.problem == "bad_signature")
    assert flagged.body == damaged_token.encode()
    by_kz = sign(copy.model_copy(update={"message_id": "by-kz-" + rid}),
                 keys.signing_key(stack_settings.secrets_dir, KZ))
    await _publish_as_hub(stack_settings, by_kz.encode(), "by-kz-" + rid, KZ)
    stranger = await kz_box.expect_unverified(lambda u: u.body == by_kz.encode())
    assert stranger.problem == "unknown_key" and "not a key of HUB" in stranger.reason
    unsigned = copy.model_copy(update={"message_id": "unsigned-" + rid})
    await _publish_as_hub(stack_settings, unsigned.model_dump_json().encode(),
                          unsigned.message_id, KZ)
    await kz_box.expect_unverified(lambda u: u.problem == "unsigned")
    # The forgery did not use up the message id: the genuine message still arrives.
    await _publish_as_hub(stack_settings, genuine.encode(), copy.message_id, KZ)
    got = await kz_box.expect(lambda m: m.message_id == copy.message_id)
    assert got.body.status == accepted.body.status  # type: ignore[union-attr]


def test_keys_cli_lists_rotates_and_refuses_what_it_cannot_do(
    stack_settings: Settings,
) -> None:
    owner = "KZ-SPS"
    before = json.loads(cli(stack_settings, "keys", "list", "--owner", owner, "--json").stdout)
    rotated = cli(stack_settings, "keys", "rotate", owner)
    assert rotated.returncode == 0, rotated.stderr
    after = json.loads(cli(stack_settings, "keys", "list", "--owner", owner, "--json").stdout)
    assert len(after) == len(before) + 1 and after[-1]["key_id"] in rotated.stdout
    assert [k["retired_at"] is None for k in after] == [False] * len(before) + [True]
    assert all(k["revoked_at"] is None for k in after)
    revoked = cli(stack_settings, "keys", "revoke", after[0]["key_id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    table = cli(stack_settings, "keys", "list", "--owner", owner).stdout
    assert "revoked" in table and "current" in table
    unknown = cli(stack_settings, "keys", "revoke", "NO-SUCH-KEY")
    assert unknown.returncode == 2 and "no key 'NO-SUCH-KEY'" in unknown.stderr
    stranger = cli(stack_settings, "keys", "rotate", "XX-NOBODY")
    assert stranger.returncode == 2 and "neither an authority" in stranger.stderr


async def read_raw(settings: Settings, authority: str, match: Callable[[Verified], bool],
                   timeout: float = 20) -> Verified:
    """Read ``authority``'s inbox as a system in another language would: the AMQP body
    as it is, checked with a plain JWS verify against the registry (the hub's key)."""
    registry = keys.read_registry(settings.secrets_dir)

    def take(got: aio_pika.abc.AbstractIncomingMessage) -> Verified | None:
        if got.type in (c.AMQP_TYPE_DIRECTORY, c.AMQP_TYPE_CHECKPOINT,
                        c.AMQP_TYPE_CONSISTENCY_PROOF, c.AMQP_TYPE_RECEIPT):
            return None
        assert got.content_type == c.CONTENT_TYPE_JWS
        checked = verify(got.body, registry, signer=c.HUB_SENDER)
        return checked if match(checked) else None

    return await next_raw(settings, authority, take, timeout, "anything matching")


def notice_about(request_id: str, name: str) -> Callable[[Verified], bool]:
    return lambda checked: event(request_id, name)(parse_outbound(checked.payload))


def error_for(message_id: str) -> Callable[[Verified], bool]:
    return lambda checked: error_about(message_id)(parse_outbound(checked.payload))


async def test_after_a_hub_key_rotation_notices_and_errors_carry_the_new_key(
    stack_settings: Settings,
) -> None:
    passwords = read_passwords(stack_settings.secrets_dir)
    new = keys.rotate(stack_settings.secrets_dir, c.HUB_SENDER)  # worker, gateway keep running
    async with AgencyClient(SRC, stack_settings.amqp_url(SRC, passwords[SRC]),
                            signing_key=keys.signing_key(stack_settings.secrets_dir, SRC)) as src, \
            AgencyClient(TJ, stack_settings.amqp_url(TJ, passwords[TJ]),
                         signing_key=keys.signing_key(stack_settings.secrets_dir, TJ)) as tj:
        rid = new_request_id(SRC)
        await src.publish(message("request", request_id=rid, sender=SRC, recipient=TJ))
        delivered = await read_raw(stack_settings, TJ, notice_about(rid, "request_delivered"))
        assert delivered.key.key_id == new.key_id and delivered.header["kid"] == new.key_id
        stray = message("receipt", request_id=new_request_id(), sender=TJ, recipient=SRC,
                        body={})
        await tj.publish(stray)
        error = await read_raw(stack_settings, TJ, error_for(stray.message_id))
        assert error.key.key_id == new.key_id


async def test_an_agency_directory_learns_a_hub_key_rotation_from_its_inbox(
    authorities, stack_settings: Settings
) -> None:
    secrets = stack_settings.secrets_dir
    exported = cli(stack_settings, "keys", "export", "--jwks")
    assert exported.returncode == 0, exported.stderr
    directory = Directory.from_signed(exported.stdout, keys.read_registry(secrets).only(["HUB"]))
    passwords = read_passwords(secrets)
    agency = AgencyClient(TJ, stack_settings.amqp_url(TJ, passwords[TJ]),
                          signing_key=keys.signing_key(secrets, TJ), keys=directory)
    src, _ = await authorities(SRC)
    async with agency, agency.inbox(explicit_ack=False) as inbox:
        box = Mailbox(inbox)
        rotated = cli(stack_settings, "keys", "rotate", c.HUB_SENDER)
        assert rotated.returncode == 0, rotated.stderr
        new = keys.signing_key(secrets, c.HUB_SENDER)
        assert new.key_id in rotated.stdout and directory.lookup(new.key_id) is None
        for _ in range(100):  # the hub sends the new directory within 2 s
            if directory.lookup(new.key_id) is not None:
                break
            await box.settle(0.1)
        assert directory.lookup(new.key_id) is not None, "no new directory in the inbox"
        learnt = len(box.messages)
        # A notice signed by the new hub key: only the new directory verifies it.
        rid = new_request_id(SRC)
        await src.publish(message("request", request_id=rid, sender=SRC, recipient=TJ))
        delivered = await box.expect(event(rid, "request_delivered"))
        assert delivered.request_id == rid
        await box.settle(0.5)
        assert not [m for m in box.messages[learnt:] if isinstance(m, Unverified)]
        # A revocation in the same second as the change before it reaches the agency too.
        old = keys.signing_key(secrets, SRC)
        other = keys.rotate(secrets, SRC)
        for _ in range(100):  # the directory with the rotation arrives
            if directory.lookup(other.key_id) is not None:
                break
            await box.settle(0.1)
        assert directory.lookup(other.key_id) is not None
        gone = keys.revoke(secrets, old.key_id, now=other.valid_from + timedelta(milliseconds=1))
        for _ in range(100):
            held = directory.lookup(gone.key_id)
            if held is not None and held.revoked_at is not None:
                break
            await box.settle(0.1)
        held = directory.lookup(gone.key_id)
        assert held is not None and held.revoked_at is not None, "revocation not learnt"


def test_keys_export_jwks_prints_a_directory_that_verifies(stack_settings: Settings) -> None:
    registry = keys.read_registry(stack_settings.secrets_dir)
    exported = cli(stack_settings, "keys", "export", "--jwks")
    assert exported.returncode == 0, exported.stderr
    ring, _ = verify_directory(exported.stdout, registry.only([c.HUB_SENDER]))
    assert {k.key_id for k in ring.keys} == {k.key_id for k in registry.keys}
    assert {k.owner for k in ring.keys} >= {c.HUB_SENDER, KZ, RU}
    # A key swapped inside the exported directory no longer verifies.
    value = json.loads(exported.stdout)
    content = json.loads(payload_of(f"x.{value['payload']}.x"))
    content["keys"][0]["x"] = SigningKey.generate("x-1").public_key
    value["payload"] = b64(json.dumps(content).encode())
    with pytest.raises(SignatureError):
        verify_directory(json.dumps(value), registry.only([c.HUB_SENDER]))
    bare = cli(stack_settings, "keys", "export", "--jwks", "--unsigned")
    assert KeyRing.from_jwks(json.loads(bare.stdout)).keys == ring.keys


def test_signing_key_files_are_not_readable_by_others(stack_settings: Settings) -> None:
    secrets = stack_settings.secrets_dir
    for path in [secrets, *secrets.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is mode {mode:o}"
    assert SigningKey.from_pem("x", next(secrets.rglob("*.pem")).read_bytes())


def test_cli_send_keeps_a_signature_made_elsewhere(stack_settings: Settings,
                                                   tmp_path: Path) -> None:
    rid = new_request_id()
    own = sign(message("request", request_id=rid, sender=KZ, recipient=RU),
               keys.signing_key(stack_settings.secrets_dir, KZ))
    path = tmp_path / "signed.jws"
    path.write_text(own + "\n")
    sent = cli(stack_settings, "send", str(path), "--as", KZ)
    assert sent.returncode == 0, sent.stderr
    assert "with its own signature" in sent.stdout
    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps(envelope("request", request_id=new_request_id(), sender=KZ,
                                            recipient=RU)))
    again = cli(stack_settings, "send", str(unsigned), "--as", KZ)
    assert again.returncode == 0 and f"signed with {KZ}-" in again.stdout
    for _ in range(50):
        shown = cli(stack_settings, "timeline", rid, "--json")
        if shown.returncode == 0:
            break
    assert [e["event"] for e in json.loads(shown.stdout)] == ["request_sent"]

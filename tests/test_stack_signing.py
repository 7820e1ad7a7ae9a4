"""Signatures on the real stack (art. 5.5): the gateway refuses what is not signed by the
sender, keys rotate without a restart, and agencies verify what the hub sends them."""

from __future__ import annotations

import json
import subprocess
import sys

import aio_pika
import pytest
from temporalio.client import Client

from tests.conftest import Mailbox
from tests.factories import message, new_request_id
from tests.test_stack import KZ, RU, dead_letter, error_about, event, open_request, status
from treatyflow import constants as c
from treatyflow import keys
from treatyflow.agency import SigningKey, sign, verify
from treatyflow.schemas.messages import ErrorMessage, InboundMessage, NoticeMessage
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords

pytestmark = pytest.mark.stack


async def assert_refused_and_nothing_changed(
    sender_box: Mailbox, settings: Settings, client: Client, refused: InboundMessage,
    problem: str, *, request_id: str, timeline: list[str],
) -> ErrorMessage:
    """The sender got an error naming ``problem``; the original sits in the dead-letter
    queue with the reason; the request's timeline is what it was."""
    error = await sender_box.expect(error_about(refused.message_id))
    assert isinstance(error, ErrorMessage)
    assert error.body.problem == problem, error.body
    kept = await dead_letter(settings, refused.message_id)
    assert kept.headers[c.HEADER_PROBLEM] == problem
    assert str(kept.headers[c.HEADER_REASON]) == "; ".join(error.body.reasons)
    assert [e.event for e in (await status(client, request_id)).timeline] == timeline
    return error


async def test_unsigned_message_is_refused_and_changes_nothing(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    ru, ru_box = await authorities(RU)
    rid = await open_request(kz, kz_box, ru_box)
    receipt = message("receipt", request_id=rid, sender=RU, recipient=KZ, body={})
    await ru.publish_raw(receipt.model_dump_json().encode(), content_type="application/json",
                         message_id=receipt.message_id)
    error = await assert_refused_and_nothing_changed(
        ru_box, stack_settings, stack_client, receipt, "unsigned", request_id=rid,
        timeline=["request_sent"])
    assert "not signed" in error.body.reasons[0]
    # An unsigned new request starts no workflow at all.
    fresh = message("request", request_id=new_request_id(), sender=KZ, recipient=RU)
    await kz.publish_raw(fresh.model_dump_json().encode(), content_type="application/json",
                         message_id=fresh.message_id)
    assert (await kz_box.expect(error_about(fresh.message_id))).body.problem == "unsigned"
    with pytest.raises(Exception, match="not found|NotFound|workflow"):
        await stack_client.get_workflow_handle(
            c.workflow_id("sco-2010", fresh.request_id)).describe()


async def test_message_signed_with_another_authoritys_key_is_refused(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    ru, ru_box = await authorities(RU)
    rid = await open_request(kz, kz_box, ru_box)
    # RU-MIA's connection and sender, but KZ-GPO's key: a valid signature of the wrong party.
    receipt = kz.sign(message("receipt", request_id=rid, sender=RU, recipient=KZ, body={}))
    await ru.publish(receipt)
    error = await assert_refused_and_nothing_changed(
        ru_box, stack_settings, stack_client, receipt, "unknown_key", request_id=rid,
        timeline=["request_sent"])
    assert f"not a key of {RU}" in error.body.reasons[0]


async def test_message_altered_after_signing_is_refused(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    ru, ru_box = await authorities(RU)
    rid = await open_request(kz, kz_box, ru_box)
    signed = ru.sign(message("receipt", request_id=rid, sender=RU, recipient=KZ,
                             body={"note": "received by the duty officer"}))
    data = json.loads(signed.model_dump_json())
    data["body"]["note"] = "received by someone else"  # changed in transit
    await ru.publish_raw(json.dumps(data).encode(), content_type="application/json",
                         message_id=signed.message_id)
    error = await assert_refused_and_nothing_changed(
        ru_box, stack_settings, stack_client, signed, "bad_signature", request_id=rid,
        timeline=["request_sent"])
    assert "altered after signing" in error.body.reasons[0]


async def test_rotated_key_signs_new_requests_while_the_old_one_still_verifies(
    authorities, stack_client: Client, stack_settings: Settings
) -> None:
    requester, requested = "UZ-GPO", "KZ-SPS"  # used by no other test or scenario
    uz, uz_box = await authorities(requester)
    _, sps_box = await authorities(requested)
    secrets = stack_settings.secrets_dir
    old_key = uz.signing_key
    assert old_key is not None
    in_flight = new_request_id()
    await uz.publish(message("request", request_id=in_flight, sender=requester,
                             recipient=requested))
    await sps_box.expect(event(in_flight, "request_delivered"))

    rotated = keys.rotate(secrets, requester)  # the running gateway is not restarted
    uz.signing_key = keys.signing_key(secrets, requester)
    assert uz.signing_key.key_id == rotated.key_id != old_key.key_id
    fresh = new_request_id()
    sent = await uz.publish(message("request", request_id=fresh, sender=requester,
                                    recipient=requested))
    assert sent.signature is not None and sent.signature.key_id == rotated.key_id
    await uz_box.expect(event(fresh, "request_accepted"))

    # The in-flight request's next message, from a system still on the old key.
    withdrawal = sign(message("withdrawal", request_id=in_flight, sender=requester,
                              recipient=requested, body={"reason": "Case closed at home."}),
                      old_key)
    await uz.publish(withdrawal)
    await sps_box.expect(event(in_flight, "withdrawn"))
    assert (await status(stack_client, in_flight)).status == "withdrawn"

    # Once revoked, the old key opens nothing.
    keys.revoke(secrets, old_key.key_id)
    late = sign(message("withdrawal", request_id=fresh, sender=requester, recipient=requested,
                        body={"reason": "Signed with the revoked key."}), old_key)
    await uz.publish(late)
    error = await assert_refused_and_nothing_changed(
        uz_box, stack_settings, stack_client, late, "unknown_key", request_id=fresh,
        timeline=["request_sent"])
    assert "revoked" in error.body.reasons[0]


async def _publish_as_hub(settings: Settings, body: bytes, message_id: str, to: str) -> None:
    """Put bytes into an authority's inbox through the delivery exchange (only the hub
    user may): how a forged or damaged notice would reach an agency."""
    password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    connection = await aio_pika.connect(settings.amqp_url(c.HUB_USER, password))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(c.EXCHANGE_DELIVER, ensure=False)
        await exchange.publish(
            aio_pika.Message(body, message_id=message_id, content_type="application/json",
                             user_id=c.HUB_USER), routing_key=to)


async def test_agency_verifies_the_hubs_signature_on_what_it_receives(
    authorities, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    ru, ru_box = await authorities(RU)
    registry = keys.read_registry(stack_settings.secrets_dir)
    rid = await open_request(kz, kz_box, ru_box)
    accepted = await kz_box.expect(event(rid, "request_accepted"))
    assert accepted.signature is not None
    assert verify(accepted, registry).owner == c.HUB_SENDER
    stray = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ, body={})
    await ru.publish(stray)
    error = await ru_box.expect(error_about(stray.message_id))
    assert verify(error, registry).owner == c.HUB_SENDER  # errors are signed too

    # A notice damaged on its way in, then one with no signature: surfaced, not passed.
    genuine = sign(NoticeMessage.model_validate({
        **accepted.model_dump(), "message_id": f"copy-of-{accepted.message_id}",
        "signature": None}), keys.signing_key(stack_settings.secrets_dir, c.HUB_SENDER))
    damaged = json.loads(genuine.model_dump_json())
    damaged["body"]["status"] = "executed"
    await _publish_as_hub(stack_settings, json.dumps(damaged).encode(), genuine.message_id, KZ)
    flagged = await kz_box.expect_unverified(lambda u: u.problem == "bad_signature")
    assert flagged.message is not None
    assert flagged.message.message_id == genuine.message_id
    unsigned = genuine.model_copy(update={"signature": None, "message_id": "unsigned-" + rid})
    await _publish_as_hub(stack_settings, unsigned.model_dump_json().encode(),
                          unsigned.message_id, KZ)
    await kz_box.expect_unverified(lambda u: u.problem == "unsigned")
    # The forgery did not use up the message id: the genuine message still arrives.
    await _publish_as_hub(stack_settings, genuine.model_dump_json().encode(),
                          genuine.message_id, KZ)
    got = await kz_box.expect(lambda m: m.message_id == genuine.message_id)
    assert got.body.status == accepted.body.status


def test_keys_cli_lists_rotates_and_refuses_what_it_cannot_do(
    stack_settings: Settings,
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "treatyflow.workers.cli", *args],
                              env={**stack_settings.to_env(), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=60, check=False)

    owner = "KZ-SPS"
    before = json.loads(cli("keys", "list", "--owner", owner, "--json").stdout)
    rotated = cli("keys", "rotate", owner)
    assert rotated.returncode == 0, rotated.stderr
    after = json.loads(cli("keys", "list", "--owner", owner, "--json").stdout)
    assert len(after) == len(before) + 1 and after[-1]["key_id"] in rotated.stdout
    assert [k["retired_at"] is None for k in after] == [False] * len(before) + [True]
    assert all(k["revoked_at"] is None for k in after)
    revoked = cli("keys", "revoke", after[0]["key_id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    table = cli("keys", "list", "--owner", owner).stdout
    assert "revoked" in table and "current" in table
    unknown = cli("keys", "revoke", "NO-SUCH-KEY")
    assert unknown.returncode == 2 and "no key 'NO-SUCH-KEY'" in unknown.stderr
    stranger = cli("keys", "rotate", "XX-NOBODY")
    assert stranger.returncode == 2 and "neither an authority" in stranger.stderr


async def test_after_a_hub_key_rotation_notices_and_errors_carry_the_new_key(
    authorities, stack_settings: Settings
) -> None:
    kz, kz_box = await authorities(KZ)
    ru, ru_box = await authorities(RU)
    new = keys.rotate(stack_settings.secrets_dir, c.HUB_SENDER)  # worker, gateway keep running
    rid = await open_request(kz, kz_box, ru_box)  # each side verified what it got
    delivered = await ru_box.expect(event(rid, "request_delivered"))
    assert delivered.signature is not None and delivered.signature.key_id == new.key_id
    stray = message("receipt", request_id=new_request_id(), sender=RU, recipient=KZ, body={})
    await ru.publish(stray)
    error = await ru_box.expect(error_about(stray.message_id))
    assert error.signature is not None and error.signature.key_id == new.key_id


def test_signing_key_files_are_not_readable_by_others(stack_settings: Settings) -> None:
    secrets = stack_settings.secrets_dir
    for path in [secrets, *secrets.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is mode {mode:o}"
    assert SigningKey.from_pem("x", next(secrets.rglob("*.pem")).read_bytes())


def test_cli_send_keeps_a_signature_made_elsewhere(stack_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import envelope

    rid = new_request_id()
    own = sign(message("request", request_id=rid, sender=KZ, recipient=RU),
               keys.signing_key(stack_settings.secrets_dir, KZ))
    path = tmp_path / "signed.json"
    path.write_text(json.dumps(json.loads(own.model_dump_json()), indent=2))
    env = {**stack_settings.to_env(), "PATH": "/usr/bin:/bin"}
    sent = subprocess.run([sys.executable, "-m", "treatyflow.workers.cli", "send", str(path),
                           "--as", KZ], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert sent.returncode == 0, sent.stderr
    assert "with its own signature" in sent.stdout
    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps(envelope("request", request_id=new_request_id(), sender=KZ,
                                            recipient=RU)))
    again = subprocess.run([sys.executable, "-m", "treatyflow.workers.cli", "send",
                            str(unsigned), "--as", KZ], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert again.returncode == 0 and f"signed with {KZ}-" in again.stdout
    for _ in range(50):
        shown = subprocess.run([sys.executable, "-m", "treatyflow.workers.cli", "timeline", rid,
                                "--json"], env=env, capture_output=True, text=True, timeout=60,
                               check=False)
        if shown.returncode == 0:
            break
    assert [e["event"] for e in json.loads(shown.stdout)] == ["request_sent"]

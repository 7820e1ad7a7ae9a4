"""A Node.js agency, written from the published contract alone (npm ``jose`` and
``amqplib``, tests/node_agency/), against the real local stack: a request from KZ-GPO to
RU-MIA executed end to end, each side verifying the other's original signature inside the
hub's notices, and the hub's documented errors for a tampered message and a wrong JSON
type; what the node agency refuses (forged, altered, passing on a forged original); and
the published test vectors (docs/contract/vectors/) checked with npm ``jose``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.conftest import record_entries
from tests.factories import new_request_id, request_body
from treatyflow.agency.entries import RETRIEVED, Entry, entry_id
from treatyflow.agency.signing import KeyRing, PublicKey, SigningKey, b64url, sign, sign_directory
from treatyflow.hub import request_state
from treatyflow.keys import private_key_path, read_registry
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords

ROOT = Path(__file__).resolve().parent.parent
AGENCY = ROOT / "tests" / "node_agency"
VECTORS = ROOT / "docs" / "contract" / "vectors"
KZ, RU = "KZ-GPO", "RU-MIA"
TIMEOUT_S = 60
MIN_VECTORS = 5  # at least a valid vector and several ways of being invalid


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (AGENCY / "node_modules" / "jose").is_dir():
        pytest.fail("node or tests/node_agency/node_modules missing: run `make setup`, "
                    "which installs both")
    return node


def _lines(stdout: bytes) -> list[dict[str, Any]]:
    out = []
    for line in stdout.decode().splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _directory(settings: Settings, path: Path) -> None:
    """The signed key directory, exported the way an operator hands it to an agency."""
    cli = Path(sys.executable).parent / "treatyflow"
    subprocess.run([str(cli), "keys", "export", "--jwks", "-o", str(path)], check=True,
                   env={**os.environ, **settings.to_env()}, capture_output=True, timeout=60)


def _env(settings: Settings, directory: Path, authority: str, peer: str,
         request_id: str) -> dict[str, str]:
    """What one node process needs: its broker URL, its current key, the directory."""
    secrets = settings.secrets_dir
    current = [k for k in read_registry(secrets).of(authority) if k.current][-1]
    password = read_passwords(secrets)[authority]
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TF_AMQP_URL": settings.amqp_url(authority, password),
        "TF_AUTHORITY": authority,
        "TF_KEY_FILE": str(private_key_path(secrets, authority, current.key_id)),
        "TF_KID": current.key_id,
        "TF_DIRECTORY": str(directory),
        "TF_PEER": peer,
        "TF_REQUEST_ID": request_id,
        "TF_TIMEOUT_S": str(TIMEOUT_S),
    }


async def _run(node: str, script: str, env: dict[str, str]) -> tuple[int, list[dict[str, Any]],
                                                                         str]:
    proc = await asyncio.create_subprocess_exec(
        node, str(AGENCY / script), cwd=AGENCY, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT_S + 30)
    except TimeoutError:
        proc.kill()
        stdout, stderr = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, _lines(stdout), stderr.decode()


def _one(lines: list[dict[str, Any]], event: str, **match: Any) -> dict[str, Any]:
    found = [line for line in lines if line.get("event") == event
             and all(line.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one {event} {match}, got {found} in {lines}"
    return found[0]


@pytest.mark.stack
async def test_node_agencies_carry_a_request_to_executed(
    stack_settings: Settings, stack_client: Client, tmp_path: Path
) -> None:
    node = _node()
    rid = new_request_id()
    directory = tmp_path / "directory.json"
    _directory(stack_settings, directory)
    (req_code, req, req_err), (ru_code, ru, ru_err) = await asyncio.gather(
        _run(node, "requester.mjs", _env(stack_settings, directory, KZ, RU, rid)),
        _run(node, "requested.mjs", _env(stack_settings, directory, RU, KZ, rid)),
    )
    report = f"requester:\n{req}\n{req_err}\nrequested:\n{ru}\n{ru_err}"
    assert req_code == 0 and ru_code == 0, report
    assert _one(req, "done")["ok"] and _one(ru, "done")["ok"], report

    # The hub's state: executed, in full.
    state = await request_state(stack_client, "sco-2010", rid)
    assert state.status == "executed" and state.outcome == "full"

    # RU-MIA read the request from KZ-GPO's own signature, not from the hub's retelling.
    sent = [line for line in req if line.get("event") == "sent"]
    request_sent = next(s for s in sent if s.get("request_id") == rid)
    request_id_sent = request_sent["message_id"]
    kz_original = _one(ru, "verified_original", notice_event="request_delivered")
    assert kz_original["kind"] == "request" and kz_original["sender"] == KZ
    assert kz_original["key_owner"] == KZ and kz_original["message_id"] == request_id_sent
    assert kz_original["request_id"] == rid
    assert kz_original["digest"] == request_sent["digest"]  # the bytes KZ-GPO signed
    assert _one(ru, "notice", notice_event="request_delivered")["originals"] == 1
    # ... and KZ-GPO read the report from RU-MIA's own signature.
    ru_original = _one(req, "verified_original", notice_event="executed")
    assert ru_original["kind"] == "execution_report" and ru_original["sender"] == RU
    assert ru_original["key_owner"] == RU and ru_original["in_reply_to"] == request_id_sent
    report_sent = _one(ru, "sent", kind="execution_report")
    assert ru_original["message_id"] == report_sent["message_id"]
    assert ru_original["digest"] == report_sent["digest"]  # the bytes RU-MIA signed
    assert _one(req, "notice", notice_event="executed")["status"] == "executed"

    # The hub's receipts, each verified by the node agency with the bundle verifier's code:
    # KZ-GPO's request accepted and delivered into RU-MIA's inbox, its malformed one
    # refused; RU-MIA's report accepted and delivered into KZ-GPO's.
    accepted = _one(req, "receipt_checked", receipt="acceptance", message_id=request_id_sent)
    assert accepted["entry_kind"] == "request" and accepted["actor"] == KZ
    assert accepted["digest"] == request_sent["digest"]
    delivery = _one(req, "receipt_checked", receipt="delivery", message_id=request_id_sent)
    assert delivery["entry_kind"] == "delivered" and delivery["actor"] == RU
    assert _one(req, "receipt_checked", receipt="rejection")["entry_kind"] == "refused"
    reported = _one(ru, "receipt_checked", receipt="delivery",
                    message_id=report_sent["message_id"])
    assert reported["actor"] == KZ and reported["about"][0]["digest"] == report_sent["digest"]
    assert _one(req, "done")["bad_receipts"] == 0 == _one(ru, "done")["bad_receipts"]

    # Each side acknowledged the notices it handled in a retrieval of its own signing (the
    # request_delivered and executed among them): the hub's record holds each as retrieved
    # by its recipient (one acknowledged after its `done` line may be there too).
    acknowledged = {entry_id("sco-2010", rid, who, n["message_id"], RETRIEVED)
                    for who, lines in ((KZ, req), (RU, ru))
                    for n in _one(lines, "done")["retrieved"] if n["request_id"] == rid}
    assert {e.actor for e in await _retrieved(stack_settings, rid, set())} <= {KZ, RU}
    assert len(acknowledged) >= 2, report
    recorded = await _retrieved(stack_settings, rid, acknowledged)
    assert acknowledged <= {e.entry_id for e in recorded}

    # The tampered message: bad_signature naming the kid and the SHA-256 of its signing input.
    tampered = _one(req, "sent", tampered=True)
    bad = _one(req, "error_checked", expected="bad_signature")
    assert bad["problem"] == "bad_signature"
    assert bad["refused_message_id"] == tampered["message_id"]
    reasons = " ".join(bad["reasons"])
    assert _env(stack_settings, directory, KZ, RU, rid)["TF_KID"] in reasons
    assert re.search(r"\b[0-9a-f]{64}\b", reasons)
    assert tampered["signing_input_sha256"] in reasons
    # The wrong JSON type: malformed, naming body.urgent.
    wrong = _one(req, "sent", wrong_type="body.urgent")
    malformed = _one(req, "error_checked", expected="malformed")
    assert malformed["refused_message_id"] == wrong["message_id"]
    assert any("body.urgent" in r for r in malformed["reasons"])


async def _retrieved(settings: Settings, request_id: str, wanted: set[str]) -> list[Entry]:
    """The request's retrieved entries in the record, once it holds the ``wanted`` ids
    (its gateway writes a retrieval a moment after the broker confirmed it), or after 15 s."""
    found: list[Entry] = []
    for _ in range(30):
        found = [e for e in await record_entries(settings, request_id)
                 if e.kind == RETRIEVED]
        if wanted <= {e.entry_id for e in found}:
            break
        await asyncio.sleep(0.5)
    return found


@pytest.mark.skipif(not VECTORS.is_dir(), reason="docs/contract/vectors not published yet")
def test_published_vectors_check_out_with_npm_jose() -> None:
    node = _node()
    done = subprocess.run([node, str(AGENCY / "vectors.mjs"), str(VECTORS)], cwd=AGENCY,
                          capture_output=True, timeout=60)
    lines = _lines(done.stdout)
    summary = _one(lines, "summary")
    assert done.returncode == 0, f"{summary['mismatches']}\n{done.stderr.decode()}"
    assert summary["checked"] >= MIN_VECTORS
    assert summary["valid"] >= 1 and summary["invalid"] >= 1


def _notice(request_id: str, originals: list[str], sender: str = "HUB") -> bytes:
    return json.dumps({
        "schema_version": "2", "message_id": f"notice-{uuid.uuid4()}", "kind": "notice",
        "request_id": request_id, "treaty_id": "sco-2010", "sender": sender,
        "recipient": RU, "sent_at": datetime.now(UTC).isoformat(),
        "body": {"event": "request_delivered", "status": "sent", "requesting": KZ,
                 "requested": RU, "originals": originals},
    }).encode()


def _request(request_id: str, sender: str = KZ) -> bytes:
    return json.dumps({
        "schema_version": "2", "message_id": str(uuid.uuid4()), "kind": "request",
        "request_id": request_id, "treaty_id": "sco-2010", "sender": sender,
        "recipient": RU, "sent_at": datetime.now(UTC).isoformat(), "body": request_body(),
    }).encode()


def _replace_payload(token: str, payload: bytes) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64url(payload)}.{signature}"


def test_node_agency_refuses_what_does_not_verify(tmp_path: Path) -> None:
    """Deliveries the hub never sent (forged, altered, passing on a forged original) are
    reported with their problem by the node agency, never taken; a newer directory signed
    by a hub key held is taken, one signed by another key is refused."""
    node = _node()
    now = datetime.now(UTC)
    hub, old_hub = SigningKey.generate("HUB-2026-2"), SigningKey.generate("HUB-2026-1")
    kz, ru = SigningKey.generate("KZ-GPO-2026-1"), SigningKey.generate("RU-MIA-2026-1")

    def public(key: SigningKey, owner: str, **extra: Any) -> PublicKey:
        return PublicKey(key_id=key.key_id, owner=owner, public_key=key.public_key,
                         valid_from=now - timedelta(days=1), **extra)

    ring = KeyRing(keys=[public(hub, "HUB"), public(old_hub, "HUB", revoked_at=now),
                         public(kz, KZ), public(ru, RU)])
    trusted = tmp_path / "directory.json"
    trusted.write_text(sign_directory(ring, [hub], now - timedelta(minutes=5)))
    rid = new_request_id()
    original = sign(_request(rid), kz)
    cases = {
        "good": sign(_notice(rid, [original]), hub),
        "altered_original": sign(_notice(rid, [_replace_payload(
            original, _request(rid).replace(b"Bank statements", b"Phone records"))]), hub),
        "original_by_another_owner": sign(_notice(rid, [sign(_request(rid, sender=KZ), ru)]),
                                          hub),
        "original_of_another_request": sign(_notice(rid, [sign(_request(rid + "-X"), kz)]),
                                            hub),
        "notice_signed_by_an_authority": sign(_notice(rid, []), kz),
        "notice_naming_another_sender": sign(_notice(rid, [], sender=KZ), hub),
        "notice_altered": _replace_payload(sign(_notice(rid, []), hub),
                                           _notice(rid, [original])),
        "notice_by_revoked_hub_key": sign(_notice(rid, []), old_hub),
        "plain_json": _notice(rid, []).decode(),
        "alg_none": f"{b64url(json.dumps({'alg': 'none', 'kid': hub.key_id}).encode())}."
                    f"{b64url(_notice(rid, []))}.{b64url(b'x')}",
        "embedded_jwk": ".".join([b64url(json.dumps({"alg": "EdDSA", "kid": hub.key_id,
                                                     "jwk": {"kty": "OKP"}}).encode()),
                                  *sign(_notice(rid, []), hub).split(".")[1:]]),
    }
    deliveries = [{"name": n, "type": "notice", "body": b} for n, b in cases.items()]
    newer = KeyRing(keys=[*ring.keys, public(SigningKey.generate("CN-MPS-2026-1"), "CN-MPS")])
    deliveries += [
        {"name": "directory_by_an_authority", "type": "key_directory",
         "body": sign_directory(newer, [kz], now)},
        {"name": "directory_newer", "type": "key_directory",
         "body": sign_directory(newer, [hub], now)},
        {"name": "directory_older", "type": "key_directory",
         "body": sign_directory(ring, [hub], now - timedelta(hours=1))},
    ]
    spec = tmp_path / "deliveries.json"
    spec.write_text(json.dumps({"directory": str(trusted), "deliveries": deliveries}))
    done = subprocess.run([node, str(AGENCY / "deliveries.mjs"), str(spec)], cwd=AGENCY,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    got = {line["name"]: line for line in _lines(done.stdout)}
    assert got["good"]["ok"] and got["good"]["originals"] == [{"sender": KZ,
                                                               "kid": kz.key_id}]
    expected = {
        "altered_original": "bad_original", "original_by_another_owner": "bad_original",
        "original_of_another_request": "bad_original",
        "notice_signed_by_an_authority": "unknown_key",
        "notice_naming_another_sender": "unknown_key", "notice_altered": "bad_signature",
        "notice_by_revoked_hub_key": "unknown_key", "plain_json": "unsigned",
        "alg_none": "bad_signature", "embedded_jwk": "bad_signature",
        "directory_by_an_authority": "bad_signature",
    }
    assert {n: (got[n]["ok"], got[n].get("problem")) for n in expected} == {
        n: (False, p) for n, p in expected.items()}, got
    assert got["directory_newer"]["ok"] and got["directory_newer"]["taken"]
    assert got["directory_newer"]["keys"] == 5
    assert got["directory_older"]["ok"] and not got["directory_older"]["taken"]

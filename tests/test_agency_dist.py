"""The agency client as its own distribution (``agency/pyproject.toml``): the wheel holds
the wire modules only and installs without Temporal or the hub; an agency program on it
alone talks to the real stack, and its inbox by default acks a notice only once the program
handled it, so a crash while handling loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.factories import new_message_id, new_request_id, request_body
from treatyflow import constants as c
from treatyflow.keys import private_key_path, read_registry
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "tests" / "agency_dist" / "agency.py"
KZ, RU = "KZ-GPO", "RU-MIA"

pytestmark = pytest.mark.dist


@pytest.fixture(scope="module")
def agency_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(out), str(ROOT / "agency")], check=True, timeout=300)
    (wheel,) = out.glob("treatyflow_agency-*.whl")
    return wheel


@pytest.fixture(scope="module")
def agency_python(agency_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel and what its metadata asks for, nothing else."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(agency_wheel)],
                   check=True, timeout=600)
    return venv / "bin" / "python"


def test_the_wheel_holds_the_wire_modules_and_asks_for_no_temporal(agency_wheel: Path) -> None:
    with zipfile.ZipFile(agency_wheel) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    modules = {n for n in names if not n.startswith("treatyflow_agency-")}
    assert {f"treatyflow/agency/{m}.py" for m in ("client", "signing", "wire")} <= modules
    assert "treatyflow/schemas/messages.py" in modules  # the envelope models it parses
    tops = {n.split("/")[1] for n in modules if n.count("/") >= 1}
    assert tops <= {"__init__.py", "constants.py", "agency", "schemas"}, tops
    requires = [line.split(":", 1)[1].strip().lower() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    assert {r.split(">")[0].split("<")[0].split("=")[0] for r in requires} == {
        "aio-pika", "pydantic", "cryptography", "joserfc", "structlog"}


def test_installed_alone_it_verifies_the_published_vectors(agency_python: Path) -> None:
    script = (
        "import json, pathlib, sys\n"
        "from treatyflow.agency import KeyRing, PublicKey, SignatureError, verify\n"
        "out = []\n"
        "for f in sorted(pathlib.Path(sys.argv[1]).glob('*.json')):\n"
        "    v = json.loads(f.read_text())\n"
        "    if v['kind'] == 'key_directory' or v['problem'] == 'malformed': continue\n"
        "    try:\n"
        "        verify(v['jws'], KeyRing(keys=[PublicKey.from_jwk(v['jwk'])]),"
        " signer=v['signer']); got = None\n"
        "    except SignatureError as e: got = e.problem\n"
        "    if v['kind'] == 'record_receipt':\n"
        "        from treatyflow.agency.receipts import verify_receipts\n"
        "        (r,) = verify_receipts(v['jws'], KeyRing(keys=[PublicKey.from_jwk(v['jwk'])]))\n"
        "        got = None if r.kind == 'acceptance' else 'wrong'\n"
        "    out.append([v['name'], v['problem'], got])\n"
        "print(json.dumps(out))\n")
    done = subprocess.run([str(agency_python), "-c", script,
                           str(ROOT / "docs" / "contract" / "vectors")],
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    checked = json.loads(done.stdout)
    assert len(checked) >= 40
    assert [c for c in checked if c[1] != c[2]] == []
    assert "valid-record-receipt" in {c[0] for c in checked}  # its proofs, checked alone


def _env(settings: Settings, tmp: Path, request_id: str, request: dict[str, Any]
         ) -> dict[str, str]:
    secrets = settings.secrets_dir
    registry = read_registry(secrets)
    current = [k for k in registry.of(KZ) if k.current][-1]
    hub = tmp / "hub.jwks"
    hub.write_text(json.dumps(registry.only([c.HUB_SENDER]).jwks()))
    directory = tmp / "directory.json"
    subprocess.run([str(Path(sys.executable).parent / "treatyflow"), "keys", "export",
                    "--jwks", "-o", str(directory)], check=True, capture_output=True,
                   env={**os.environ, **settings.to_env()}, timeout=60)
    return {
        "PATH": "/usr/bin:/bin",
        "TF_AMQP_URL": settings.amqp_url(KZ, read_passwords(secrets)[KZ]),
        "TF_AUTHORITY": KZ,
        "TF_KID": current.key_id,
        "TF_KEY_FILE": str(private_key_path(secrets, KZ, current.key_id)),
        "TF_HUB_JWKS": str(hub),
        "TF_DIRECTORY": str(directory),
        "TF_REQUEST_ID": request_id,
        "TF_REQUEST": json.dumps(request),
    }


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.stack
def test_an_agency_on_the_distribution_alone_loses_no_notice_when_it_crashes(
    agency_python: Path, stack_settings: Settings, tmp_path: Path
) -> None:
    rid = new_request_id()
    request = {"schema_version": "2", "message_id": new_message_id(), "kind": "request",
               "request_id": rid, "treaty_id": "sco-2010", "sender": KZ, "recipient": RU,
               "sent_at": datetime.now(UTC).isoformat(), "body": request_body()}
    env = _env(stack_settings, tmp_path, rid, request)

    first = subprocess.run([str(agency_python), str(PROGRAM), "send"], env=env, cwd="/",
                           capture_output=True, text=True, timeout=120)
    lines = _lines(first.stdout)
    assert first.returncode == 3, first.stdout + first.stderr  # died holding the notice
    assert lines[0] == {"event": "isolated", "temporalio": False, "hub": False}
    sent = next(line for line in lines if line["event"] == "sent")
    assert sent["message_id"] == request["message_id"] and sent["jws"].count(".") == 2
    held = next(line for line in lines if line["event"] == "notice")

    again = subprocess.run([str(agency_python), str(PROGRAM), "receive"], env=env, cwd="/",
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    redelivered = next(line for line in _lines(again.stdout) if line["event"] == "notice")
    assert redelivered == held  # the same notice, verified again, now handled and acked

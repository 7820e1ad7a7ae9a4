"""The README's examples for agencies are valid messages under today's models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from treatyflow.schemas.messages import INBOUND, OUTBOUND

README = (Path(__file__).parent.parent / "README.md").read_text()
EXAMPLES = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", README, re.S)]


def test_readme_shows_every_kind_of_direction() -> None:
    kinds = {e["kind"] for e in EXAMPLES}
    assert {"request", "refusal", "notice", "error"} <= kinds


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["kind"] for e in EXAMPLES])
def test_readme_example_parses(example: dict) -> None:  # type: ignore[type-arg]
    adapter = OUTBOUND if example["kind"] in ("notice", "error") else INBOUND
    parsed = adapter.validate_json(json.dumps(example), strict=True)
    assert parsed.model_dump(mode="json")["body"].keys() == example["body"].keys()


def test_readme_lists_every_problem_code_the_gateway_uses() -> None:
    source = "".join(p.read_text() for p in (Path(__file__).parent.parent / "treatyflow")
                     .rglob("*.py"))
    codes = set(re.findall(r'Refusal\(\s*"([a-z_]+)"', source))
    assert codes, "no refusal codes found"
    missing = {code for code in codes if f"`{code}`" not in README}
    assert not missing, f"README does not document {missing}"


def test_readme_signing_example_is_the_jws_the_test_key_gives() -> None:
    """An agency outside Python reproduces the worked example: the payload as written, the
    seeded test key, and the compact JWS they give; it verifies, and its payload is the
    very bytes shown."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from treatyflow.agency.signing import KeyRing, PublicKey, SigningKey, sign, verify

    section = README[README.index("A worked example"):]
    seed = re.search(r"SHA-256 of `([^`]+)`", section)
    assert seed is not None
    payload, token = re.findall(r"```text\n(.*?)\n```", section, re.S)[:2]
    key = SigningKey("RU-MIA-2026-1", Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(seed.group(1).encode()).digest()))
    assert sign(payload.encode(), key) == token
    ring = KeyRing(keys=[PublicKey(key_id=key.key_id, owner="RU-MIA",
                                   public_key=key.public_key, valid_from="2026-01-01T00:00:00Z")])
    assert verify(token, ring, signer="RU-MIA").payload == payload.encode()

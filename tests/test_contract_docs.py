"""The manual's examples for agencies are valid messages under today's models, and its
reference pages name every problem code, notice event and search attribute the code uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from treatyflow import constants as c
from treatyflow.contract.asyncapi import problem_codes
from treatyflow.schemas.messages import INBOUND, OUTBOUND, TRANSFER_KINDS
from treatyflow.schemas.record import HUB_KINDS, HUB_MESSAGES, RECORD_KINDS, RECORD_MESSAGES
from treatyflow.workflows.transfer import TransitStatus

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
MANUAL = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
AGENCIES = DOCS / "agencies"
# Every JSON block of the agencies' pages is a message; elsewhere, those that name a kind
# (an operator's page may show other JSON, such as an audit line).
EXAMPLES = [(path, example) for path in MANUAL
            for example in map(json.loads, re.findall(r"```json\n(.*?)```", path.read_text(), re.S))
            if path.is_relative_to(AGENCIES) or (isinstance(example, dict) and "kind" in example)]
REFERENCE = DOCS / "reference"


def _id(item: tuple[Path, dict]) -> str:  # type: ignore[type-arg]
    path, example = item
    return f"{path.relative_to(ROOT)}:{example.get('kind')}"


def test_the_docs_show_every_kind_of_direction() -> None:
    kinds = {e["kind"] for _, e in EXAMPLES}
    assert {"request", "refusal", "receipt", "notice", "error"} <= kinds


def test_the_transfer_page_has_one_example_per_transfer_kind() -> None:
    """docs/agencies/transfer.md promises one example per kind."""
    page = AGENCIES / "transfer.md"
    shown = {e["kind"] for path, e in EXAMPLES if path == page}
    assert shown == set(TRANSFER_KINDS)


@pytest.mark.parametrize("item", EXAMPLES, ids=[_id(i) for i in EXAMPLES])
def test_doc_example_parses(item: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, example = item
    adapter: Any = (OUTBOUND if example["kind"] in ("notice", "error") else
                    HUB_MESSAGES if example["kind"] in HUB_KINDS else
                    RECORD_MESSAGES if example["kind"] in RECORD_KINDS else INBOUND)
    parsed = adapter.validate_json(json.dumps(example), strict=True)
    assert parsed.model_dump(mode="json")["body"].keys() == example["body"].keys()


def _table_codes(page: Path) -> set[str]:
    """The codes in the first column of a reference page's tables (`code` or `a`, `b`)."""
    rows = re.findall(r"^\| (`[^|]+`) \|", page.read_text(), re.M)
    return {code for row in rows for code in re.findall(r"`([A-Za-z_]+)`", row)}


def test_every_problem_code_the_hub_answers_with_has_its_row() -> None:
    codes = set(problem_codes())
    assert len(codes) > 10, "no refusal codes found"
    documented = _table_codes(REFERENCE / "problems.md")
    assert codes - documented == set(), "docs/reference/problems.md lacks these"
    assert documented - codes == set(), "docs/reference/problems.md names codes no longer used"


def _notice_events() -> set[str]:
    """Every event a workflow's lifecycle notifies, as written in the code."""
    source = "".join(p.read_text() for p in (ROOT / "treatyflow" / "workflows").rglob("*.py"))
    # ``_on_time`` notifies the event it is given (a deadline's mark withdrawn).
    events = set(re.findall(r'(?:_notify|_on_time)\(\s*[\w.]+,\s*"([a-z_]+)"', source))
    for pair in re.findall(r'event = "([a-z_]+)" if .+ else "([a-z_]+)"', source):
        events |= set(pair)
    return events | {s.value for s in TransitStatus}  # transits notify their status


def test_every_notice_event_has_its_row() -> None:
    events = _notice_events()
    assert {"request_delivered", "consent_granted", "relay_requested", "transit_granted"} <= events
    documented = _table_codes(REFERENCE / "notices.md")
    assert events - documented == set(), "docs/reference/notices.md lacks these"
    assert documented - events == set(), "docs/reference/notices.md names events no longer sent"


def test_every_search_attribute_has_its_row_with_its_type() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", (REFERENCE / "search-attributes.md")
                           .read_text(), re.M))
    assert rows == c.SEARCH_ATTRIBUTE_TYPES


def test_signing_example_is_the_jws_the_test_key_gives() -> None:
    """An agency outside Python reproduces the worked example: the payload as written, the
    seeded test key, and the compact JWS they give; it verifies, and its payload is the
    very bytes shown."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from treatyflow.agency.signing import KeyRing, PublicKey, SigningKey, sign, verify

    page = (AGENCIES / "signing.md").read_text()
    section = page[page.index("A worked example"):]
    seed = re.search(r"SHA-256 of `([^`]+)`", section)
    assert seed is not None
    payload, token = re.findall(r"```text\n(.*?)\n```", section, re.S)[:2]
    key = SigningKey("RU-MIA-2026-1", Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(seed.group(1).encode()).digest()))
    assert sign(payload.encode(), key) == token
    ring = KeyRing(keys=[PublicKey(key_id=key.key_id, owner="RU-MIA",
                                   public_key=key.public_key, valid_from="2026-01-01T00:00:00Z")])
    assert verify(token, ring, signer="RU-MIA").payload == payload.encode()

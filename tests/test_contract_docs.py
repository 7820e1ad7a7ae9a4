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
    parsed = adapter.validate_python(example)
    assert parsed.model_dump(mode="json")["body"].keys() == example["body"].keys()


def test_readme_lists_every_problem_code_the_gateway_uses() -> None:
    source = "".join(p.read_text() for p in (Path(__file__).parent.parent / "treatyflow")
                     .rglob("*.py"))
    codes = set(re.findall(r'Refusal\(\s*"([a-z_]+)"', source))
    assert codes, "no refusal codes found"
    missing = {code for code in codes if f"`{code}`" not in README}
    assert not missing, f"README does not document {missing}"


def test_readme_signing_example_gives_the_canonical_bytes_it_shows() -> None:
    """An agency outside Python reproduces the canonical form from the README: the worked
    example's bytes must be what the hub verifies."""
    from treatyflow.agency.signing import canonical
    from treatyflow.schemas.messages import parse_inbound

    section = README[README.index("A worked example"):]
    sent, signed = re.findall(r"```text\n(.*?)\n```", section, re.S)[:2]
    assert canonical(parse_inbound(sent)) == signed.encode()

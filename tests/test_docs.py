"""The documentation as a reader meets it: a short front page, links that lead somewhere
in the repository, nothing pointing outside it, and pages that say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from treatyflow.schemas.envelope import MIGRATION_NOTE
from treatyflow.securitycheck.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "deploy" / "README.md", ROOT / "BENCHMARKS.md",
         *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(page: Path) -> str:
    """A page without its fenced code blocks (code is not links)."""
    return FENCE.sub("", page.read_text())


def _anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(page), re.M):
        text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
        out.add(text.replace(" ", "-"))
    return out


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page)) if not re.match(r"[a-z]+:", t)]


def test_the_front_page_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 260, f"README.md has {lines} lines; the manual lives in docs/"


def test_the_front_page_starts_with_the_commands() -> None:
    first = README.read_text().split("```")[1]
    for command in ("make demo", "make test", "make test-unit"):
        assert f"\n{command} " in first


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves_to_a_file_in_the_repo(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_relative_to(ROOT) or not file.is_file():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no such heading)")
    assert broken == []


# The agreed design and the treaties live beside the project, not in it: a user who
# clones the repository has neither, so nothing may send them there.
OUTSIDE = re.compile(r"DESIGN\.md|\.\./shared")


def test_nothing_points_outside_the_repo() -> None:
    files = [*PAGES, ROOT / "Makefile",
             ROOT / "docker-compose.yml", ROOT / "Dockerfile", *sorted(ROOT.glob("scripts/*")),
             *sorted((ROOT / "treatyflow").rglob("*.py")), *sorted((ROOT / "tests").glob("*.py"))]
    outside = [str(f.relative_to(ROOT)) for f in files if OUTSIDE.search(f.read_text())]
    assert outside == []


def test_the_migration_note_points_to_a_heading_that_exists() -> None:
    """Every version-1 message is answered with this note: where it sends the agency
    must be there."""
    found = re.search(r"\((docs/[\w/.-]+\.md), '([^']+)'\)", MIGRATION_NOTE)
    assert found is not None, MIGRATION_NOTE
    page = ROOT / found.group(1)
    assert f"\n## {found.group(2)}\n" in page.read_text()


def test_the_security_check_page_documents_every_code_and_counts_the_cases() -> None:
    page = (ROOT / "docs" / "operators" / "security-check.md").read_text()
    gateway = [case for case in CATALOGUE if case.layer == "gateway"]
    codes = {case.problem for case in gateway}
    assert [code for code in sorted(codes) if f"`{code}`" not in page] == []
    assert re.search(rf"\({len(CATALOGUE)} today\)", page), "the count of cases"
    assert re.search(rf"\b{len(gateway)} of them reach the gateway\b", page)
    assert re.search(rf"\bThe other {len(CATALOGUE) - len(gateway)} are refused by "
                     r"RabbitMQ\b", page)

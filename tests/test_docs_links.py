"""The repository documents itself: every relative link of README.md and docs/*.md leads to a
file of the repository, every document a source file cites exists, and every section of
docs/design.md that the code cites is a heading there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CITED = re.compile(r"\bdocs/[A-Za-z0-9_.-]+\.md\b")
SECTION = re.compile(r"docs/design\.md,?\s+section\s+(\d+(?:\.\d+)?)")
SOURCES = ("aam_core", "app", "worker", "bench", "tests", "scripts", "docker")


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _sources() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    for folder in SOURCES:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".sh", ".html",
                  ".js", ".md", ".toml", ".yml"} and p.is_file()]  # fmt: skip
    return files


def test_every_relative_link_of_the_documents_leads_to_a_file() -> None:
    broken = []
    for document in _documents():
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = (document.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert broken == []


def test_every_cited_document_exists_and_none_is_outside_the_repository() -> None:
    missing, outside = [], []
    for source in _sources():
        text = source.read_text(encoding="utf-8", errors="replace")
        for cited in set(CITED.findall(text)):
            if not (ROOT / cited).is_file():
                missing.append(f"{source.relative_to(ROOT)}: {cited}")
        # the team's reference documents are not part of the repository
        if source != Path(__file__) and re.search(r"(?<!docs/)\b(API|DESIGN|STYLE)\.md\b", text):
            outside.append(str(source.relative_to(ROOT)))
    assert missing == [] and outside == []


def test_every_cited_section_of_the_design_is_a_heading() -> None:
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", (ROOT / "docs" / "design.md")
                              .read_text(encoding="utf-8"), re.MULTILINE))  # fmt: skip
    cited = {
        (str(source.relative_to(ROOT)), number)
        for source in _sources()
        for number in SECTION.findall(source.read_text(encoding="utf-8", errors="replace"))
    }
    assert cited, "the code cites sections of docs/design.md"
    assert sorted(c for c in cited if c[1] not in headings) == []

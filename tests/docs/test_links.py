"""The docs' links stay inside the repository and lead somewhere.

A link that leaves the checkout (`../shared/...`) works on one machine only,
and a heading renamed breaks every `page.md#heading` that named it; a reader
finds out only by clicking. Checked: README.md and docs/*.md, every relative
markdown link, and the anchor of links to markdown pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
# [text](target) and [text](target "title"); images too. Code spans are removed first.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCED = re.compile(r"```.*?```", re.DOTALL)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def links(page: Path) -> list[str]:
    return LINK.findall(CODE.sub("", page.read_text(encoding="utf-8")))


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the page's headings: lower case, punctuation dropped, spaces to -."""
    text = FENCED.sub("", page.read_text(encoding="utf-8"))
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n, unique = 1, slug
        while unique in found:
            unique, n = f"{slug}-{n}", n + 1
        found.add(unique)
    return found


def broken(page: Path, *, root: Path = REPO) -> list[str]:
    """Each relative link of `page` that leaves the repository or leads nowhere, and why."""
    problems = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: outside the repository ({resolved})")
        elif not resolved.exists():
            problems.append(f"{target}: no such file ({resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    assert broken(page) == []


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The checker itself: each kind of broken link is reported, good ones are not."""
    assert "running-the-suite-locally-edgegate-up" in anchors(REPO / "docs" / "development.md")
    assert "docs/architecture.md" in links(REPO / "README.md")
    docs = tmp_path / "repo" / "docs"
    docs.mkdir(parents=True)
    (docs / "other.md").write_text("# Other page\n\n## Its `part` (two)\n", encoding="utf-8")
    page = docs / "page.md"
    page.write_text(
        "[out](../../elsewhere.md) [gone](missing.md) [ok](other.md#its-part-two) "
        "[bad anchor](other.md#nowhere) [web](https://example.com) `[code](x.md)`\n",
        encoding="utf-8",
    )
    problems = broken(page, root=tmp_path / "repo")
    assert [p.split(":")[0] for p in problems] == [
        "../../elsewhere.md",
        "missing.md",
        "other.md#nowhere",
    ]

"""The README and docs/*.md point at things that exist: every relative link and image (the file, and the heading
an anchor names), every repository path written as code (`tests/...`, `components/...`), and every test named as
code (`test_...`). The README's parity table linked two screenshots no test made; docs/monitoring.md named a module
that had moved."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from tests.support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
PLACEHOLDER = set("*{}<>$|")


def _prose(text: str) -> str:
    """The text without fenced code blocks (a link or a path in a shell example is not a claim about the tree)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text (links and code reduced to their words), lower case, without
    punctuation except '-' and '_', spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(_prose(path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def _targets(text: str) -> list[str]:
    prose = INLINE_CODE.sub("", _prose(text))
    return LINK.findall(prose) + REFERENCE.findall(prose)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def broken_links(doc: Path) -> list[str]:
    """Relative links and images of ``doc`` whose file, or whose heading (``#anchor``), does not exist."""
    broken = []
    for target in _targets(doc.read_text()):
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no {_name(file)}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {_name(file)}")
    return broken


def missing_names(doc: Path, root: Path = ROOT) -> list[str]:
    """Repository paths (``tests/x.py``, ``components/...``) and test names (``test_...``) written as code in
    ``doc`` that do not exist under ``root``."""
    code = INLINE_CODE.findall(_prose(doc.read_text()))
    top = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} | {".ci"}
    missing = []
    for span in code:
        path = span.split("::")[0].rstrip("/")
        if "/" in path and path.split("/")[0] in top and not PLACEHOLDER & set(path) and " " not in path:
            if not (root / path).exists():
                missing.append(span)
    tests_text = "\n".join(p.read_text() for p in (root / "tests").rglob("*.py"))
    for name in sorted({s for s in code if re.fullmatch(r"test_\w+", s)}):
        if not re.search(rf"^\s*(async\s+)?def {name}\(", tests_text, re.M):
            missing.append(name)
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_relative_links_and_anchors_resolve(doc):
    assert not broken_links(doc), f"{_name(doc)}: {broken_links(doc)}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_repository_paths_and_test_names_in_code_exist(doc):
    assert not missing_names(doc), f"{_name(doc)} names what does not exist: {missing_names(doc)}"


def test_the_checks_find_what_is_missing(tmp_path):
    """The checks above, on a small tree with one good and one bad of each kind."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_here():\n    pass\n")
    (tmp_path / "there.md").write_text("# A heading, with `code`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n[ok](there.md#a-heading-with-code) [gone](missing.png) [bad anchor](there.md#nope) [self](#top)\n"
        "![shot](there.md) [web](https://example.com) `[not a link](nowhere.md)`\n"
        "`tests/test_x.py` `tests/test_y.py` `test_here` `test_gone` `models/{run_id}/` `tests/*.py`\n"
        "```\n[in a fence](nowhere.md) `tests/in_fence.py`\n```\n"
    )
    assert broken_links(page) == ["missing.png: no missing.png", "there.md#nope: no heading #nope in there.md"]
    assert missing_names(page, root=tmp_path) == ["tests/test_y.py", "test_gone"]
    assert slug("Where the old dashboard's views are now") == "where-the-old-dashboards-views-are-now"
    assert slug("Results on real data (2011 Q1)") == "results-on-real-data-2011-q1"

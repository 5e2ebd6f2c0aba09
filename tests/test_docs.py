"""The docs cannot drift: the generated references match the code, the README stays short, links resolve."""

import importlib.util
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["cli", "api"])
def test_generated_reference_is_current(name):
    gen = _gen_docs()
    path, render = {"cli": (gen.CLI_MD, gen.render_cli), "api": (gen.API_MD, gen.render_api)}[name]
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run `make docs`"
    assert path.read_text() == render(), f"{path.relative_to(ROOT)} is stale: run `make docs` and commit it"


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n < 150, f"README.md has {n} lines (limit 149): move detail into docs/"


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)


def _pages():
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, duplicates numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = _FENCE.sub("", page.read_text())
    bad = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            bad.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not bad, f"{page.relative_to(ROOT)}: broken links: " + "; ".join(bad)


def test_guides_are_linked_from_readme():
    readme = (ROOT / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"

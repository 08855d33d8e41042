"""The README and the documentation site under docs/: links, navigation, length, wording.

No network: links to other sites are not followed; relative links must name files of the
repository. The strict MkDocs build itself runs in ``.ci/run`` (and below when MkDocs is
installed), which also checks anchors inside the site.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MKDOCS_YML = REPO / "mkdocs.yml"
README_MAX_LINES = 220

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
FORBIDDEN = [
    (re.compile(r"\.\./shared"), "a path outside the repository (../shared)"),
    (re.compile(r"\bissue\s+#?[0-9]", re.IGNORECASE), "development history (an issue number)"),
    (re.compile(r"\b(this|last|next|earlier|previous) round\b|\ba round (ago|before|earlier)\b",
                re.IGNORECASE), "development history (a round)"),
    (re.compile(r"\bthis session\b", re.IGNORECASE), "development history (a session)"),
]


def doc_files() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) outside fenced code blocks, with inline code removed."""
    out, in_fence = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append((number, INLINE_CODE.sub("", line)))
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative Markdown link or image in ``path``."""
    links = []
    for number, line in prose_lines(path):
        for match in LINK.finditer(line):
            target = match.group(1)
            if EXTERNAL.match(target) or target.startswith("#"):
                continue
            links.append((number, target))
    return links


def nav_pages(nav: object) -> list[str]:
    """Every page path named in an MkDocs ``nav`` tree."""
    if isinstance(nav, str):
        return [] if EXTERNAL.match(nav) else [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return []


def test_every_relative_link_resolves() -> None:
    broken = []
    for path in doc_files():
        for number, target in relative_links(path):
            file_part = target.split("#", 1)[0].split("?", 1)[0]
            if not file_part:
                continue
            resolved = (path.parent / file_part).resolve()
            if not resolved.exists():
                broken.append(f"{path.relative_to(REPO)}:{number}: {target}")
            elif path.is_relative_to(DOCS) and not resolved.is_relative_to(DOCS):
                broken.append(f"{path.relative_to(REPO)}:{number}: {target} leaves docs/ "
                              "(the site cannot link there; name the file in code instead)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_links_and_skips_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("See [a](a.md#x), ![b](img/b.png \"title\") and [web](https://x.org).\n"
                    "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n[c](#local)\n",
                    encoding="utf-8")
    assert relative_links(page) == [(1, "a.md#x"), (1, "img/b.png")]


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}); " \
                                  "move detail into a page under docs/"


def test_no_development_history_or_outside_paths() -> None:
    found = []
    for path in doc_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for pattern, what in FORBIDDEN:
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


def test_forbidden_phrases_are_caught() -> None:
    for text in ["see ../shared/data/real", "added in issue 11", "measured this round",
                 "a round ago", "in this session"]:
        assert any(p.search(text) for p, _ in FORBIDDEN), text
    for text in ["the first round of the search", "issue a warning", "round-robin"]:
        assert not any(p.search(text) for p, _ in FORBIDDEN), text


def test_every_nav_page_exists_and_the_build_is_strict() -> None:
    config = yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))
    assert config.get("strict") is True, "mkdocs.yml: strict must be true"
    docs_dir = REPO / config.get("docs_dir", "docs")
    pages = nav_pages(config.get("nav", []))
    assert pages, "mkdocs.yml: nav names no page"
    missing = [p for p in pages if not (docs_dir / p).is_file()]
    assert not missing, f"mkdocs.yml nav names pages that do not exist: {missing}"
    assert len(pages) == len(set(pages)), "mkdocs.yml nav names a page twice"


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    start = ci.index("# --- the README's test command (keep identical) ---")
    command = ci[start + 1]
    assert command in README.read_text(encoding="utf-8").splitlines()


def test_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="MkDocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="Material for MkDocs is not installed")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_configuration_reference_lists_every_field() -> None:
    from dataclasses import fields

    from rsray.config import Config

    sys.path.insert(0, str(DOCS / "_hooks"))
    try:
        import config_reference
    finally:
        sys.path.pop(0)
    text = config_reference.reference()
    for section in fields(Config):
        for f in fields(section.default_factory):
            assert f"`{section.name}.{f.name}`" in text, f"{section.name}.{f.name} not listed"
    page = (DOCS / config_reference.PAGE).read_text(encoding="utf-8")
    assert config_reference.MARKER in page


def spec_blocks(path: Path) -> list[tuple[str, str]]:
    """(file name, YAML) of every code block that starts with ``# study spec: NAME.yaml``."""
    blocks, current, name = [], None, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if current is None:
            if stripped.startswith("```yaml"):
                current, indent = [], line.index("```")
            continue
        if stripped.startswith("```"):
            if name:
                blocks.append((name, "\n".join(current)))
            current, name = None, ""
            continue
        text = line[indent:]
        if not current and text.startswith("# study spec:"):
            name = text.split(":", 1)[1].strip()
        current.append(text)
    return blocks


def test_study_specs_in_the_docs_load(tmp_path: Path) -> None:
    from rsray.study.spec import load_spec

    blocks = [b for page in sorted(DOCS.rglob("*.md")) for b in spec_blocks(page)]
    assert blocks, "no `# study spec:` block found in docs/"
    for name, text in blocks:
        path = tmp_path / name
        path.write_text(text + "\n", encoding="utf-8")
        spec = load_spec(path)
        assert spec.name == Path(name).stem, name


def test_search_space_table_lists_every_space() -> None:
    from rsray.tune.spaces import list_spaces

    sys.path.insert(0, str(DOCS / "_hooks"))
    try:
        import config_reference
    finally:
        sys.path.pop(0)
    table = config_reference.spaces_table()
    for name in list_spaces():
        assert f"| `{name}` |" in table, f"search space {name} missing from the docs table"
    assert config_reference.SPACES_MARKER in (DOCS / config_reference.SPACES_PAGE).read_text()

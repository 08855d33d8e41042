"""MkDocs hook: reference tables generated from rsray's source at build time.

``configuration.md`` holds :data:`MARKER`, replaced with one table per config section (field,
type, default, the docstring under the field) from ``rsray/config.py``; ``models.md`` holds
:data:`SPACES_MARKER`, replaced with the search spaces of ``rsray/tune/spaces.py`` (name and
the first paragraph of its function's docstring). Both are read with :mod:`ast`, so the tables
cannot drift from the code and the build imports neither rsray nor torch.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

MARKER = "<!-- rsray-config-reference -->"
PAGE = "configuration.md"
SPACES_MARKER = "<!-- rsray-search-spaces -->"
SPACES_PAGE = "models.md"
SOURCE_ROOT = Path(__file__).resolve().parents[2] / "rsray"
CONFIG_SOURCE = SOURCE_ROOT / "config.py"
SPACES_SOURCE = SOURCE_ROOT / "tune" / "spaces.py"


def _attribute_docs(cls: ast.ClassDef) -> list[tuple[str, str, str, str]]:
    """(name, annotation, default, docstring) of every annotated field of a dataclass."""
    out: list[tuple[str, str, str, str]] = []
    body = cls.body
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        doc = ""
        if i + 1 < len(body) and isinstance(body[i + 1], ast.Expr) \
                and isinstance(body[i + 1].value, ast.Constant) \
                and isinstance(body[i + 1].value.value, str):
            doc = body[i + 1].value.value
        out.append((node.target.id, ast.unparse(node.annotation),
                    _default(node.value) if node.value is not None else "", doc))
    return out


def _default(node: ast.expr) -> str:
    """The default as a user writes it in YAML or ``--set``."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "field":
        for kw in node.keywords:
            if kw.arg == "default_factory":
                value = kw.value
                if isinstance(value, ast.Lambda):
                    return _default(value.body)
                name = getattr(value, "id", "")
                return {"list": "[]", "dict": "{}"}.get(name, "")
            if kw.arg == "default":
                return _default(kw.value)
        return ""
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    return str(value).replace("'", "")


def _type(annotation: str) -> str:
    """``Literal["a", "b"]`` -> ``a | b``; other annotations as written."""
    match = re.fullmatch(r"Literal\[(.*)\]", annotation)
    if match:
        return " \\| ".join(v.strip().strip("'\"") for v in match.group(1).split(","))
    return annotation.replace("|", "\\|")


def _markdown(text: str) -> str:
    """A docstring as one Markdown table cell: RST roles and double backticks made plain."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    text = " ".join(text.split())
    return text.replace("|", "\\|")


def reference(source: Path = CONFIG_SOURCE) -> str:
    """The Markdown of every config section, in the order of the ``Config`` tree."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    root = classes["Config"]
    lines: list[str] = []
    for section, annotation, _, _ in _attribute_docs(root):
        cls = classes[annotation]
        lines += [f"## `{section}`", "", _markdown(ast.get_docstring(cls) or ""), "",
                  "| field | type | default | what it does |", "|---|---|---|---|"]
        for name, ann, default, doc in _attribute_docs(cls):
            shown = f"`{default}`" if default else ""
            lines.append(f"| `{section}.{name}` | {_type(ann)} | {shown} | {_markdown(doc)} |")
        lines.append("")
    return "\n".join(lines)


def _roles(text: str) -> str:
    """``:func:`cnn_fair_space``` -> ``cnn_fair``: a space function named by its space."""
    return re.sub(r":func:`~?([a-z_]+)_space`", r"`\1`", text)


def spaces_table(source: Path = SPACES_SOURCE) -> str:
    """A Markdown table of every space in ``SPACES``: name and what it searches."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    rows = ["| `tune.space` | what it searches |", "|---|---|"]
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        if getattr(target, "id", "") != "SPACES" or not isinstance(node.value, ast.Dict):
            continue
        for key, value in zip(node.value.keys, node.value.values, strict=True):
            doc = (ast.get_docstring(funcs[value.id]) or "") if isinstance(value, ast.Name) else ""
            first = doc.split("\n\n", 1)[0]
            rows.append(f"| `{key.value}` | {_markdown(_roles(first))} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs event: fill the markers of the configuration and models pages."""
    if page.file.src_uri == PAGE and MARKER in markdown:
        return markdown.replace(MARKER, reference())
    if page.file.src_uri == SPACES_PAGE and SPACES_MARKER in markdown:
        return markdown.replace(SPACES_MARKER, spaces_table())
    return markdown

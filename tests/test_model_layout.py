"""Layout rules of ``rsray.models``: families are leaves over ``models/layers/``.

A family module (``rsray/models/<family>.py``) may import building blocks from
``rsray.models.layers`` and the registry, never another family: LF-DLM and U-Net + U-TAE take
the UNetFormer and U-TAE networks from ``layers/``. Every registered name is a function
defined in its family's file, so ``grep "def <name>("`` finds it (as in timm).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import rsray.models
from rsray.models import list_models
from rsray.models.registry import model_entrypoint

MODELS = Path(rsray.models.__file__).parent
FAMILIES = sorted(p for p in MODELS.glob("*.py") if p.stem not in {"__init__", "registry"})


def _rsray_imports(path: Path) -> set[str]:
    """Every ``rsray.*`` module the file imports, at any depth of its syntax tree."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rsray"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rsray"))
    return found


def test_families_import_only_layers_and_the_registry() -> None:
    """No family imports another family (nor the package, which imports them all)."""
    assert len(FAMILIES) >= 8, FAMILIES
    offenders = {
        path.stem: sorted(
            m for m in _rsray_imports(path)
            if m.startswith("rsray.models")
            and not m.startswith("rsray.models.layers")
            and m != "rsray.models.registry"
        )
        for path in FAMILIES
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_layers_never_import_a_family() -> None:
    """Building blocks sit below the families: ``layers/`` imports no family module."""
    family_modules = {f"rsray.models.{p.stem}" for p in FAMILIES}
    for path in sorted((MODELS / "layers").glob("*.py")):
        assert not (_rsray_imports(path) & family_modules), path.name


def test_every_registered_name_is_a_function_defined_in_its_family_file() -> None:
    """``grep 'def <name>('`` finds every registered model in a family file."""
    names = list_models()
    assert len(names) > 20
    for name in names:
        fn = model_entrypoint(name)
        assert fn.__name__ == name, (name, fn.__name__)
        source = Path(inspect.getfile(fn))
        assert source.parent == MODELS, (name, source)
        assert f"def {name}(" in source.read_text(), (name, source)

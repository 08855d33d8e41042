"""The package graph, written down once and checked: imports go one way, down the layers.

Every module of ``rsray`` belongs to exactly one layer (by its dotted name, longest prefix
wins); a module may import its own layer and the layers below it (:data:`BELOW`, closed
transitively), never one above or beside it. Imports are read with ``ast`` at every depth of a
module, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import rsray

PACKAGE = Path(rsray.__file__).parent

LAYERS: dict[str, tuple[str, ...]] = {
    # foundation: typed config, errors, storage URIs, terminal, Ray start-up, secret guard
    "base": ("rsray", "rsray.errors", "rsray.config", "rsray.storage", "rsray.security",
             "rsray.console", "rsray.runtime", "rsray.reaper", "rsray.presets",
             "rsray.cliargs"),
    # the dataset contract, one package per dataset (reader + synthetic twin), the registry
    "sources": ("rsray.data", "rsray.data.schema", "rsray.data.splits", "rsray.data.sources",
                "rsray.data.registry"),
    # Parquet shards + manifest, and `rsray prepare` writing them
    "shards": ("rsray.data.shards", "rsray.data.prepare", "rsray.data.groups"),
    # Ray Data input: decode plan -> Arrow decoding -> augmentation -> device finalisation
    "pipeline": ("rsray.data.plan", "rsray.data.decode", "rsray.data.augment",
                 "rsray.data.finalize", "rsray.data.datasets", "rsray.data.passes",
                 "rsray.data.stream"),
    # fusion model families over shared layers, the registry
    "models": ("rsray.models",),
    # the resolved run, the worker entry and its step helpers, losses, metrics, checkpoints
    "train": ("rsray.train",),
    # a checkpoint on a split: metrics and predictions
    "evaluate": ("rsray.evaluate",),
    # multi-step training recipes of a paper
    "recipes": ("rsray.recipes",),
    # search spaces, the Tuner, leaderboards, tracking
    "tune": ("rsray.tune",),
    # benchmarks of ingest, training and Tune overhead
    "bench": ("rsray.bench",),
    # arms x factors x seeds: search, retrain, evaluate, statistics
    "study": ("rsray.study",),
    # tables and figures read from a study's records
    "report": ("rsray.report",),
    # cluster operations: dashboards, Prometheus, job submission
    "ops": ("rsray.ops",),
    # command-line entry points (argparse glue): may import anything, imported by nothing else
    "cli": ("rsray.cli", "rsray.evaluate.cli", "rsray.study.cli"),
}
"""Layer -> the module prefixes it holds."""

INIT_ONLY = ("rsray", "rsray.data")
"""Names in :data:`LAYERS` that hold only the package's own ``__init__``, not its submodules."""

BELOW: dict[str, tuple[str, ...]] = {
    "base": (),
    "sources": ("base",),
    "shards": ("sources",),
    "pipeline": ("shards",),
    "models": ("base",),
    "train": ("pipeline", "models"),
    "evaluate": ("train",),
    "recipes": ("evaluate",),
    "tune": ("train",),
    "bench": ("tune",),
    "study": ("tune", "evaluate", "recipes"),
    "report": ("study",),
    "ops": ("train",),
    "cli": ("report", "ops", "recipes", "bench"),
}
"""Layer -> the layers directly below it; everything below those is allowed too."""


def allowed(layer: str, below: dict[str, tuple[str, ...]] = BELOW) -> set[str]:
    """``layer`` and every layer below it (transitively)."""
    out, todo = {layer}, list(below[layer])
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo.extend(below[name])
    return out


def layer_of(module: str, layers: dict[str, tuple[str, ...]] = LAYERS) -> str | None:
    """The layer of a dotted module name (longest matching prefix), ``None`` if unassigned."""
    best, length = None, -1
    for layer, prefixes in layers.items():
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix not in INIT_ONLY
            if (module == prefix or inside) and len(prefix) > length:
                best, length = layer, len(prefix)
    return best


def imported_modules(source: str, known: set[str]) -> Iterator[str]:
    """Every ``rsray`` module ``source`` imports, at any depth of its syntax tree.

    ``from rsray.data import augment`` imports both the package and its submodule ``augment``
    (when ``known``, the package's module names, holds it). A relative import is yielded as
    ``.<name>``: the package writes its imports absolutely, so the checker can place them.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "rsray")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield "." * node.level + (node.module or "")
                continue
            target = node.module or ""
            if target.split(".")[0] != "rsray":
                continue
            yield target
            yield from (f"{target}.{a.name}" for a in node.names
                        if f"{target}.{a.name}" in known)


def violations(sources: dict[str, str], layers: dict[str, tuple[str, ...]] = LAYERS,
               below: dict[str, tuple[str, ...]] = BELOW,
               known: set[str] | None = None) -> list[str]:
    """``importer (layer) -> imported (layer)`` for every import that goes up or sideways,
    and every module that belongs to no layer."""
    out = []
    known = set(sources) | (known or set())
    for module, text in sorted(sources.items()):
        mine = layer_of(module, layers)
        if mine is None:
            out.append(f"{module}: in no layer; add it to LAYERS")
            continue
        ok = allowed(mine, below)
        for target in sorted(set(imported_modules(text, known))):
            theirs = layer_of(target, layers)
            if theirs is None or theirs not in ok:
                out.append(f"{module} ({mine}) imports {target} ({theirs})")
    return out


def package_sources() -> dict[str, str]:
    """Dotted module name -> source text, for every module of the installed package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path.read_text()
    return out


def test_every_layer_is_written_down_once() -> None:
    assert set(BELOW) == set(LAYERS)
    assert all(set(v) <= set(LAYERS) for v in BELOW.values())
    prefixes = [p for ps in LAYERS.values() for p in ps]
    assert len(prefixes) == len(set(prefixes)), "a prefix in two layers"
    for layer in LAYERS:  # no cycle: a layer is never below itself
        assert all(layer not in allowed(b) for b in BELOW[layer]), layer


def test_imports_go_down_the_layers() -> None:
    sources = package_sources()
    assert len(sources) > 100, sorted(sources)
    assert violations(sources) == []


def test_nothing_imports_a_command_line_module() -> None:
    """Commands are entry points: only other commands (and jobs/) import them."""
    sources = package_sources()
    for module, text in sources.items():
        if layer_of(module) != "cli":
            targets = imported_modules(text, set(sources))
            assert not any(layer_of(t) == "cli" for t in targets), module


@pytest.mark.parametrize(("module", "text", "expected"), [
    # function-level import of a higher layer: found
    ("rsray.train.driver", "def f():\n    from rsray.tune.run import tune_fusion\n",
     ["rsray.train.driver (train) imports rsray.tune.run (tune)"]),
    # sideways: report and ops sit beside each other at the top
    ("rsray.ops.submit", "import rsray.report.figures\n",
     ["rsray.ops.submit (ops) imports rsray.report.figures (report)"]),
    # a relative import cannot be placed: refused
    ("rsray.data.shards", "from .datasets import build_split\n",
     ["rsray.data.shards (shards) imports .datasets (None)"]),
    # the submodule of a from-import counts, not only the package
    ("rsray.data.registry", "from rsray.data import datasets\n",
     ["rsray.data.registry (sources) imports rsray.data.datasets (pipeline)"]),
    # the foundation imports nothing above it, even lazily
    ("rsray.config", "def v():\n    from rsray.models import list_models\n",
     ["rsray.config (base) imports rsray.models (models)"]),
    # a module nobody placed
    ("rsray.newthing", "", ["rsray.newthing: in no layer; add it to LAYERS"]),
    # downward and same-layer imports pass
    ("rsray.tune.run", "from rsray.train.driver import fit\nfrom rsray.tune import spaces\n",
     []),
])
def test_the_checker_catches_upward_imports(module: str, text: str,
                                            expected: list[str]) -> None:
    assert violations({module: text}, known=set(package_sources())) == expected

"""Faithfulness tables: a study preset's resolved arms checked against its paper's values.

A table (``studies/faithfulness/<preset>.yaml``) lists what the paper fixes, each row with the
passage it comes from::

    spec: ../sen12ms_resnet.yaml
    paper: deep-fusion-sen12ms-resnet.txt
    checks:
      - {what: Mini-batch, key: batch.global, value: 25, source: "Section 3: mini batches of 25"}

A row holds for every arm of every variant it names (default: every arm, ``paper`` and
``tuned``). :func:`check_table` resolves each arm to its final :class:`~rsray.config.Config`
(and its model to the registered defaults + parameters) and returns every mismatch;
:func:`render_markdown` writes the table for the documentation.

Keys: a dotted config path (``optim.lr``), ``model.kwargs.<argument>`` (the model's resolved
constructor argument, registry defaults included), ``weights`` (the file names of every
``pretrained_file``, ``none`` for random init), ``batch.global`` (batch size x workers),
``arm.<field>`` (``init``, ``recipe``, ``space``, ``modalities``), ``spec.<field>``
(``metrics``, ``factors.fractions``), and for an arm trained with a recipe
``recipe.runs.<config path>`` (the value in each of the recipe's training runs, a list:
``recipe.runs.model.params.branch``) or ``recipe.<name>`` (the recipe module's ``<name>(cfg)``
or constant ``<NAME>``: ``recipe.weight_split``, ``recipe.weight_grid``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rsray.errors import ConfigError
from rsray.study.spec import Arm, StudySpec, load_spec, weight_files

__all__ = ["BEGIN", "END", "Check", "Table", "check_table", "load_table", "main",
           "render_doc", "render_markdown", "resolve"]

_CHANNELS: dict[str, dict[str, int]] = {
    "sen12ms": {"s2": 13, "s1": 2},
    "bigearthnet": {"s2": 10, "s1": 2, "dem": 1, "climate": 4, "landcover": 11, "indices": 2},
    "globe": {d: 3 for d in ("north", "south", "east", "west", "up", "down")},
    "flair2": {"aerial": 5, "s2": 10},
}
"""Channels per modality used to build a model on the meta device (only its arguments are
read, so any positive counts do)."""


@dataclass
class Check:
    """One value the paper fixes."""

    what: str
    """Row label (``Backbone``)."""
    key: str
    """What to resolve (see the module docstring)."""
    value: Any
    """The paper's value."""
    source: str
    """The passage (section / table / page)."""
    arms: list[str] = field(default_factory=list)
    """Arms the row applies to; empty: every arm."""
    variants: list[str] = field(default_factory=lambda: ["paper", "tuned"])
    """Variants the row applies to."""


@dataclass
class Table:
    """A preset's faithfulness table."""

    spec: Path
    """The study spec it checks."""
    paper: str
    """The seed paper's file name."""
    checks: list[Check]


def load_table(path: str | Path) -> Table:
    """Read a faithfulness table; ``spec`` is relative to the table's folder.

    Raises:
        ConfigError: a missing file or a malformed row, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: faithfulness table not found")
    raw = yaml.safe_load(path.read_text()) or {}
    checks = []
    for i, row in enumerate(raw.get("checks") or []):
        missing = [k for k in ("what", "key", "value", "source") if k not in row]
        if missing:
            raise ConfigError(f"{path}: checks[{i}]: missing {', '.join(missing)}")
        checks.append(Check(**row))
    return Table(spec=(path.parent / raw["spec"]).resolve(), paper=str(raw.get("paper", "")),
                 checks=checks)


@cache
def _model_kwargs(name: str, params_yaml: str, modalities: tuple[tuple[str, int], ...],
                  metadata_dim: int) -> dict[str, Any]:
    """The registered model's constructor arguments (defaults + ``params``), built on meta."""
    import torch

    from rsray.models import create_model

    params = yaml.safe_load(params_yaml)
    args = {"modalities": dict(modalities), "num_classes": 4, "metadata_dim": metadata_dim}
    try:
        with torch.device("meta"):
            model = create_model(name, **args, **params)
    except (RuntimeError, NotImplementedError):  # a model that reads a tensor while built
        model = create_model(name, **args, **params)
    return dict(model.model_kwargs)


def _strip_weights(params: Any) -> Any:
    if isinstance(params, dict):
        return {k: _strip_weights(v) for k, v in params.items() if k != "pretrained_file"}
    return params


def resolve(spec: StudySpec, arm: Arm, key: str) -> Any:
    """The value ``key`` has for ``arm`` of ``spec`` (see the module docstring)."""
    if key == "spec.arm_names":
        return [a.name for a in spec.arms]
    if key.startswith("spec."):
        node: Any = spec
        for part in key.split(".")[1:]:
            node = getattr(node, part)
        return node
    if key.startswith("arm."):
        return getattr(arm, key.split(".", 1)[1])
    cfg = spec.arm_config(arm)
    if key.startswith("recipe."):
        return _recipe_value(arm, cfg, key.split(".", 1)[1])
    if key == "weights":
        files = sorted(Path(f).name for f in weight_files(cfg.model.params))
        return files or "none"
    if key == "batch.global":
        return cfg.data.batch_size * max(cfg.scaling.num_workers, 1)
    if key == "model.kwargs" or key.startswith("model.kwargs."):
        channels = _CHANNELS.get(spec.data.dataset, {})
        mods = tuple((m, channels.get(m, 3)) for m in (cfg.data.modalities or channels))
        meta = 5 if spec.data.dataset == "globe" else 0
        kwargs = _model_kwargs(cfg.model.name, yaml.safe_dump(_strip_weights(cfg.model.params)),
                               mods, meta)
        node = kwargs
        for part in key.split(".")[2:]:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        return node
    node = cfg.to_dict()
    for part in key.split("."):
        node = node[part]
    return node


@cache
def _recipe_runs(recipe: str, cfg_json: str) -> list[dict[str, Any]]:
    """The configs (as dicts) of every training run of ``recipe`` for one arm's config."""
    from rsray.config import Config
    from rsray.study.recipe_arm import recipe_runs

    return [run.to_dict() for run in recipe_runs(recipe, Config.from_dict(json.loads(cfg_json)))]


def _recipe_value(arm: Arm, cfg: Any, key: str) -> Any:
    """``recipe.<key>`` of an arm trained with a recipe (see the module docstring)."""
    from rsray.recipes import get_recipe

    if not arm.recipe:
        raise ConfigError(f"arm {arm.name} is not trained with a recipe")
    if key.startswith("runs."):
        out = []
        for run in _recipe_runs(arm.recipe, json.dumps(cfg.to_dict(), sort_keys=True)):
            node: Any = run
            for part in key.split(".")[1:]:
                node = node[part]
            out.append(node)
        return out
    module = get_recipe(arm.recipe)
    value = getattr(module, key, None)
    if callable(value):
        return value(cfg)
    if value is None:
        value = getattr(module, key.upper())
    return list(value) if isinstance(value, tuple) else value


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(got, tuple | list) and isinstance(want, tuple | list):
        return len(got) == len(want) and all(_same(a, b) for a, b in zip(got, want, strict=True))
    return got == want


def check_table(table: Table) -> tuple[list[str], int]:
    """Every mismatch between ``table`` and its preset's resolved arms.

    Returns:
        The mismatches (one line each) and the number of (row, variant, arm) values checked.
    """
    wrong: list[str] = []
    n = 0
    specs: dict[str, StudySpec] = {}
    for row in table.checks:
        for variant in row.variants:
            if variant not in specs:
                specs[variant] = load_spec(table.spec, variant=variant)
            spec = specs[variant]
            names = [a.name for a in spec.arms]
            unknown = [a for a in row.arms if a not in names]
            arms = [a for a in spec.arms if not row.arms or a.name in row.arms]
            if row.key.startswith("spec."):
                arms = arms[:1]
            if unknown and variant == "paper":
                wrong.append(f"{row.what}: arms {unknown} are not arms of the {variant} variant")
            for arm in arms:
                n += 1
                try:
                    got = resolve(spec, arm, row.key)
                except (KeyError, AttributeError, ConfigError) as exc:
                    wrong.append(f"{variant}/{arm.name}: {row.key}: cannot resolve ({exc})")
                    continue
                if not _same(got, row.value):
                    wrong.append(f"{variant}/{arm.name}: {row.key} = {got!r}, the paper's "
                                 f"{row.value!r} ({row.source})")
    return wrong, n


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value).replace("|", "\\|")


def render_markdown(table: Table) -> str:
    """The table as Markdown: what, the paper's value, arms, variants, passage."""
    lines = [f"Paper: `{table.paper}`. Preset: `studies/{table.spec.name}`.", "",
             "| What | Paper's value | Arms | Variants | Passage |",
             "|---|---|---|---|---|"]
    for row in table.checks:
        arms = ", ".join(row.arms) if row.arms else "all"
        lines.append(f"| {row.what} | `{_cell(row.value)}` | {arms} | "
                     f"{', '.join(row.variants)} | {_cell(row.source)} |")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- faithfulness tables: generated by python -m rsray.study.faithfulness -->"
END = "<!-- end of faithfulness tables -->"


def render_doc(tables: list[Path], doc: str) -> str:
    """``doc`` with the Markdown of ``tables`` between :data:`BEGIN` and :data:`END`.

    Raises:
        ConfigError: the markers are missing.
    """
    if BEGIN not in doc or END not in doc:
        raise ConfigError(f"the document lacks the markers {BEGIN!r} ... {END!r}")
    parts = []
    for path in sorted(tables):
        table = load_table(path)
        parts.append(f"### {table.spec.stem}\n\n{render_markdown(table)}")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n" + "\n".join(parts) + f"\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """``python -m rsray.study.faithfulness [TABLES_DIR] [DOC]``: rewrite DOC's tables."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    tables_dir = Path(args[0] if args else "studies/faithfulness")
    doc = Path(args[1] if len(args) > 1 else "docs/presets.md")
    doc.write_text(render_doc(sorted(tables_dir.glob("*.yaml")), doc.read_text()))
    print(f"{doc}: {len(list(tables_dir.glob('*.yaml')))} faithfulness tables written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a study ran: the question, the arms, the budget, the compute, the provenance.

The report's first sections, so that it stands on its own: a reader who never saw the spec
learns what each arm is (model, modalities, fixed parameters, searched parameters, number of
parameters), how much was spent on it (search trials, epochs, seeds, compute time), which
validation metric chose checkpoints and hyper-parameters, and exactly which software and data
produced the numbers (versions and commit recorded when the study started, the shard sets'
manifest hashes).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from rsray.report.tables import arm_label, metric_label, write_table
from rsray.study.provenance import environment, shard_set_identity
from rsray.study.results import StudyMeta


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('model.params.')}={_fmt_value(v)}"
                     for k, v in params.items()) or "-"


def _gone(uri: str) -> bool:
    """A local checkpoint path that no longer exists (no need to import the loaders)."""
    return "://" not in uri and not Path(uri).exists()


def seed_records(root: Path) -> list[dict[str, Any]]:
    """Every finished seed's ``result.json`` document."""
    return [json.loads(p.read_text()) for p in sorted(root.glob("cells/*/seed_*/result.json"))]


def parameter_count(checkpoint: str, data_uri: str | None) -> int | None:
    """Trainable parameters of a seed's model, rebuilt on CPU from its checkpoint's config.

    With the shard set (``data_uri``) the model is built exactly as evaluation builds it;
    without (or when the set has moved) from the checkpoint's own channels and classes.
    ``None`` when the checkpoint can no longer be read.
    """
    if _gone(checkpoint):
        return None
    model = None
    try:
        from rsray.evaluate.checkpoint import open_checkpoint

        if data_uri:
            from rsray.data.shards import read_manifest

            loaded = open_checkpoint(checkpoint, read_manifest(data_uri), with_weights=False)
            model = loaded.run.build_model()
    except Exception:  # a moved shard set: build from the checkpoint alone
        model = None
    if model is None:
        try:
            from rsray.config import Config
            from rsray.evaluate.checkpoint import read_checkpoint_meta
            from rsray.models import create_model

            meta, _, _ = read_checkpoint_meta(checkpoint)
            cfg = Config.from_dict(meta["config"])
            model = create_model(cfg.model.name, modalities=dict(meta["channels"]),
                                 num_classes=len(meta["classes"]), **dict(cfg.model.params))
        except Exception:  # a foreign checkpoint must not stop the report
            return None
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _checkpoint_config(checkpoint: str) -> dict[str, Any] | None:
    if _gone(checkpoint):
        return None
    try:
        from rsray.evaluate.checkpoint import read_checkpoint_meta

        return dict(read_checkpoint_meta(checkpoint)[0]["config"])
    except Exception:  # a moved checkpoint: fall back to the spec
        return None


def _spec_config(spec: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any] | None:
    try:
        from rsray.config import Config

        flat = {**(spec.get("base") or {}), "model.name": arm.get("model"),
                "data.modalities": list(arm.get("modalities") or []),
                **(arm.get("params") or {})}
        return Config().with_overrides(flat).to_dict()
    except Exception:  # a spec written by another rsray version
        return None


def _count(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def arms_section(root: Path, meta: StudyMeta, tables: Path,
                 task: str = "") -> tuple[list[str], dict[str, Any]]:
    """The arm table and the budget; returns the lines and ``{arm: config dict}``."""
    spec = meta.spec
    records = seed_records(root)
    searches = {}
    for p in sorted(root.glob("cells/*/search.json")):
        doc = json.loads(p.read_text())
        searches.setdefault(doc.get("arm") or str(doc.get("cell", "")).split("__")[0], doc)
    configs: dict[str, Any] = {}
    rows = []
    total = 0.0
    for arm in spec.get("arms", []):
        name = arm["name"]
        mine = [r for r in records if r["keys"]["arm"] == name]
        seconds = sum(float(r.get("seconds") or 0.0) for r in mine)
        total += seconds
        first = mine[0] if mine else None
        cfg = (_checkpoint_config(first["checkpoint"]) if first else None) \
            or _spec_config(spec, arm)
        configs[name] = cfg
        holdout = first["keys"]["holdout"] if first else ""
        uri = meta.data.get("" if holdout == "none" else holdout) or next(iter(meta.data.values()),
                                                                          None)
        n_params = parameter_count(first["checkpoint"], uri) if first else None
        search = searches.get(name) or {}
        chosen = _params_text(search.get("params") or {}) if arm.get("space") else "(no search)"
        if arm.get("recipe"):  # what the recipe chose on validation, seed by seed
            picks = [r["recipe"]["best_weight"] for r in sorted(
                mine, key=lambda r: r["keys"]["seed"]) if "best_weight" in r.get("recipe", {})]
            chosen = (f"recipe `{arm['recipe']}`; fusion weight per seed: "
                      + (", ".join(f"{w:g}" for w in picks) or "-"))
        rows.append([f"{arm_label(name)} (`{name}`)"
                     + (" (baseline)" if name == meta.baseline else ""),
                     f"`{arm.get('model', '?')}`",
                     ", ".join(arm.get("modalities") or []) or "all",
                     _params_text(arm.get("params") or {}), arm.get("space") or "-", chosen,
                     _count(n_params), str(len(mine)),
                     _hours(seconds) if mine else "-"])
    header = ["arm", "model", "modalities", "fixed parameters (arm)", "search space",
              "chosen by the search", "parameters", "seeds run", "stage-2 compute"]
    lines = ["## Arms", "",
             "Every arm starts from the same base configuration (below) plus its own fixed "
             "parameters; an arm with a search space had its hyper-parameters chosen by the "
             "stage-1 search on the validation split, then was retrained with each seed; an "
             "arm with a recipe ran its paper's multi-run recipe once per seed (the "
             "recipe's choice on the validation split is shown). "
             "Parameters: trainable parameters of the model as trained (rebuilt on CPU from a "
             "seed's checkpoint). Stage-2 compute: wall time of training + evaluation summed "
             "over the arm's seeds (stage-1 search time is not recorded per arm).", ""]
    lines += write_table(tables, "arms", header, rows, "Arms of the study")
    base = spec.get("base") or {}
    lines += ["", f"Base configuration of every arm: {_params_text(base)}."
              if base else "", ""]
    return lines + budget_lines(meta, configs, total, task), configs


def budget_lines(meta: StudyMeta, configs: dict[str, Any], seconds: float,
                 task: str = "") -> list[str]:
    """The budget: search, seeds, epochs, settings, the selection metric."""
    spec = meta.spec
    s, f = spec.get("search") or {}, spec.get("factors") or {}
    searched = [a["name"] for a in spec.get("arms", []) if a.get("space")]
    some = next((c for c in configs.values() if c), None) or {}
    train = some.get("train") or {}
    epochs = sorted({(c.get("train") or {}).get("max_epochs") for c in configs.values() if c}
                    - {None})
    metric = str(train.get("metric", "?"))
    mode = str(train.get("mode", "auto"))
    if metric == "auto" and task:  # what resolve_for_task picks at training time
        from rsray.train.tasks import DEFAULT_METRIC, metric_mode

        metric = f"val_{DEFAULT_METRIC.get(task, '?')}"
        mode = metric_mode(metric) if mode == "auto" else mode
    lines = ["## Budget and selection", ""]
    if searched:
        lines.append(f"- stage 1 (search): {s.get('num_samples', '?')} trials per cell for "
                     f"{len(searched)} arm(s) with a search space, at most "
                     f"{s.get('max_epochs', '?')} epochs each (ASHA: grace period "
                     f"{s.get('grace_period', '?')}, reduction factor "
                     f"{s.get('reduction_factor', '?')})")
    else:
        lines.append("- stage 1 (search): none, every arm has fixed hyper-parameters")
    lines += [f"- stage 2: {f.get('seeds', '?')} seed(s) per cell, "
              f"{'/'.join(str(e) for e in epochs) or '?'} epochs (`train.max_epochs`); "
              f"training fractions {', '.join(f'{x:g}' for x in f.get('fractions', [1.0]))}; "
              f"hold-outs {', '.join(repr(h or 'none') for h in f.get('holdouts', ['']))}",
              f"- selection metric (checkpoint, early stopping, search): "
              f"{metric_label(metric.removeprefix('val_'), 'val')} (`{metric}`, mode {mode})",
              f"- stage-2 compute, all arms: {_hours(seconds)}", ""]
    return lines


def provenance_section(meta: StudyMeta, tables: Path) -> list[str]:
    """Versions, commit, shard sets (with manifest hashes), dates."""
    env = meta.provenance
    recorded = bool(env)
    env = env or environment()
    pk = env.get("packages") or {}
    started = (dt.datetime.fromtimestamp(meta.started, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
               if meta.started else "not recorded")
    rows = [["rsray", pk.get("rsray", "?")],
            ["git commit", env.get("git_commit") or "not a git checkout"],
            ["python", env.get("python", "?")],
            *[[p, pk[p]] for p in ("torch", "ray", "timm", "torchmetrics", "optuna", "numpy",
                                   "scipy") if p in pk],
            ["platform", env.get("platform", "?")],
            ["study started", started],
            ["report written", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")]]
    for holdout, uri in meta.data.items():
        try:
            ident = shard_set_identity(uri)
            rows.append([f"shard set ({holdout or 'no hold-out'})",
                         f"{uri} — {ident['dataset']}"
                         f"{' (SYNTHETIC)' if ident['synthetic'] else ''}, created "
                         f"{ident['created'] or '?'}, manifest sha256 "
                         f"{ident['manifest_sha256'][:16]}…"])
        except Exception as exc:  # a moved shard set must not stop the report
            rows.append([f"shard set ({holdout or 'no hold-out'})",
                         f"{uri} (manifest unreadable: {type(exc).__name__})"])
    note = ("Recorded when the study started." if recorded else
            "The study did not record its environment (an older rsray): the versions below "
            "are those of the machine that wrote this report.")
    return ["## Provenance", "", note, "", *write_table(tables, "provenance", ["item", "value"],
                                                         rows, "Provenance"), ""]


__all__ = ["arms_section", "budget_lines", "parameter_count", "provenance_section",
           "seed_records"]

"""Study splits: nested training fractions and geographic out-of-distribution hold-outs.

* **Training fractions** (data-efficiency studies, geo-covariates seed): ``data.train_fraction``
  keeps a seeded subset of the training split while streaming. A sample is kept when a hash of
  ``(data.fraction_seed, patch_id)`` mapped to ``[0, 1)`` is below the fraction, so the subsets
  are *nested*: every patch of the 10 % subset is in the 25 % subset of the same seed, and so on.
  Validation and test splits are never subsampled.
* **Seeded splits** (datasets without an official split list): :func:`seeded_split` puts a patch
  in train / val / test from a hash of ``(seed, patch_id)``, so adding or removing patches never
  moves another one; :func:`check_fractions` validates the ``(train, val, test)`` fractions.
* **Hold-outs** (out-of-distribution studies): ``rsray prepare ... --holdout country=Serbia``
  moves every sample whose discovery item matches into the ``ood`` split. Training then uses the
  rest, and ``data.eval_splits=[val,ood]`` evaluates on the in-distribution validation split and
  on the held-out one in the same run (metrics ``val_*`` and ``ood_*``).

A rule is ``key=value[,value...]`` (string match) or ``key=lo:hi`` (numeric, ``lo <= x < hi``;
either bound may be empty). Keys are what the dataset's reader records per sample under
``item["groups"]``: e.g. ``country``/``tile`` (BigEarthNet v2), ``domain``/``zone`` (FLAIR-2),
``scene``/``season`` (SEN12MS), ``lat``/``lon`` (where known).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsray.errors import ConfigError

OOD_SPLIT = "ood"
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
"""The three splits a seeded split assigns."""


def seeded_split(
    patch_id: str, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> str:
    """Deterministic split of one patch from a hash of its name.

    ``u = sha256(f"{seed}:{patch_id}")`` read as a number in ``[0, 1)``; the patch goes to
    ``train`` if ``u < f_train``, to ``val`` if ``u < f_train + f_val``, else to ``test``.
    A patch's split depends only on its own name and the seed, so adding or removing
    patches never moves another patch to a different split.
    """
    digest = hashlib.sha256(f"{seed}:{patch_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``(train, val, test)`` fractions as floats; ConfigError unless three, >= 0, summing to 1."""
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"split_fractions: {fractions!r} is not three numbers") from None
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"split_fractions: {fractions!r} must be three non-negative "
                          "fractions (train, val, test) summing to 1")
    return fr[0], fr[1], fr[2]


@dataclass(frozen=True)
class HoldoutRule:
    """One ``--holdout`` rule."""

    key: str
    values: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None

    def matches(self, value: Any) -> bool:
        """Whether a sample's ``groups[key]`` value falls under the rule."""
        if value is None:
            return False
        if self.values:
            return str(value) in self.values
        try:
            x = float(value)
        except (TypeError, ValueError):
            return False
        return (self.lo is None or x >= self.lo) and (self.hi is None or x < self.hi)

    def __str__(self) -> str:
        if self.values:
            return f"{self.key}={','.join(self.values)}"
        lo = "" if self.lo is None else self.lo
        hi = "" if self.hi is None else self.hi
        return f"{self.key}={lo}:{hi}"


def parse_holdout(specs: Sequence[str]) -> list[HoldoutRule]:
    """Parse ``key=v1,v2`` / ``key=lo:hi`` rules; a bad one raises ConfigError naming it."""
    rules = []
    for spec in specs:
        key, sep, rest = spec.partition("=")
        key, rest = key.strip(), rest.strip()
        if not sep or not key or not rest:
            raise ConfigError(f"--holdout {spec!r}: expected key=value[,value...] or key=lo:hi "
                              "(e.g. country=Serbia,Portugal or lat=40:50)")
        if ":" in rest and "," not in rest:
            lo_s, _, hi_s = rest.partition(":")
            try:
                lo = float(lo_s) if lo_s.strip() else None
                hi = float(hi_s) if hi_s.strip() else None
            except ValueError:
                # Not numbers: a value containing ':' (rare) is matched as a string.
                rules.append(HoldoutRule(key, (rest,)))
                continue
            if lo is None and hi is None:
                raise ConfigError(f"--holdout {spec!r}: give at least one bound of lo:hi")
            if lo is not None and hi is not None and lo >= hi:
                raise ConfigError(f"--holdout {spec!r}: lower bound must be below upper bound")
            rules.append(HoldoutRule(key, lo=lo, hi=hi))
        else:
            values = tuple(v.strip() for v in rest.split(",") if v.strip())
            rules.append(HoldoutRule(key, values))
    return rules


def apply_holdout(
    items: list[dict[str, Any]], rules: Sequence[HoldoutRule], *, dataset: str = "dataset"
) -> dict[str, Any]:
    """Move matching items to the ``ood`` split in place; return what happened (manifest info).

    A sample matches when any rule matches it. A rule whose key no sample carries, or that
    matches no sample, is an error that lists what the dataset offers: a hold-out that silently
    moves nothing would make an OOD study meaningless.
    """
    keys: Counter[str] = Counter()
    for it in items:
        keys.update((it.get("groups") or {}).keys())
    moved_by_rule: Counter[str] = Counter()
    from_split: Counter[str] = Counter()
    for rule in rules:
        if rule.key not in keys:
            offered = ", ".join(sorted(keys)) or "none"
            raise ConfigError(f"--holdout {rule}: {dataset} samples carry no '{rule.key}' "
                              f"(they carry: {offered})")
    for it in items:
        groups = it.get("groups") or {}
        for rule in rules:
            if rule.matches(groups.get(rule.key)):
                moved_by_rule[str(rule)] += 1
                from_split[it["split"]] += 1
                it["split"] = OOD_SPLIT
                break
    for rule in rules:
        if not moved_by_rule[str(rule)]:
            seen = Counter(str((it.get("groups") or {}).get(rule.key)) for it in items)
            examples = ", ".join(f"{v} ({n})" for v, n in seen.most_common(12))
            raise ConfigError(f"--holdout {rule}: no {dataset} sample matches; values of "
                              f"'{rule.key}' found: {examples}")
    return {"rules": [str(r) for r in rules], "moved": sum(moved_by_rule.values()),
            "moved_from": dict(from_split), "split": OOD_SPLIT}


def fraction_scores(patch_ids: Iterable[str], seed: int) -> np.ndarray:
    """A uniform ``[0, 1)`` score per patch id, fixed by ``seed`` (independent of order)."""
    out = []
    for pid in patch_ids:
        digest = hashlib.blake2b(f"{seed}:{pid}".encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "big") / 2**64)
    return np.asarray(out, dtype=np.float64)


def fraction_mask(patch_ids: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Which of ``patch_ids`` belong to the nested training subset of size ``fraction``."""
    if fraction >= 1.0:
        return np.ones(len(patch_ids), dtype=bool)
    return fraction_scores(patch_ids, seed) < fraction

"""Decision-level combination of per-branch outputs (late fusion).

:func:`geometric_mean_logits` combines per-branch probabilities by a weighted geometric mean
``p = Π p_m^{w_m}`` (LF-DLM's rule) and returns logits, computed in log space so saturated
branches stay finite and exact; :func:`branch_weights` checks and normalises the branch
weights a late-fusion model is configured with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from rsray.errors import ConfigError

__all__ = ["branch_weights", "geometric_mean_logits"]


def _log_softplus_neg(z: Tensor) -> Tensor:
    """``log(softplus(-z)) = log(-log sigmoid(z))``, finite and accurate for any ``z``."""
    big = z > 15.0
    zb = z.clamp(min=15.0)  # log(log1p(u)) ≈ log(u) - u/2 for u = exp(-z) tiny
    zs = z.clamp(max=15.0)
    return torch.where(big, -zb - 0.5 * torch.exp(-zb), torch.log(F.softplus(-zs)))


def _log1m_exp_neg_exp(log_neg_lp: Tensor) -> Tensor:
    """``log(1 - p)`` given ``L = log(-log p)``, i.e. ``log(1 - exp(-exp(L)))``, stably."""
    small = log_neg_lp < -10.0
    ls = log_neg_lp.clamp(max=-10.0)  # 1 - exp(-a) = a (1 - a/2 + ...) for a = exp(L) tiny
    lb = log_neg_lp.clamp(min=-10.0)
    return torch.where(small, ls - 0.5 * torch.exp(ls), torch.log(-torch.expm1(-torch.exp(lb))))


def geometric_mean_logits(
    logits: Sequence[Tensor],
    weights: Tensor | Sequence[float],
    task: Literal["multilabel", "multiclass"] = "multilabel",
) -> Tensor:
    """Weighted geometric mean of per-branch probabilities, returned as logits.

    Args:
        logits: one (B, K) logit tensor per branch.
        weights: one non-negative weight per branch (``(M,)``), or per branch and sample
            (``(M, B)``: a missing modality's weight is 0); normalised to sum 1 over branches.
        task: ``"multilabel"``: ``p = Π sigmoid(z_m)^{w_m}`` per class, returns ``logit(p)``;
            ``"multiclass"``: ``p ∝ Π softmax(z_m)^{w_m}``, returns ``log p`` (normalised).

    Returns:
        (B, K) float32 logits.
    """
    z = torch.stack([t.float() for t in logits], dim=0)  # (M, B, K)
    w = torch.as_tensor(weights, dtype=z.dtype, device=z.device)  # (M,) or per sample (M, B)
    w = w / w.sum(0, keepdim=True)
    w = w.reshape(*w.shape, *([1] * (z.dim() - w.dim())))
    if task == "multiclass":
        return torch.log_softmax((w * torch.log_softmax(z, dim=-1)).sum(0), dim=-1)
    if task != "multilabel":
        raise ConfigError(f"task: must be 'multilabel' or 'multiclass', got {task!r}")
    # log p = sum_m w_m log sigmoid(z_m) <= 0, and
    # log(-log p) = logsumexp_m(log w_m + log softplus(-z_m)); log(1 - p) is computed from the
    # latter, so a saturated p (close to 1) keeps its exact logit instead of becoming inf.
    log_p = (w * F.logsigmoid(z)).sum(0)
    log_neg_log_p = torch.logsumexp(torch.log(w) + _log_softplus_neg(z), dim=0)
    return log_p - _log1m_exp_neg_exp(log_neg_log_p)


def branch_weights(
    weights: Sequence[float] | Mapping[str, float] | None, names: Sequence[str]
) -> Tensor:
    """Normalised branch weights as a float tensor, checked."""
    if weights is None:
        values = [1.0] * len(names)
    elif isinstance(weights, Mapping):
        unknown = [k for k in weights if k not in names]
        missing = [n for n in names if n not in weights]
        if unknown or missing:
            raise ConfigError(
                f"weights: keys must be exactly {list(names)}; unknown {unknown}, missing {missing}"
            )
        values = [float(weights[n]) for n in names]
    else:
        values = [float(v) for v in weights]
        if len(values) != len(names):
            raise ConfigError(
                f"weights: {len(values)} given for {len(names)} branches {list(names)}"
            )
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise ConfigError(f"weights: must be finite, >= 0 and not all 0; got {values}")
    total = sum(values)
    return torch.tensor([v / total for v in values], dtype=torch.float32)

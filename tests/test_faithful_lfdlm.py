"""LF-DLM (lf-dlm-flair2-late-fusion.txt): the polynomial LR decay of its training setup.

"The scheduler applies a polynomial function to the AdamW optimizer, starting with an
initial learning rate of 1e-4 and reaching a final learning rate of 1e-7 within the specified
number of decay steps."
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from rsray.config import OptimConfig, load_config
from rsray.errors import ConfigError

PRESET = Path(__file__).resolve().parents[1] / "configs/flair2_lfdlm.yaml"


def test_preset_decays_polynomially_from_1e4_to_1e7(lr_trace) -> None:
    cfg = load_config(PRESET)
    assert cfg.optim.name == "adamw" and cfg.optim.scheduler == "poly"
    epochs = cfg.train.max_epochs
    lrs = lr_trace(cfg.optim, epochs)
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[-1] == pytest.approx(1e-7)
    # power 1: equal steps (lr - end) / (epochs - 1)
    steps = [a - b for a, b in itertools.pairwise(lrs)]
    assert steps == pytest.approx([(1e-4 - 1e-7) / (epochs - 1)] * (epochs - 1))


def test_poly_power_and_errors(lr_trace) -> None:
    cfg = OptimConfig(lr=1e-3, scheduler="poly", poly_power=2.0, poly_end_lr=0.0)
    lrs = lr_trace(cfg, 5)  # (1 - e/4)^2: 1, 9/16, 1/4, 1/16, 0
    assert lrs == pytest.approx([1e-3, 1e-3 * 9 / 16, 1e-3 / 4, 1e-3 / 16, 0.0])
    with pytest.raises(ConfigError, match="poly_end_lr"):
        load_config(PRESET, ["optim.poly_end_lr=0.01"])

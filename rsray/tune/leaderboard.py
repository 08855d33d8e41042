"""The results table of a tuning experiment: rows per trial, printed and saved as CSV + JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from rsray.storage import atomic_write_bytes, get_fs, join

LEADERBOARD_CSV = "leaderboard.csv"
BEST_JSON = "best.json"


@dataclass
class TrialRow:
    """One trial's line in the leaderboard."""

    trial: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    epochs: int
    checkpoint: str


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e-2 or abs(v) >= 1e3 else f"{v:.4f}"
    return str(v)


def sort_rows(rows: list[TrialRow], metric: str, mode: str) -> list[TrialRow]:
    """Best first; trials without the metric last."""
    def key(r: TrialRow) -> float:
        v = r.metrics.get(metric, float("nan"))
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return math.inf
        return -v if mode == "max" else v

    return sorted(rows, key=key)


def format_table(rows: list[TrialRow], metric_keys: list[str], title: str = "") -> str:
    """A fixed-width text table (trial, status, parameters, metrics, epochs)."""
    param_keys = sorted({k for r in rows for k in r.params})
    short = [k.split(".")[-1] for k in param_keys]
    header = ["trial", "status", *short, *[m.removeprefix("val_") for m in metric_keys], "epochs"]
    body = [
        [r.trial, r.status, *[_fmt(r.params.get(k, "")) for k in param_keys],
         *[_fmt(r.metrics.get(m, float("nan"))) for m in metric_keys], str(r.epochs)]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(header)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def write_results(
    exp_uri: str, rows: list[TrialRow], best: dict[str, Any], metric_keys: list[str]
) -> tuple[str, str]:
    """Write ``leaderboard.csv`` and ``best.json`` into the experiment folder (local or s3)."""
    fs, root = get_fs(exp_uri)
    param_keys = sorted({k for r in rows for k in r.params})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "trial", "status", *param_keys, *metric_keys, "epochs", "checkpoint"])
    for i, r in enumerate(rows, 1):
        writer.writerow([i, r.trial, r.status, *[r.params.get(k, "") for k in param_keys],
                         *[r.metrics.get(m, "") for m in metric_keys], r.epochs, r.checkpoint])
    csv_path = join(root, LEADERBOARD_CSV)
    json_path = join(root, BEST_JSON)
    atomic_write_bytes(fs, csv_path, out.getvalue().encode())
    atomic_write_bytes(fs, json_path, json.dumps(best, indent=2, default=str).encode())
    return join(exp_uri, LEADERBOARD_CSV), join(exp_uri, BEST_JSON)

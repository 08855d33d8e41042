r"""Report tables as Markdown, CSV and LaTeX (booktabs), and readable metric and arm names.

Every table of a study report is written three ways under ``tables/``: ``<name>.csv`` (for a
spreadsheet or pandas), ``<name>.tex`` (a ``booktabs`` ``tabular`` to ``\\input`` into a
paper) and as Markdown in the report. The LaTeX is written here rather than with
``DataFrame.to_latex``, which needs jinja2 (pandas' Styler) for a few lines of text.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

_WORDS = {
    "ap": "AP", "oa": "OA", "aa": "AA", "acc": "accuracy", "f1": "F1", "f2": "F2",
    "auc": "AUC", "iou": "IoU", "miou": "mIoU", "rmse": "RMSE", "mae": "MAE", "r2": "R²",
    "s1": "S1", "s2": "S2", "rgb": "RGB", "dem": "DEM", "sct": "SCT", "ood": "OOD",
    "kappa": "kappa", "hamming": "Hamming", "ndvi": "NDVI", "lf": "LF", "dlm": "DLM",
    "cnn": "CNN", "vit": "ViT", "utae": "U-TAE", "nir": "NIR",
}
_SPLITS = {"test": "test", "ood": "out-of-distribution", "val": "validation"}


def _words(name: str) -> str:
    return " ".join(_WORDS.get(w.lower(), w) for w in re.split(r"[_\s]+", name) if w)


def metric_label(metric: str, split: str = "test") -> str:
    """``("ap_macro", "test")`` -> ``"test AP macro"``; ``ap_class/Forest`` -> ``AP (Forest)``."""
    base, _, cls = metric.partition("/")
    label = _words(base.replace("_class", ""))
    if cls:
        label = f"{label} ({cls})"
    return f"{_SPLITS.get(split, split)} {label}".strip() if split else label


def arm_label(arm: str) -> str:
    """A readable arm name: ``s2_only`` -> ``S2 only``, ``sct`` -> ``SCT``."""
    return _words(arm)


def paper_value(metric: str, value: float) -> tuple[float, str]:
    """A published value on rsray's scale, and a note when it was rescaled.

    A [0, 1] metric published in percent is divided by 100.
    """
    from rsray.study.stats import metric_range

    if metric_range(metric) == (0.0, 1.0) and value > 1.0:
        return value / 100.0, f" (published as {value:g} %)"
    return value, ""


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                   "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                   "^": r"\textasciicircum{}", "±": r"$\pm$", "†": r"$^\dagger$",
                   "‡": r"$^\ddagger$", "²": r"$^2$", "\u2014": "---", "\u2013": "--",
                   "≥": r"$\geq$", "≤": r"$\leq$", "→": r"$\rightarrow$"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped; ``**bold**`` becomes bold."""
    out = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text).replace("`", ""))
    return re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", out)


def to_latex(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "",
             label: str = "") -> str:
    """A ``table`` environment with a booktabs ``tabular`` (first column left, rest right)."""
    spec = "l" + "r" * (len(header) - 1)
    lines = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Markdown table lines (``|`` in cells escaped)."""
    def cell(c: str) -> str:
        return str(c).replace("|", "\\|")
    return ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]]


def write_table(folder: Path, name: str, header: Sequence[str], rows: Sequence[Sequence[str]],
                caption: str = "") -> list[str]:
    """Write ``<name>.csv`` and ``<name>.tex`` under ``folder``.

    Returns the Markdown lines of the table and a line linking the two files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([[str(c).replace("**", "") for c in r] for r in rows])
    (folder / f"{name}.tex").write_text(to_latex(header, rows, caption, f"tab:{name}"))
    return [*to_markdown(header, rows), "",
            f"_Also as [`{folder.name}/{name}.csv`]({folder.name}/{name}.csv) and "
            f"[`{folder.name}/{name}.tex`]({folder.name}/{name}.tex) (LaTeX, booktabs)._"]


__all__ = ["arm_label", "latex_escape", "metric_label", "paper_value", "to_latex", "to_markdown",
           "write_table"]

"""Plots of the transfer lab (``ftkit.lab.transfer_lab``): data in, Axes out.

>>> ax = plot_yosinski(yosinski(FAST).summary())        # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from ftkit.core.imagenet import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["YOSINSKI_2014", "plot_lp_ft", "plot_shift_examples", "plot_surgical", "plot_yosinski"]

# Yosinski et al. 2014, Fig. 2 (top-1 accuracy on ImageNet half B, layers 1..7; base 0.625).
YOSINSKI_2014 = {
    "base": 0.625,
    "BnB": (0.627, 0.624, 0.621, 0.605, 0.594, 0.619, 0.623),
    "AnB": (0.628, 0.624, 0.619, 0.600, 0.578, 0.581, 0.543),
}
_COLORS = {"baseB": "0.3", "AnB": "C3", "BnB": "C0", "AnB+": "C1", "BnB+": "C2"}


def _new_axes(figsize=(6.5, 4.2)) -> Axes:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_yosinski(summary: pd.DataFrame, ax: Axes | None = None, *, paper: bool = True) -> Axes:
    """Test accuracy against n (conv groups copied), one line per condition, error bars = 1 s.e.m.

    Args:
        summary: ``LabResult.summary()`` of ``ftkit.lab.transfer_lab.yosinski``
            (columns strategy, n, mean, sem).
        paper: also draw the paper's AnB and BnB curves, as differences from its
            base network added to ours, on the same relative x axis (n / depth).
        ax: where to draw; a new figure when None.
    """
    ax = ax if ax is not None else _new_axes()
    base = summary[summary.strategy == "baseB"]
    depth = int(summary.n.max())
    if len(base):
        b, e = float(base["mean"].iloc[0]), float(np.nan_to_num(base["sem"].iloc[0]))
        ax.axhspan(b - e, b + e, color="0.85")
        ax.axhline(b, color=_COLORS["baseB"], lw=1, label="baseB (scratch)")
    for strategy, rows in summary[summary.strategy != "baseB"].groupby("strategy", sort=False):
        rows = rows.sort_values("n")
        ax.errorbar(rows.n, rows["mean"], yerr=np.nan_to_num(rows["sem"]), marker="o", capsize=3,
                    color=_COLORS.get(strategy), label=strategy)
    if paper and len(base):
        for strategy in ("AnB", "BnB"):
            values = np.array(YOSINSKI_2014[strategy]) - YOSINSKI_2014["base"]
            x = np.arange(1, len(values) + 1) * depth / len(values)
            ax.plot(x, b + values, ls=":", color=_COLORS[strategy], alpha=0.8,
                    label=f"{strategy}, paper (shifted to our base)")
    ax.set_xticks(range(1, depth + 1))
    ax.set_xlabel("n: conv groups copied from the source network")
    ax.set_ylabel("test accuracy on task B")
    ax.set_title("Yosinski et al. 2014 at laptop scale")
    ax.legend(fontsize=8)
    return ax


def plot_lp_ft(runs: pd.DataFrame, ood: list[str], ax: Axes | None = None) -> Axes:
    """Grouped bars: in-distribution accuracy and accuracy under each corruption, per strategy.

    Args:
        runs: ``LabResult.runs`` of ``ftkit.lab.transfer_lab.lp_ft`` (columns strategy,
            acc, acc_<corruption>); bars are means over seeds, error bars 1 s.e.m.
        ood: the corruptions to show, in order.
    """
    ax = ax if ax is not None else _new_axes((7, 4.2))
    cols = ["acc", *[f"acc_{c}" for c in ood]]
    labels = ["ID", *ood]
    strategies = list(dict.fromkeys(runs.strategy))
    width = 0.8 / len(strategies)
    x = np.arange(len(cols))
    for i, s in enumerate(strategies):
        rows = runs[runs.strategy == s][cols]
        sem = rows.std().fillna(0) / np.sqrt(len(rows))
        ax.bar(x + (i - (len(strategies) - 1) / 2) * width, rows.mean(), width, yerr=sem,
               capsize=2, label=s)
    ax.set_xticks(x, labels)
    ax.set_ylabel("test accuracy on task B")
    ax.set_title("LP, FT and LP-FT: in distribution and under corruptions")
    ax.legend(fontsize=8)
    return ax


def plot_surgical(table: pd.DataFrame, ax: Axes | None = None, *, highlight: tuple | None = None) -> Axes:
    """Heatmap of shift x tuned group (``surgical_table``), accuracy minus tuning everything.

    Args:
        table: rows shifts, columns groups ("none", stem ... head, "all").
        highlight: ``(row label, column)`` to outline (the widget's choice).
    """
    ax = ax if ax is not None else _new_axes((7, 0.8 + 0.7 * len(table)))
    values = table.to_numpy(dtype=float)
    lim = max(np.nanmax(np.abs(values)), 1e-3)
    im = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:+.3f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(values.shape[1]), list(table.columns))
    ax.set_yticks(range(values.shape[0]), list(table.index))
    if highlight is not None and highlight[0] in table.index and highlight[1] in table.columns:
        i, j = list(table.index).index(highlight[0]), list(table.columns).index(highlight[1])
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, ec="k"))
    ax.set_xlabel("the only group that learns")
    ax.set_title("Surgical fine-tuning: accuracy minus tuning all groups")
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return ax


def plot_shift_examples(examples: dict, per_row: int = 8, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """One row of images per named ``TensorTask`` (e.g. clean, then each corruption); returns the Axes array.

    Args:
        examples: name -> ``ftkit.data.shifts.TensorTask`` (normalised images).
        per_row: images shown per task (the first ones).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), per_row, figsize=(per_row * 0.9, len(examples) * 1.0),
                             squeeze=False)
    m = np.asarray(mean).reshape(3, 1, 1)
    s = np.asarray(std).reshape(3, 1, 1)
    for row, (name, task) in zip(axes, examples.items()):
        for j, ax in enumerate(row):
            ax.set_axis_off()
            if j < len(task):
                img = np.clip(task.X[j].numpy() * s + m, 0, 1).transpose(1, 2, 0)
                ax.imshow(img)
                ax.set_title(task.classes[int(task.y[j])], fontsize=6)
        row[0].text(-0.3, 0.5, name, transform=row[0].transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return axes

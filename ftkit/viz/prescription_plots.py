"""Plots for the course's prescriptions (lessons 05, 06, 08): data in, Axes out.

Each function takes a table that ``ftkit.lab.freezing``, ``ftkit.lab.classical_study``
or ``ftkit.lab.cv_study`` returned (or its summary) and draws it; nothing
here trains or computes a result.

>>> ax = plot_freeze_depth(summarise(study.runs, ["data", "n_per_class", "k"]))   # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

__all__ = ["plot_freeze_depth", "plot_strategy_bars", "plot_cost_accuracy", "plot_cost_vs_size",
           "plot_estimates", "plot_lr_picks", "plot_fold_balance"]


def _new_axes(figsize=(7, 4.5)) -> Axes:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _need(table: pd.DataFrame, cols) -> None:
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise KeyError(f"the table lacks columns {missing}; it has {list(table.columns)}")


def plot_freeze_depth(summary: pd.DataFrame, ax: Axes | None = None, *, group_names=None) -> Axes:
    """Accuracy vs k frozen groups, one line per (data, n_per_class), ±1 std bars; scratch (k=-1) dashed.

    ``summary``: ``ftkit.lab.fair.summarise(study.runs, ["data", "n_per_class", "k"])``.
    """
    _need(summary, ["data", "n_per_class", "k", "mean", "std"])
    ax = ax or _new_axes()
    for i, ((data, n), rows) in enumerate(summary.groupby(["data", "n_per_class"], sort=False)):
        color = f"C{i}"
        body = rows[rows["k"] >= 0].sort_values("k")
        ax.errorbar(body["k"], body["mean"], yerr=body["std"], marker="o", capsize=3, color=color,
                    label=f"{data}, {n}/class")
        scratch = rows[rows["k"] < 0]
        if len(scratch):
            ax.axhline(float(scratch["mean"].iloc[0]), color=color, ls="--", lw=1,
                       label=f"{data}, {n}/class: scratch")
    ks = sorted(int(k) for k in summary["k"].unique() if k >= 0)
    ax.set_xticks(ks)
    if group_names is not None:
        ax.set_xticklabels([f"{k}\n{'all but head' if k == len(group_names) - 1 else ''}" for k in ks])
    ax.set_xlabel("k: groups frozen from the input side (0 = fine-tune everything)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title("How many groups to freeze?")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_strategy_bars(summary: pd.DataFrame, ax: Axes | None = None, *, title: str = "") -> Axes:
    """One bar per strategy (mean ± std over seeds) with each seed's value as a dot.

    ``summary``: ``ftkit.lab.fair.summarise(runs, ["strategy"])``.
    """
    _need(summary, ["strategy", "mean", "std", "min", "max"])
    ax = ax or _new_axes((5, 4))
    x = np.arange(len(summary))
    ax.bar(x, summary["mean"], yerr=summary["std"], capsize=4, color=[f"C{i}" for i in x], alpha=0.8)
    ax.scatter(x, summary["min"], color="k", s=10, zorder=3, label="worst seed")
    ax.scatter(x, summary["max"], color="k", marker="^", s=10, zorder=3, label="best seed")
    ax.set_xticks(x)
    ax.set_xticklabels(summary["strategy"])
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_cost_accuracy(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Wall time (log) vs accuracy, one marker per method and data size (means over seeds).

    ``table``: the first element of ``ftkit.lab.classical_study.classical_vs_finetune``.
    """
    _need(table, ["method", "n_per_class", "acc", "time_s"])
    ax = ax or _new_axes()
    m = table.groupby(["method", "n_per_class"], sort=False)[["acc", "time_s"]].mean().reset_index()
    for i, (method, rows) in enumerate(m.groupby("method", sort=False)):
        ax.plot(rows["time_s"], rows["acc"], marker="o", color=f"C{i}", label=method)
        for r in rows.itertuples():
            ax.annotate(f"{r.n_per_class}", (r.time_s, r.acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("wall time, seconds (log scale; labels: images per class)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy against cost")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_cost_vs_size(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Wall time (log) vs training images per class, one line per method."""
    _need(table, ["method", "n_per_class", "time_s"])
    ax = ax or _new_axes()
    m = table.groupby(["method", "n_per_class"], sort=False)["time_s"].mean().reset_index()
    for i, (method, rows) in enumerate(m.groupby("method", sort=False)):
        ax.plot(rows["n_per_class"], rows["time_s"], marker="o", color=f"C{i}", label=method)
    ax.set_yscale("log")
    ax.set_xlabel("training images per class")
    ax.set_ylabel("wall time, seconds (log scale)")
    ax.set_title("How the cost grows with the data")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_estimates(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Each repeat's estimate per method (jittered dots) and the deployed model's test accuracy (line).

    ``table``: ``ftkit.lab.cv_study.split_spread``.
    """
    _need(table, ["method", "estimate", "deployed_acc"])
    ax = ax or _new_axes((6, 4))
    rng = np.random.default_rng(0)
    methods = list(dict.fromkeys(table["method"]))
    for i, method in enumerate(methods):
        est = table.loc[table["method"] == method, "estimate"].to_numpy()
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(est)), est, s=14, color=f"C{i}", alpha=0.7)
        ax.errorbar(i + 0.25, est.mean(), yerr=est.std(ddof=1), fmt="s", color="k", capsize=4)
    ax.axhline(float(table["deployed_acc"].iloc[0]), color="k", ls="--", lw=1,
               label="test accuracy of the model trained on every image")
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods)
    ax.set_ylabel("estimated accuracy (one dot per random split)")
    ax.set_title("How much does the estimate depend on the split?")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_lr_picks(picks: pd.DataFrame, test_by_lr: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """How often each method picked each LR (bars) and each LR's test accuracy (line, right axis)."""
    _need(picks, ["method", "lr"])
    _need(test_by_lr, ["lr", "test_acc"])
    ax = ax or _new_axes()
    lrs = list(test_by_lr["lr"])
    x = np.arange(len(lrs))
    methods = list(dict.fromkeys(picks["method"]))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        counts = picks[picks["method"] == method]["lr"].value_counts()
        ax.bar(x + i * width - 0.4 + width / 2, [counts.get(lr, 0) for lr in lrs], width, color=f"C{i}",
               label=f"picked by {method}")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{lr:.0e}" for lr in lrs])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("times picked")
    twin = ax.twinx()
    twin.plot(x, test_by_lr["test_acc"], "k--o", label="test accuracy (trained on every image)")
    twin.set_ylabel("test accuracy")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    ax.set_title("Choosing the LR: one split vs k folds")
    return ax


def plot_fold_balance(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Worst class-share gap of a validation fold, stratified vs plain folds (one dot per repeat)."""
    _need(table, ["folds", "worst_class_gap"])
    ax = ax or _new_axes((5, 4))
    rng = np.random.default_rng(0)
    kinds = list(dict.fromkeys(table["folds"]))
    for i, kind in enumerate(kinds):
        gap = table.loc[table["folds"] == kind, "worst_class_gap"].to_numpy()
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(gap)), gap, s=14, color=f"C{i}", alpha=0.7)
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels(kinds)
    ax.set_ylabel("worst gap between a class's share in a fold\nand in the data (percentage points)")
    ax.set_title("Stratified folds keep the class shares")
    ax.grid(alpha=0.3, axis="y")
    return ax

"""Plots of the four-scenario grid: data in (a ``ScenarioResult``), Axes out.

>>> ax = plot_best_heatmap(result)            # doctest: +SKIP
>>> ax = plot_course_verdicts(result)         # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

__all__ = ["plot_best_heatmap", "plot_course_verdicts", "plot_cell_bars", "plot_similarity"]


def _new_axes(size=(6.5, 4)) -> Axes:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=size)
    return ax


def _layout(result):
    """Rows: data sets, most similar first; columns: sizes."""
    order = result.similarity.sort_values("score", ascending=False)["dataset"].tolist()
    sizes = sorted(int(n) for n in result.runs["n_per_class"].unique())
    return order, sizes


def _grid_axes(ax: Axes, rows, cols, result) -> None:
    scores = result.similarity.set_index("dataset")["score"]
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [f"{r}\n(sim {scores[r]:+.2f})" for r in rows])
    ax.set_xlabel("training images per class")


def plot_best_heatmap(result, ax: Axes | None = None, tie_sigmas: float = 2.0) -> Axes:
    """Best strategy per cell (text) and its margin over the runner-up (colour); '=' marks a tie."""
    ax = ax or _new_axes()
    rows, cols = _layout(result)
    best = result.best(tie_sigmas).set_index(["dataset", "n_per_class"])
    margin = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if (r, c) not in best.index:
                ax.text(j, i, "not\nmeasured", ha="center", va="center", fontsize=8, color="grey")
                continue
            b = best.loc[(r, c)]
            margin[i, j] = b["margin"]
            tie = "=" if len(b["tied"]) > 1 else ""
            ax.text(j, i, f"{b['best']}\n{b['best_acc']:.2f}, +{b['margin']:.2f}{tie}", ha="center", va="center",
                    fontsize=8)
    im = ax.imshow(np.nan_to_num(margin, nan=0.0), cmap="Greens", vmin=0, aspect="auto")
    ax.figure.colorbar(im, ax=ax, label="margin over the runner-up")
    _grid_axes(ax, rows, cols, result)
    ax.set_title("measured: best strategy (accuracy, margin; '=' tied)")
    return ax


def plot_course_verdicts(result, ax: Axes | None = None, tie_sigmas: float = 2.0) -> Axes:
    """The course's prescription per cell, green where the grid agrees and red where it does not."""
    ax = ax or _new_axes()
    rows, cols = _layout(result)
    table = result.course_table(tie_sigmas).set_index(["dataset", "n_per_class"])
    colour = np.full((len(rows), len(cols)), 0.5)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if (r, c) not in table.index:
                continue
            t = table.loc[(r, c)]
            colour[i, j] = {"agrees": 1.0, "disagrees": 0.0}.get(t["verdict"], 0.5)
            gap = "" if t["verdict"] != "disagrees" else f"\n-{t['gap']:.2f}"
            ax.text(j, i, f"{t['course_pick'] or '?'}\n{t['verdict']}{gap}", ha="center", va="center", fontsize=8)
    ax.imshow(colour, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    _grid_axes(ax, rows, cols, result)
    ax.set_title("the course's table: agrees / disagrees")
    return ax


def plot_cell_bars(result, dataset: str, n_per_class: int, ax: Axes | None = None) -> Axes:
    """Every strategy's mean accuracy in one cell, with ±1 standard error and the seeds as dots."""
    ax = ax or _new_axes((6, 3.5))
    s = result.summary()
    cell = s[(s["dataset"] == dataset) & (s["n_per_class"] == n_per_class)].sort_values("acc_mean")
    if cell.empty:
        raise ValueError(f"the grid has no cell ({dataset!r}, {n_per_class}); it has "
                         f"{sorted(set(zip(s['dataset'], s['n_per_class'])))}")
    y = np.arange(len(cell))
    ax.barh(y, cell["acc_mean"], xerr=cell["acc_sem"], color="tab:blue", alpha=0.6)
    runs = result.runs[(result.runs["dataset"] == dataset) & (result.runs["n_per_class"] == n_per_class)]
    for k, name in enumerate(cell["strategy"]):
        ax.plot(runs.loc[runs["strategy"] == name, "acc"], np.full((runs["strategy"] == name).sum(), k), "k.")
    ax.set_yticks(y, cell["strategy"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy (bar: mean ± s.e.; dots: seeds)")
    ax.set_title(f"{dataset}, {n_per_class} images per class")
    return ax


def plot_similarity(table, ax: Axes | None = None) -> Axes:
    """Pretrained-feature vs raw-pixel probe accuracy per data set, with the catalogue's label."""
    ax = ax or _new_axes((6, 3.5))
    t = table.sort_values("score")
    y = np.arange(len(t))
    ax.barh(y - 0.2, t["pretrained_acc"], height=0.4, label="pretrained features")
    ax.barh(y + 0.2, t["pixel_acc"], height=0.4, label="raw pixels")
    ax.set_yticks(y, [f"{d} ({c}): {s:+.2f}" for d, c, s in zip(t["dataset"], t["catalogue"], t["score"])])
    ax.set_xlim(0, 1)
    ax.set_xlabel("linear-probe test accuracy")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("similarity = features - pixels (catalogue label)")
    return ax

"""Plots: data in, Axes out (matplotlib only; nothing here computes results).

>>> ax = plot_lr_find(lr_find(model, data))     # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

__all__ = ["plot_lr_find", "plot_race", "plot_race_panels", "plot_samples", "plot_predictions",
           "plot_group_params", "plot_softmax", "save_race_figure", "LAPTOP_WIDTH", "LEGEND_SIZE"]

# A JupyterLab cell on a 1366-px laptop screen is about 1000 px wide: at matplotlib's
# 100 dpi a figure up to ~10 inches shows at full size; wider ones are shrunk, and
# their text with them. Legends stay at a size that is read without zooming.
LAPTOP_WIDTH = 10.0   # inches
LEGEND_SIZE = 9.5
TITLE_SIZE = 11


def _new_axes() -> Axes:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(8, 4.5))
    return ax


def plot_lr_find(result, ax: Axes | None = None) -> Axes:
    """Loss against LR from ``ftkit.lr.finder.lr_find``, with every rule's suggestion.

    Shows the smoothed loss (a min-max band over seeds when the test was
    repeated), the curve the rules looked at, and per rule a dashed line and a
    dot at the LR it returns (for ``minimum``, a tenth of the loss minimum,
    which gets a hollow circle) and, with several seeds, a bar over the range
    of its per-seed suggestions (the legend says when the headline lies outside). With several
    param groups: the LR of the lowest group on a second x axis (ratios kept),
    or the groups held fixed.

    Args:
        result: an ``ftkit.lr.result.LRFindResult``.
        ax: where to draw; a new figure when None.

    Returns:
        The Axes.
    """
    ax = ax if ax is not None else _new_axes()
    settings = result.settings
    lrs, smoothed = result.lrs, result.smoothed
    if smoothed.shape[0] == 1:
        ax.plot(lrs, result.losses[0], color="0.75", lw=0.8, label="loss")
        ax.plot(lrs, smoothed[0], color="C0", lw=1.2, label="smoothed")
    elif lrs.size:
        seen = ~np.all(np.isnan(smoothed), axis=0)
        lo = np.nanmin(smoothed[:, seen], axis=0)
        hi = np.nanmax(smoothed[:, seen], axis=0)
        ax.fill_between(lrs[seen], lo, hi, color="C0", alpha=0.25,
                        label=f"min-max over {smoothed.shape[0]} seeds")
        for row in smoothed:
            ax.plot(lrs, row, color="C0", lw=0.5, alpha=0.5)
    if result.curve_lrs.size:
        ax.plot(result.curve_lrs, result.curve_losses, color="C0", lw=2.2,
                label="curve used by the rules")

    for i, (name, s) in enumerate(result.suggestions.items()):
        if not s.ok:
            continue
        color = f"C{i + 1}"
        y = _curve_at(result, s.lr)
        band = _seed_band(result, name)
        label = f"{name}: {s.lr:.2e}"
        if band is not None:
            ax.hlines(y, band[0], band[1], color=color, lw=3, alpha=0.6)
            if not band[0] <= s.lr <= band[1]:
                label += " (outside its seed band)"
        ax.axvline(s.lr, color=color, ls="--", lw=1)
        # The marker sits where the rule's LR is; minimum's LR is a tenth of the loss minimum,
        # which gets a hollow circle of its own.
        ax.plot(s.lr, y, "o", color=color, ms=7, label=label)
        if s.point is not None and not np.isclose(s.point[0], s.lr):
            ax.plot(*s.point, "o", mfc="none", color=color, ms=9, label=f"{name}: from {s.point[0]:.2e}")

    ax.set_xscale("log" if settings.step_mode == "exp" else "linear")
    mode = "validation" if settings.mode == "val" else "training"
    several = len(result.group_lrs) > 1
    ax.set_xlabel(f"learning rate ({settings.reference_group})" if several else "learning rate")
    ax.set_ylabel(f"{mode} loss")
    _zoom(ax, result)
    _group_axis(ax, result)
    title = "LR range test"
    if not result.reliable:
        title += " -- unreliable (see result.notes)"
    if result.interrupted:
        title += " [interrupted]"
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.legend(fontsize=LEGEND_SIZE, loc="upper left")
    return ax


def _curve_at(result, lr: float) -> float:
    """The curve's loss at ``lr`` (log-interpolated; the nearest end outside the curve)."""
    xs, ys = (result.curve_lrs, result.curve_losses) if result.curve_lrs.size else (result.lrs, result.smoothed[0])
    ok = ~np.isnan(ys)
    if not ok.any():
        return float("nan")
    return float(np.interp(np.log(lr), np.log(xs[ok]), ys[ok]))


def _seed_band(result, rule: str) -> tuple[float, float] | None:
    """(min, max) of the rule's suggestion over seeds, when the test ran several seeds."""
    per_seed = [d[rule].lr for d in result.seed_suggestions if rule in d and d[rule].ok]
    if len(result.seed_suggestions) < 2 or not per_seed:
        return None
    return min(per_seed), max(per_seed)


def _zoom(ax: Axes, result) -> None:
    """Keep the divergence at the end from squashing the interesting part."""
    curve = result.curve_losses if result.curve_losses.size else result.smoothed[~np.isnan(
        result.smoothed)]
    if curve.size == 0:
        return
    lo, hi = float(np.min(curve)), float(np.max(curve))
    pad = 0.1 * (hi - lo) if hi > lo else 0.1 * max(abs(hi), 1.0)
    ax.set_ylim(lo - pad, hi + 2 * pad)


def _group_axis(ax: Axes, result) -> None:
    """Per-group LRs: a second x axis for the lowest group, or a note of fixed groups."""
    if len(result.group_lrs) < 2:
        return
    swept, base = result.settings.swept_ratios, result.settings.base_lrs
    fixed = {n: lr for n, lr in base.items() if swept[n] is None}
    if fixed:
        text = "held fixed: " + _first_last([f"{n}={lr:.1e}" for n, lr in fixed.items()])
    else:
        low = min(swept, key=swept.get)
        ratio = swept[low]
        if ratio > 0:
            top = ax.secondary_xaxis("top", functions=(lambda x: x * ratio, lambda x: x / ratio))
            top.set_xlabel(f"learning rate ({low})", fontsize=LEGEND_SIZE)
        text = "ratios kept: " + _first_last([f"{n} x{r:.3g}" for n, r in swept.items()])
    ax.text(0.99, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=LEGEND_SIZE - 1,
            color="0.3")


def _first_last(items: list[str], most: int = 4) -> str:
    """Up to ``most`` items, else the first and last: ten groups in one line would be
    wider than the plot (and tight_layout would shrink the axes to make room)."""
    if len(items) <= most:
        return ", ".join(items)
    return f"{items[0]}, ..., {items[-1]} ({len(items)} groups)"


def plot_race(stats, ax: Axes | None = None, *, metric: str = "val_acc", band: str = "std",
              target: float | None = None) -> Axes:
    """Convergence curves of a race: mean over seeds with a band.

    Args:
        stats: the mean curves, one row per (strategy, step) with ``mean``,
            ``std``, ``min``, ``max``, ``count``: ``RaceResult.mean_curves(metric)``
            or :func:`ftkit.lab.race.mean_curves` (this function computes nothing).
        ax: Axes to draw on (a new figure when None).
        metric: what ``stats`` summarises ("val_acc", "val_loss" or "loss"), for the labels.
        band: "std" (mean +- one std over seeds) or "minmax" (range over seeds).
        target: draw a horizontal line at this value (steps-to-target threshold).

    Returns:
        The Axes.
    """
    if band not in ("std", "minmax"):
        raise ValueError(f"band must be 'std' or 'minmax', not {band!r}")
    missing = {"strategy", "step", "mean", "std", "min", "max", "count"} - set(stats.columns)
    if missing:
        raise TypeError(f"plot_race takes the mean curves (missing columns {sorted(missing)}): pass "
                        f"result.mean_curves({metric!r}) or ftkit.lab.race.mean_curves(curves, {metric!r})")
    ax = ax or _new_axes()
    most = 0
    for name, s in stats.groupby("strategy", sort=False):
        n = int(s["count"].max())
        most = max(most, n)
        (line,) = ax.plot(s["step"], s["mean"], marker="o", ms=3, label=f"{name} (n={n})")
        if n > 1:  # one run has no spread: draw no band rather than a zero-width one
            lo, hi = (s["mean"] - s["std"], s["mean"] + s["std"]) if band == "std" else (s["min"], s["max"])
            ax.fill_between(s["step"], lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target:.2f}")
    ax.set_xlabel("optimizer step (same batches for every strategy)")
    label = {"val_acc": "validation accuracy", "val_loss": "validation loss",
             "loss": "training loss (each batch)"}.get(metric, metric)
    ax.set_ylabel(label)
    if most > 1:
        spread = "band = ±1 std" if band == "std" else "band = min-max"
        ax.set_title(f"{label}: mean over seeds, {spread}", fontsize=TITLE_SIZE)
    else:
        ax.set_title(f"{label}: one seed per curve", fontsize=TITLE_SIZE)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=LEGEND_SIZE)
    return ax



def plot_race_panels(result, axes=None) -> tuple[Axes, Axes]:
    """The race at a glance: validation accuracy (with the target line) and validation loss.

    Args:
        result: a ``RaceResult`` from :func:`ftkit.lab.race.race`.
        axes: two Axes side by side (a new 12x4 figure when None).

    Returns:
        The two Axes (accuracy, loss).
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(LAPTOP_WIDTH, 4.2))
    ax_acc, ax_loss = axes
    plot_race(result.mean_curves("val_acc"), ax_acc, metric="val_acc", target=result.target_acc)
    plot_race(result.mean_curves("val_loss"), ax_loss, metric="val_loss")
    ax_acc.figure.tight_layout()
    return ax_acc, ax_loss

def save_race_figure(result, path) -> None:
    """Draw :func:`plot_race_panels` of ``result`` into the PNG file ``path`` (no display needed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.2))
    plot_race_panels(result, fig.subplots(1, 2))
    fig.savefig(path, dpi=110)


def plot_samples(dataset, n_per_class: int = 6, ax: Axes | None = None, *, seed: int = 0):
    """A grid of example images, one row per class, as the network sees them (de-normalised).

    Returns:
        The Axes holding the grid.
    """
    targets = np.asarray(dataset.targets)
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(len(dataset.classes)):
        idx = np.flatnonzero(targets == c)
        pick = rng.choice(idx, size=min(n_per_class, len(idx)), replace=False)
        imgs = []
        for i in pick:
            x = dataset[int(i)][0].numpy().transpose(1, 2, 0)
            imgs.append(np.clip(x * np.asarray(dataset.std) + np.asarray(dataset.mean), 0, 1))
        while len(imgs) < n_per_class:
            imgs.append(np.ones_like(imgs[0]))
        rows.append(np.concatenate(imgs, axis=1))
    grid = np.concatenate(rows, axis=0)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(n_per_class * 0.9, len(rows) * 0.9))
    ax.imshow(grid)
    size = grid.shape[0] / len(rows)
    ax.set_yticks([size * (i + 0.5) for i in range(len(rows))], dataset.classes)
    ax.set_xticks([])
    ax.set_title(f"{dataset.info.name}: {n_per_class} examples per class at {dataset.image_size}px")
    return ax


def plot_predictions(photos, predictions, axes=None, *, max_label: int = 22):
    """Each photo above a bar chart of its top-k ImageNet classes.

    Args:
        photos: name -> HxWx3 (or HxW) uint8 image, in the order to draw.
        predictions: ``ftkit.models.anatomy.top_predictions`` (photo, rank, category, probability).
        axes: a 2 x len(photos) array of Axes (a new figure when None).
        max_label: category names longer than this are shortened with "...".

    Returns:
        The 2 x n array of Axes.
    """
    names = list(photos)
    if axes is None:
        import matplotlib.pyplot as plt

        width = min(LAPTOP_WIDTH, 2.5 * len(names))
        _, axes = plt.subplots(2, len(names), figsize=(width, 4.4), squeeze=False)
    axes = np.asarray(axes).reshape(2, len(names))
    for j, name in enumerate(names):
        img = np.asarray(photos[name])
        axes[0, j].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[0, j].set_title(name, fontsize=TITLE_SIZE)
        axes[0, j].axis("off")
        rows = predictions[predictions["photo"] == name].sort_values("rank")
        labels = [c if len(c) <= max_label else c[:max_label - 3] + "..." for c in rows["category"]]
        ax = axes[1, j]
        ax.barh(range(len(rows)), rows["probability"], color="C0")
        ax.set_yticks(range(len(rows)), labels, fontsize=LEGEND_SIZE)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability", fontsize=LEGEND_SIZE)
        for k, p in enumerate(rows["probability"]):
            ax.text(min(p + 0.03, 0.72), k, f"{p:.2f}", va="center", fontsize=LEGEND_SIZE - 1)
    axes[0, 0].figure.tight_layout()
    return axes


def plot_group_params(groups, ax: Axes | None = None) -> Axes:
    """Parameters per layer group, input (top) to output (bottom).

    Args:
        groups: ``ftkit.models.anatomy.group_params`` (group, params, share, ...).
        ax: where to draw; a new figure when None.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(8, 0.32 * len(groups) + 1.2))
    y = np.arange(len(groups))
    ax.barh(y, groups["params"], color="C0")
    ax.set_yticks(y, groups["group"], fontsize=LEGEND_SIZE)
    ax.invert_yaxis()
    for k, (n, share) in enumerate(zip(groups["params"], groups["share"])):
        ax.text(n, k, f" {n:,} ({100 * share:.2g}%)", va="center", fontsize=LEGEND_SIZE - 1)
    ax.set_xlim(0, groups["params"].max() * 1.35)
    ax.set_xlabel("parameters")
    ax.set_title("Where the parameters are: input (top) to output (bottom)", fontsize=TITLE_SIZE)
    return ax


def plot_softmax(probabilities, categories, ax: Axes | None = None, *, top_k: int = 5) -> Axes:
    """All class probabilities of one image, sorted: how a 1000-way softmax spreads its mass.

    Args:
        probabilities: 1-D array of the softmax output (sums to 1).
        categories: the class names, same order.
        ax: where to draw; a new figure when None.
        top_k: how many of the largest to name.
    """
    p = np.asarray(probabilities, dtype=float)
    order = np.argsort(p)[::-1]
    ax = ax if ax is not None else _new_axes()
    ax.semilogy(np.arange(1, p.size + 1), p[order], color="C0", lw=1.5)
    for r in range(min(top_k, p.size)):
        ax.plot(r + 1, p[order[r]], "o", color=f"C{r + 1}", label=f"{categories[order[r]]}: {p[order[r]]:.3f}")
    ax.axhline(1 / p.size, color="0.5", ls=":", lw=1, label=f"uniform: 1/{p.size}")
    ax.set_xscale("log")
    ax.set_xlabel("class rank (1 = most likely)")
    ax.set_ylabel("probability (log scale)")
    ax.set_title(f"{p.size} probabilities, sorted; they sum to {p.sum():.3f}", fontsize=TITLE_SIZE)
    ax.legend(fontsize=LEGEND_SIZE, loc="lower left")
    ax.grid(alpha=0.3)
    return ax

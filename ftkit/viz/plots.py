"""Plots: data in, Axes out (matplotlib only; nothing here computes results).

>>> ax = plot_lr_find(lr_find(model, data))     # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

__all__ = ["plot_lr_find", "plot_race", "plot_race_panels", "plot_samples", "save_race_figure"]


def _new_axes() -> Axes:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7, 4.5))
    return ax


def plot_lr_find(result, ax: Axes | None = None) -> Axes:
    """Loss against LR from ``ftkit.lr.finder.lr_find``, with every rule's suggestion.

    Shows the smoothed loss (a min-max band over seeds when the test was
    repeated), the curve the rules looked at, and per rule a dashed line at the
    suggested LR and a dot at the point of the curve it comes from (for
    ``minimum`` the dot is the minimum, the line a tenth of it). With several
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
        ax.axvline(s.lr, color=color, ls="--", lw=1)
        ax.plot(*s.point, "o", color=color, ms=7, label=f"{name}: {s.lr:.2e}")

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
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return ax


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
            top.set_xlabel(f"learning rate ({low})", fontsize=8)
        text = "ratios kept: " + _first_last([f"{n} x{r:.3g}" for n, r in swept.items()])
    ax.text(0.99, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
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
    for name, s in stats.groupby("strategy", sort=False):
        lo, hi = (s["mean"] - s["std"], s["mean"] + s["std"]) if band == "std" else (s["min"], s["max"])
        n = int(s["count"].max())
        (line,) = ax.plot(s["step"], s["mean"], marker="o", ms=3, label=f"{name} (n={n})")
        ax.fill_between(s["step"], lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target:.2f}")
    ax.set_xlabel("optimizer step (same batches for every strategy)")
    ax.set_ylabel({"val_acc": "validation accuracy", "val_loss": "validation loss",
                   "loss": "training loss (each batch)"}.get(metric, metric))
    ax.set_title(f"{metric}: mean over seeds, band = {'±1 std' if band == 'std' else 'min-max'}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
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

        _, axes = plt.subplots(1, 2, figsize=(12, 4.2))
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

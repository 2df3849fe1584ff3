"""Plots for seeing features by depth and gradients by depth: data in, Axes out.

Every function takes the result of one ``ftkit.analysis`` function and an
optional Axes (or array of Axes) and returns what it drew on.

>>> plot_filter_grid(first_layer_filters(model).weight)        # doctest: +SKIP
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

__all__ = [
    "tile", "plot_filter_grid", "plot_activation_maps", "plot_top_patches", "plot_feature_vis", "plot_cams",
    "plot_probes", "plot_movement", "plot_embeddings", "plot_gradient_flow",
]


def _axes(ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] = (4.0, 3.5)):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    return axes if nrows * ncols > 1 else axes[0, 0]


def tile(images: np.ndarray, ncols: int | None = None, *, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """``(N, h, w, 3)`` (or ``(N, h, w)``) images -> one grid image with ``pad`` pixels of ``fill`` between."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), fill, dtype=np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, ncols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = img
    return grid if c > 1 else grid[..., 0]


def plot_filter_grid(weight: np.ndarray, ax: Axes | None = None, *, title: str = "", ncols: int = 8) -> Axes:
    """First-layer filters as small RGB images (each scaled on its own; grey = 0)."""
    from ftkit.analysis.filters import filter_images

    ax = ax or _axes(size=(4.5, 3))
    ax.imshow(tile(filter_images(weight), ncols, fill=1.0), interpolation="nearest")
    ax.set_title(title or f"{len(weight)} filters {weight.shape[2]}x{weight.shape[3]}")
    ax.axis("off")
    return ax


def plot_activation_maps(acts, image: int = 0, groups: Sequence[str] | None = None, *, k: int = 6,
                         mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                         axes=None):
    """One row per depth: the image, then its ``k`` most active channels' maps at that depth.

    Args:
        acts: :class:`ftkit.analysis.activations.Activations`.
        image: which image of the batch.
        groups: the depths (rows); default every depth in ``acts``.
    """
    from ftkit.analysis.patches import to_rgb

    groups = list(groups or acts.groups)
    if axes is None:
        axes = _axes(k + 1, len(groups), size=(1.35, 1.35))
    axes = np.asarray(axes).reshape(len(groups), k + 1)
    rgb = to_rgb(acts.images[image], mean, std)
    for row, group in zip(axes, groups):
        order, maps = acts.top_channels(group, image, k)
        row[0].imshow(rgb)
        row[0].set_ylabel(f"{group}\n{maps.shape[1]}x{maps.shape[2]}", fontsize=8)
        for ax, c, m in zip(row[1:], order, maps):
            ax.imshow(m, cmap="magma", interpolation="nearest")
            ax.set_title(f"ch {c}", fontsize=7, pad=2)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in row[1 + len(order):]:
            ax.axis("off")
    axes[0, 0].set_title("input", fontsize=8)
    axes[0, 0].figure.tight_layout(pad=0.3)
    return axes


def plot_top_patches(top, ax: Axes | None = None, *, mean: Sequence[float] = (0.485, 0.456, 0.406),
                     std: Sequence[float] = (0.229, 0.224, 0.225), ncols: int = 3, title: str = "") -> Axes:
    """The patches that excite one channel most, cut to its receptive field (Zeiler & Fergus style)."""
    from ftkit.analysis.patches import to_rgb

    ax = ax or _axes(size=(2.5, 2.7))
    ax.imshow(tile(to_rgb(top.patches, mean, std), ncols, pad=max(1, top.rf.size // 16)), interpolation="nearest")
    ax.set_title(title or f"{top.layer} ch {top.channel}\nRF {top.rf.size}px", fontsize=9)
    ax.axis("off")
    return ax


def plot_feature_vis(vis, axes=None, *, labels: Sequence[str] | None = None):
    """One optimised image per target, titled with its layer and channel."""
    n = len(vis.targets)
    axes = np.atleast_1d(axes if axes is not None else _axes(n, size=(1.9, 2.1))).ravel()
    for i, (ax, img, (layer, c)) in enumerate(zip(axes, vis.images, vis.targets)):
        ax.imshow(img)
        ax.set_title(labels[i] if labels else f"{layer}\nch {c}", fontsize=8)
        ax.axis("off")
    return axes


def plot_cams(images, cams: dict, *, mean: Sequence[float] = (0.485, 0.456, 0.406),
              std: Sequence[float] = (0.229, 0.224, 0.225), class_names: Sequence[str] | dict | None = None,
              axes=None):
    """Rows: the images, then one row per CAM result (``name -> CamResult``) as a heat map over the image.

    ``class_names``: one list for every row, or a dict row name -> list; titles
    give each map's class and its probability."""
    from ftkit.analysis.patches import to_rgb

    rgb = to_rgb(images, mean, std)
    rows = 1 + len(cams)
    if axes is None:
        axes = _axes(len(rgb), rows, size=(1.5, 1.6))
    axes = np.asarray(axes).reshape(rows, len(rgb))
    for j, img in enumerate(rgb):
        axes[0, j].imshow(img)
    axes[0, 0].set_ylabel("image", fontsize=8)
    for i, (name, cam) in enumerate(cams.items(), start=1):
        for j, img in enumerate(rgb):
            axes[i, j].imshow(img.mean(-1), cmap="gray")
            axes[i, j].imshow(cam.maps[j], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            names = class_names.get(name) if isinstance(class_names, dict) else class_names
            label = names[cam.classes[j]][:12] if names is not None else str(cam.classes[j])
            axes[i, j].set_title(f"{label} {cam.probs[j]:.2f}", fontsize=7, pad=2)
        axes[i, 0].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].figure.tight_layout(pad=0.3)
    return axes


def plot_probes(tables: dict[str, pd.DataFrame], ax: Axes | None = None, *, chance: dict | None = None) -> Axes:
    """Validation accuracy of the probe at each depth, one line per data set, its best depth marked."""
    ax = ax or _axes(size=(7, 4))
    for name, t in tables.items():
        line, = ax.plot(t.depth, t.val_acc, marker="o", label=name)
        best = t.loc[t.val_acc.idxmax()]
        ax.plot([best.depth], [best.val_acc], marker="*", ms=16, color=line.get_color())
        if chance and name in chance:
            ax.axhline(chance[name], color=line.get_color(), ls=":", lw=1)
    first = next(iter(tables.values()))
    ax.set_xticks(first.depth, first.group, rotation=35, ha="right", fontsize=8)
    ax.set_xlabel("layer group (input -> output)")
    ax.set_ylabel("probe accuracy (validation)")
    ax.set_title("Linear probe by depth (star: best depth; dotted: chance)")
    ax.legend()
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax


def plot_movement(table: pd.DataFrame, axes=None):
    """Two panels by group: relative weight drift and CKA to the pretrained features."""
    axes = np.asarray(axes if axes is not None else _axes(2, size=(4.2, 3.6))).ravel()
    ax_d, ax_c = axes[0], axes[1]
    ax_d.bar(table.depth, table.drift, color="tab:orange")
    ax_d.set_ylabel("weight drift ||w - w0|| / ||w0||")
    ax_c.bar(table.depth, table.cka, color="tab:blue")
    ax_c.set_ylabel("CKA to pretrained features")
    ax_c.set_ylim(0, 1.05)
    for ax, title in ((ax_d, "How far the weights moved"), (ax_c, "How similar the features stayed")):
        ax.set_xticks(table.depth, table.group, rotation=40, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    ax_d.figure.tight_layout()
    return axes


def plot_embeddings(embeddings: Sequence, class_names: Sequence[str] | None = None, axes=None):
    """One t-SNE scatter per depth, coloured by class; titles carry the 5-NN accuracy in the plane."""
    axes = np.atleast_1d(axes if axes is not None else _axes(len(embeddings), size=(3.8, 3.6))).ravel()
    for ax, emb in zip(axes, embeddings):
        sc = ax.scatter(emb.xy[:, 0], emb.xy[:, 1], c=emb.y, cmap="tab10", s=9, vmin=0, vmax=9)
        ax.set_title(f"{emb.group}: 5-NN acc {emb.knn_acc:.2f}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if class_names is not None:
        handles = [ax.scatter([], [], color=sc.cmap(sc.norm(i)), s=12) for i in range(len(class_names))]
        axes[-1].legend(handles, class_names, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes[0].figure.tight_layout()
    return axes


def plot_gradient_flow(flows: dict, axes=None):
    """Left: gradient norm per weight layer at initialisation (log scale), one line per network.
    Right: bottom/top gradient ratio over the training steps."""
    axes = np.asarray(axes if axes is not None else _axes(2, size=(4.6, 3.8))).ravel()
    for name, flow in flows.items():
        line, = axes[0].semilogy(flow.init.depth, flow.init.grad_norm.clip(lower=1e-30), marker=".", label=name)
        ratio = flow.ratio_by_step()
        axes[1].semilogy(ratio.index, ratio.clip(lower=1e-30).values, marker="o", color=line.get_color(), label=name)
    axes[0].set_xlabel("weight layer (input -> output)")
    axes[0].set_ylabel("gradient norm at init")
    axes[0].set_title("Gradient size by depth", fontsize=10)
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("first / last layer gradient")
    axes[1].set_title("Bottom/top ratio while training", fontsize=10)
    axes[1].axhline(1.0, color="grey", lw=0.8, ls=":")
    for ax in axes:
        ax.grid(alpha=0.3, which="major")
    axes[0].legend(fontsize=8)
    axes[0].figure.tight_layout()
    return axes

"""Widgets for lessons 03 and 04: pick a depth, a channel, an image -- or a network -- and see.

Nothing is recomputed that was computed before: :class:`FeatureExplorer`
indexes into activation maps computed once
(:func:`ftkit.analysis.activations.activation_maps`), so a redraw costs one
small matplotlib figure. :class:`GradientExplorer` builds a toy network and
runs one backward pass (:func:`ftkit.analysis.gradients.gradient_norms`).
Each widget has ``redraw()``/``run()`` doing what its controls do, for tests
and papermill.

>>> FeatureExplorer(activation_maps(model, images), mean=bb.mean, std=bb.std)   # doctest: +SKIP
"""
from __future__ import annotations

import io
import time
from typing import Sequence

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ftkit.analysis.gradients import bottom_top_ratio, gradient_norms
from ftkit.analysis.patches import to_rgb
from ftkit.models.deepnets import ACTIVATIONS, deep_net

__all__ = ["FeatureExplorer", "GradientExplorer"]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


class FeatureExplorer(widgets.VBox):
    """Depth slider, channel picker (by activity rank) and image picker over precomputed maps.

    The figure: the image, the chosen channel's map over it, and the top 8
    channels at that depth. ``last_redraw_s`` is the wall time the last redraw
    took, ``last_redraw_cpu_s`` its CPU time (what a busy machine does not inflate).
    """

    def __init__(self, acts, *, mean: Sequence[float], std: Sequence[float], k: int = 8) -> None:
        self.acts, self.mean, self.std, self.k = acts, mean, std, k
        self.depth = widgets.SelectionSlider(options=acts.groups, value=acts.groups[0], description="depth",
                                             continuous_update=False, layout=widgets.Layout(width="420px"))
        self.channel = widgets.Dropdown(description="channel", layout=widgets.Layout(width="260px"))
        self.image_pick = widgets.Dropdown(options=[(f"image {i}", i) for i in range(len(acts.images))], value=0,
                                           description="image", layout=widgets.Layout(width="200px"))
        self.view = widgets.Image(format="png")
        self.status = widgets.HTML()
        self.last_redraw_s = self.last_redraw_cpu_s = float("nan")
        self._channels()
        for w in (self.depth, self.image_pick):
            w.observe(self._on_source, names="value")
        self.channel.observe(lambda _c: self.redraw(), names="value")
        super().__init__([widgets.HBox([self.depth, self.image_pick]), widgets.HBox([self.channel, self.status]),
                          self.view])
        self.redraw()

    def _channels(self) -> None:
        order = self.acts.channel_order(self.depth.value, self.image_pick.value)
        m = self.acts.maps[self.depth.value][self.image_pick.value].mean(dim=(1, 2)).numpy()
        opts = [(f"#{r + 1}: ch {c} (mean {m[c]:.2f})", int(c)) for r, c in enumerate(order)]
        self._building = True
        try:
            self.channel.options = opts
            self.channel.value = opts[0][1]
        finally:
            self._building = False

    def _on_source(self, _change) -> None:
        self._channels()
        self.redraw()

    def figure(self) -> Figure:
        """The figure for the current depth, channel and image (a bare Figure, no pyplot state)."""
        group, image, channel = self.depth.value, self.image_pick.value, self.channel.value
        rgb = to_rgb(self.acts.images[image], self.mean, self.std)
        maps = self.acts.maps[group][image]                                   # (C, H, W)
        order = self.acts.channel_order(group, image)[:self.k]
        fig = Figure(figsize=(9, 3.4))
        grid = fig.add_gridspec(2, 2 + self.k // 2, width_ratios=[2, 2] + [1] * (self.k // 2))
        ax_img, ax_map = fig.add_subplot(grid[:, 0]), fig.add_subplot(grid[:, 1])
        ax_img.imshow(rgb)
        ax_img.set_title(f"image {image}", fontsize=9)
        up = torch.nn.functional.interpolate(maps[channel][None, None], size=rgb.shape[:2], mode="nearest")[0, 0]
        ax_map.imshow(rgb.mean(-1), cmap="gray")
        ax_map.imshow(up.numpy(), cmap="magma", alpha=0.65)
        ax_map.set_title(f"{group} ch {channel} ({maps.shape[1]}x{maps.shape[2]})", fontsize=9)
        for i, c in enumerate(order):
            ax = fig.add_subplot(grid[i // (self.k // 2), 2 + i % (self.k // 2)])
            ax.imshow(maps[c].numpy(), cmap="magma", interpolation="nearest")
            ax.set_title(f"ch {c}", fontsize=7, color="tab:red" if c == channel else "black", pad=2)
            ax.axis("off")
        for ax in (ax_img, ax_map):
            ax.axis("off")
        fig.tight_layout(pad=0.4)
        return fig

    def redraw(self) -> None:
        """Draw the current choice (what moving a control does)."""
        if getattr(self, "_building", False) or self.channel.value is None:
            return
        t0, c0 = time.perf_counter(), time.process_time()
        self.view.value = _png(self.figure())
        self.last_redraw_s = time.perf_counter() - t0
        self.last_redraw_cpu_s = time.process_time() - c0
        self.status.value = f"redrawn in {self.last_redraw_s:.2f} s"


class GradientExplorer(widgets.VBox):
    """Build a deep toy network from the controls and show its gradient norm per layer at init.

    Args:
        x, y: one batch to take the gradient on.
        depth, width: starting values of the sliders.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, depth: int = 20, width: int = 64) -> None:
        self.x, self.y = x, y
        self.controls = {
            "depth": widgets.IntSlider(value=depth, min=2, max=60, description="depth", continuous_update=False),
            "activation": widgets.Dropdown(options=list(ACTIVATIONS), value="sigmoid", description="activation"),
            "norm": widgets.Checkbox(value=False, description="BatchNorm"),
            "residual": widgets.Checkbox(value=False, description="residual"),
        }
        self.width = width
        self.view = widgets.Image(format="png")
        self.status = widgets.HTML()
        self.table = None
        for w in self.controls.values():
            w.observe(lambda _c: self.run(), names="value")
        c = self.controls
        super().__init__([widgets.HBox([c["depth"], c["activation"]]), widgets.HBox([c["norm"], c["residual"],
                                                                                      self.status]), self.view])
        self.run()

    def run(self):
        """Build the network the controls describe and draw its gradient norms (returns the table)."""
        s = {k: w.value for k, w in self.controls.items()}
        net = deep_net(tuple(self.x.shape[1:]), int(self.y.max()) + 1, width=self.width, **s)
        self.table = gradient_norms(net, self.x, self.y)
        ratio = bottom_top_ratio(self.table)
        fig = Figure(figsize=(6.5, 3.2))
        ax = fig.subplots()
        ax.semilogy(self.table.depth, np.clip(self.table.grad_norm, 1e-30, None), marker=".")
        ax.set_xlabel("weight layer (input -> output)")
        ax.set_ylabel("gradient norm at init")
        ax.set_title(f"first/last = {ratio:.1e}", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        self.view.value = _png(fig)
        self.status.value = f"first/last layer gradient: {ratio:.1e}"
        return self.table

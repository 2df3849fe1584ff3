"""Gradient flow: how large the gradient is at each depth, at initialisation and in training.

Backpropagation multiplies, layer by layer, by each activation's derivative
and each weight matrix. With sigmoid (derivative at most 1/4) or saturated
tanh, the product shrinks geometrically on the way down: the lowest layers of
a deep plain network get gradients orders of magnitude smaller than the top
and barely learn (Hochreiter 1991; Bengio, Simard & Frasconi 1994; Glorot &
Bengio 2010). ReLU, BatchNorm (Ioffe & Szegedy 2015) and residual
connections (He et al. 2016) keep the product near 1.

Each weight matrix/kernel (tensors with 2 or more dimensions) is one row, in
registration order; biases and norm parameters are left out.

>>> table = gradient_norms(model, x, y)             # doctest: +SKIP
>>> bottom_top_ratio(table)                         # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ftkit.core.runtime import restore_modes, save_modes
from ftkit.training.loop import fit

__all__ = ["GradientRecorder", "GradientFlow", "gradient_norms", "gradient_flow", "bottom_top_ratio"]


def _weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    found = [(n, p) for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]
    if not found:
        raise ValueError(f"{type(model).__name__} has no trainable weight matrix or kernel")
    return found


def _rows(model: nn.Module) -> list[dict]:
    rows = []
    for depth, (name, p) in enumerate(_weights(model)):
        g = float(p.grad.norm()) if p.grad is not None else 0.0
        w = float(p.detach().norm())
        rows.append({"layer": name, "depth": depth, "grad_norm": g, "weight_norm": w,
                     "grad_to_weight": g / w if w > 0 else float("nan")})
    return rows


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """Per weight tensor, the norm of the cross-entropy gradient on one batch (train mode, as in
    training: BatchNorm uses the batch's statistics, whose running averages are restored afterwards).

    The model's weights, buffers, ``.grad`` fields and modes come back unchanged.

    Returns:
        ``layer, depth, grad_norm, weight_norm, grad_to_weight``, input to output.
    """
    _weights(model)  # fail early when there is nothing to measure
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    modes = save_modes(model)
    model.train()
    try:
        for p in params:
            p.grad = None
        F.cross_entropy(model(x), y).backward()
        return pd.DataFrame(_rows(model))
    finally:
        restore_modes(modes)
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(buffers[n])
        for p, g in zip(params, saved_grads):
            p.grad = g


class GradientRecorder:
    """A :func:`ftkit.training.loop.fit` callback: per-layer gradient norms every ``every`` steps
    (read after the backward pass, before the next step clears them)."""

    def __init__(self, model: nn.Module, every: int = 1):
        if every < 1:
            raise ValueError(f"every must be >= 1, not {every}")
        self.model, self.every, self.rows = model, every, []

    def on_step(self, history: Any, row: dict) -> None:
        if row["step"] == 1 or row["step"] % self.every == 0:
            self.rows.extend({"step": row["step"], "loss": row["loss"], **r} for r in _rows(self.model))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


@dataclass
class GradientFlow:
    """``init``: :func:`gradient_norms` before training; ``during``: the same per recorded
    step (plus ``step`` and ``loss``); ``history``: the fit's History."""

    init: pd.DataFrame
    during: pd.DataFrame
    history: Any

    def ratio_by_step(self) -> pd.Series:
        """:func:`bottom_top_ratio` at every recorded step."""
        return self.during.groupby("step").apply(bottom_top_ratio, include_groups=False)


def gradient_flow(model: nn.Module, train: Dataset, val: Dataset | None = None, *, steps: int = 100,
                  every: int = 10, batch_size: int = 64, seed: int = 0, **fit_kw: Any) -> GradientFlow:
    """Gradient norms at initialisation (on the first training batch) and every ``every`` steps of
    ``fit(model, train, val, max_steps=steps, ...)``; ``fit_kw`` go to :func:`fit` (lr, optimizer...)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, generator=g)
    x, y = next(iter(first))
    device = next(model.parameters()).device
    init = gradient_norms(model, x.to(device), torch.as_tensor(y).to(device))
    rec = GradientRecorder(model, every)
    fit_kw.setdefault("progress", False)
    history = fit(model, train, val, max_steps=steps, batch_size=batch_size, seed=seed, callbacks=[rec], **fit_kw)
    return GradientFlow(init, rec.frame(), history)


def bottom_top_ratio(table: pd.DataFrame, *, bottom: int = 0, top: int = -1) -> float:
    """Gradient norm of the ``bottom``-th weight over that of the ``top``-th (default: first over last).

    Under 1e-3 means the lowest layer learns a thousand times slower than the top.
    """
    rows = table.sort_values("depth")
    if len(rows) < 2:
        raise ValueError("need at least two layers to compare")
    top_norm = float(rows.grad_norm.iloc[top])
    return float(rows.grad_norm.iloc[bottom]) / top_norm if top_norm > 0 else float("nan")


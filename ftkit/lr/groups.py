"""Learning rates per layer group: discriminative fine-tuning for ``torch.optim``.

Recipes such as "train the head at 10x", fastai's ``slice(lo, hi)`` and
ULMFiT's "divide the LR by 2.6 per group going down" give each depth group of
``ftkit.models.groups.layer_groups`` its own learning rate. ``discriminative_lrs`` is
the pure rule (numbers in, numbers out), ``param_groups`` applies it to a model
as optimizer parameter groups, and ``group_lrs`` reads the LRs back.

>>> model = torchvision.models.resnet18()                         # doctest: +SKIP
>>> opt = torch.optim.SGD(param_groups(model, 1e-3, head_mult=10), momentum=0.9)  # doctest: +SKIP
>>> group_lrs(opt)                                                # doctest: +SKIP
[0.001, 0.001, 0.001, 0.001, 0.001, 0.01]
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from ftkit.models.groups import layer_groups

__all__ = ["discriminative_lrs", "param_groups", "group_lrs"]


def discriminative_lrs(n_groups: int, lr: float | None, *, head_mult: float | None = None,
                       lr_range: tuple[float, float] | None = None,
                       decay: float | None = None) -> list[float]:
    """Learning rate per group, first (input) to last (head); a pure function.

    Args:
        n_groups: number of groups.
        lr: the base LR: every group's LR (no option), the body's (``head_mult``)
            or the head's (``decay``). May be None with ``lr_range``.
        head_mult: the last group gets ``lr * head_mult`` ("head at 10x").
        lr_range: ``(lo, hi)``: geometric spacing, first group ``lo``, last
            ``hi`` (fastai's ``slice(lo, hi)``): ``lo * (hi/lo) ** (i / (n-1))``.
        decay: ULMFiT's discriminative fine-tuning: the last group gets ``lr``,
            each group below it the LR above divided by ``decay`` (2.6):
            ``lr / decay ** (n - 1 - i)``.

    Raises:
        ValueError: for more than one option, or non-positive values.

    >>> discriminative_lrs(3, 1e-3, decay=10.0)
    [1e-05, 0.0001, 0.001]
    """
    chosen = [k for k, v in (("head_mult", head_mult), ("lr_range", lr_range), ("decay", decay))
              if v is not None]
    if len(chosen) > 1:
        raise ValueError(f"Give one of head_mult, lr_range, decay (got {', '.join(chosen)}).")
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}.")
    if lr_range is not None:
        lo, hi = (float(v) for v in lr_range)
        if not 0 < lo <= hi:
            raise ValueError(f"lr_range=(lo, hi) needs 0 < lo <= hi, got {lr_range}.")
        if lr is not None and not math.isclose(lr, hi, rel_tol=1e-12):
            raise ValueError(f"lr={lr} disagrees with lr_range's top {hi}; pass lr=None or lr={hi}.")
        if n_groups == 1:
            return [hi]
        return [lo * (hi / lo) ** (i / (n_groups - 1)) for i in range(n_groups)]
    if lr is None or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    if head_mult is not None:
        if not head_mult > 0:
            raise ValueError(f"head_mult must be > 0, got {head_mult}.")
        return [lr] * (n_groups - 1) + [lr * head_mult]
    if decay is not None:
        if not decay > 0:
            raise ValueError(f"decay must be > 0 (ULMFiT uses 2.6), got {decay}.")
        return [lr / decay ** (n_groups - 1 - i) for i in range(n_groups)]
    return [lr] * n_groups


def param_groups(model: nn.Module, lr: float | None, *, head_mult: float | None = None,
                 lr_range: tuple[float, float] | None = None, decay: float | None = None,
                 weight_decay: float | None = None, trainable_only: bool = True,
                 no_decay_bn_bias: bool = False) -> list[dict[str, Any]]:
    """Optimizer parameter groups with discriminative learning rates over ``layer_groups``.

    Each dict carries its own ``lr`` *and* ``initial_lr``, so torch's LR
    schedulers (StepLR, CosineAnnealingLR, ...) scale every group from its own
    start and the ratios between groups survive. For ``OneCycleLR`` pass
    ``max_lr=group_lrs(optimizer)`` (a scalar ``max_lr`` would flatten them).
    Unlike timm's ``lr_scale`` key, nothing here needs a special scheduler.

    LRs are assigned by position in the full group list, so freezing the lower
    groups (which are then omitted) does not shift the LRs of the others.

    Args:
        model: the network.
        lr: base LR (see ``discriminative_lrs``); None with ``lr_range``.
        head_mult, lr_range, decay: the spacing; see ``discriminative_lrs``.
        weight_decay: None (default): the groups carry no ``weight_decay``
            key, so the optimizer's own setting applies (``fit(...,
            weight_decay=)``, AdamW's 0.01). A number is written into every
            group and overrides the optimizer's.
        trainable_only: keep only parameters with ``requires_grad`` and omit
            groups left empty.
        no_decay_bn_bias: split each group in two; 1-D tensors (biases, norm
            scales and shifts) go to ``"<name>/no_decay"`` with weight decay 0
            (set explicitly, whatever ``weight_decay`` is).

    Returns:
        dicts with ``params``, ``lr``, ``initial_lr``, ``name``, and
        ``weight_decay`` when it was given (always 0.0 in ``/no_decay`` groups).

    >>> opt = torch.optim.AdamW(param_groups(model, 1e-3, decay=2.6))    # doctest: +SKIP
    """
    groups = layer_groups(model)
    if head_mult is not None and (not groups or groups[-1].name != "head"):
        raise ValueError(f"{type(model).__name__} has no head group for head_mult; "
                         "use lr_range= or decay=, or give the model a classifier.")
    lrs = discriminative_lrs(len(groups), lr, head_mult=head_mult, lr_range=lr_range, decay=decay)
    out: list[dict[str, Any]] = []
    for group, group_lr in zip(groups, lrs):
        params = [p for p in group.parameters(model) if p.requires_grad or not trainable_only]
        parts = [(group.name, params, weight_decay)]
        if no_decay_bn_bias:
            parts = [(group.name, [p for p in params if p.dim() > 1], weight_decay),
                     (f"{group.name}/no_decay", [p for p in params if p.dim() <= 1], 0.0)]
        for name, ps, wd in parts:
            if ps:
                entry = {"params": ps, "lr": group_lr, "initial_lr": group_lr, "name": name}
                if wd is not None:  # absent: the optimizer's weight_decay applies
                    entry["weight_decay"] = wd
                out.append(entry)
    return out


def group_lrs(groups: torch.optim.Optimizer | Sequence[dict[str, Any]]) -> list[float]:
    """Current LR of each group, e.g. ``OneCycleLR(opt, max_lr=group_lrs(opt), ...)``."""
    if isinstance(groups, torch.optim.Optimizer):
        groups = groups.param_groups
    return [float(g["lr"]) for g in groups]

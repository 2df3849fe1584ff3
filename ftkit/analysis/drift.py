"""How far fine-tuning moved the weights.

A learning rate that is too large does not only make the loss jump: it drags
the pretrained body far from the weights that made it useful. These helpers
measure that distance, relative to the size of the weights themselves.

>>> start = weights_copy(model)                        # doctest: +SKIP
>>> fit(model, data, lr=1e-2)                          # doctest: +SKIP
>>> weight_drift(model, start, exclude=["classifier"])  # doctest: +SKIP
0.93
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["weights_copy", "weight_drift"]


def weights_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of every parameter, by qualified name (the reference for :func:`weight_drift`)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}


def _excluded(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@torch.no_grad()
def weight_drift(model: nn.Module, reference: dict[str, torch.Tensor], *, exclude: Sequence[str] = ()) -> float:
    """Relative distance ``||w - w0|| / ||w0||`` over the parameters named in ``reference``.

    Args:
        model: the model now.
        reference: parameters before, from :func:`weights_copy`.
        exclude: module-name prefixes to leave out (e.g. the new head, whose
            random init says nothing about what was learned before).

    Returns:
        0.0 when nothing moved; 1.0 means the change is as large as the weights.

    Raises:
        KeyError: a reference name is not a parameter of ``model`` (another architecture?).
        ValueError: nothing is left to compare, or the reference weights are all zero.
    """
    params = dict(model.named_parameters())
    missing = [n for n in reference if n not in params]
    if missing:
        raise KeyError(f"{len(missing)} reference tensors are not parameters of this model, e.g. {missing[:3]}")
    names = [n for n in reference if not _excluded(n, exclude)]
    if not names:
        raise ValueError(f"nothing to compare: every parameter is under {list(exclude)}")
    moved = sum(float((params[n].detach().cpu().double() - reference[n].double()).pow(2).sum()) for n in names)
    size = sum(float(reference[n].double().pow(2).sum()) for n in names)
    if size == 0.0:
        raise ValueError("the reference weights are all zero: a relative drift is undefined")
    return (moved / size) ** 0.5

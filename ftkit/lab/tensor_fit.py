"""A minimal, fair training loop for small networks on in-memory tensors (the transfer lab).

The transfer lab trains hundreds of small networks on 28x28 images; the general
loop (``ftkit.training.loop.fit``) reads images one by one through a Dataset and
evaluates as it goes, which costs more than the tiny networks themselves. This
loop does only what the reproductions need, the same way for every strategy:

* Adam, learning rate decayed by a cosine from ``lr`` to 0 over ``steps``;
* batches drawn by a generator seeded with ``seed``: two strategies with the
  same seed see exactly the same batches in the same order;
* ``train`` names the groups that learn (``None``: all). The others have
  ``requires_grad=False`` and stay in eval mode, so their BatchNorm running
  statistics stay frozen too ("frozen" means frozen).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ftkit.core.torchutil import get_module
from ftkit.data.shifts import TensorTask
from ftkit.models.groups import layer_groups

__all__ = ["accuracy", "fit_tensors", "set_trainable"]


def set_trainable(model: nn.Module, train: Sequence[str] | None) -> list[nn.Module]:
    """Let only the layer groups named in ``train`` learn; returns the frozen groups' modules.

    Raises:
        ValueError: a name that is not one of the model's groups (lists them).
    """
    groups = layer_groups(model)
    names = [g.name for g in groups]
    if train is not None:
        unknown = [t for t in train if t not in names]
        if unknown or not train:
            raise ValueError(f"train must name some of the model's groups {names}, got {list(train)}")
    frozen: list[nn.Module] = []
    for g in groups:
        learns = train is None or g.name in train
        for p in g.parameters(model):
            p.requires_grad_(learns)
        if not learns:
            frozen.extend(get_module(model, m) for m in g.modules)
    return frozen


def _forward(model: nn.Module, start: int):
    if start == 0:
        return model
    if not hasattr(model, "forward_from"):
        raise ValueError(f"start={start} needs a model with forward_from (SmallCNN), "
                         f"got {type(model).__name__}")
    return lambda h: model.forward_from(start, h)


def fit_tensors(model: nn.Module, task: TensorTask, *, lr: float, steps: int, seed: int,
                batch_size: int = 128, train: Sequence[str] | None = None,
                start: int = 0, head_mult: float = 1.0) -> list[float]:
    """Train ``model`` in place on ``task`` for ``steps`` Adam steps; returns the step losses.

    Args:
        lr: peak learning rate (cosine decay to 0).
        steps: optimizer steps (the budget, equal for every strategy compared).
        seed: seeds the batch order (and nothing else: initialise before calling).
        batch_size: images per step (capped at the task size).
        train: names of the layer groups that learn; None trains everything.
        start: ``task.X`` holds the activations after the model's first
            ``start`` groups (cached once, since those groups are frozen):
            the same training as on images, without recomputing them.
        head_mult: the head's LR is ``lr * head_mult`` (a new head starts far from
            useful; the usual rule of thumb is 10x the body's LR).

    Raises:
        ValueError: non-positive lr/steps/batch size, or unknown group names.
    """
    if not (lr > 0 and math.isfinite(lr)) or steps < 1 or batch_size < 1 or not head_mult > 0:
        raise ValueError(f"need lr > 0, steps >= 1, batch_size >= 1, head_mult > 0; "
                         f"got {lr}, {steps}, {batch_size}, {head_mult}")
    frozen = set_trainable(model, train)
    if start and (train is None or set(train) & {g.name for g in layer_groups(model)[:start]}):
        raise ValueError(f"start={start}: the first {start} groups must be frozen (not in train)")
    forward = _forward(model, start)
    head = {id(p) for p in layer_groups(model)[-1].parameters(model)}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
    top = [p for p in model.parameters() if p.requires_grad and id(p) in head]
    opt = torch.optim.Adam([{"params": ps, "lr": lr * m} for ps, m in ((body, 1.0), (top, head_mult)) if ps])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    n, bs = len(task), min(batch_size, len(task))
    order, at = torch.randperm(n, generator=g), 0
    losses: list[float] = []
    model.train()
    for m in frozen:
        m.eval()
    for _ in range(steps):
        if at + bs > n:
            order, at = torch.randperm(n, generator=g), 0
        idx = order[at:at + bs]
        at += bs
        loss = F.cross_entropy(forward(task.X[idx]), task.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, task: TensorTask, batch_size: int = 256, start: int = 0) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``task`` (activations after ``start`` groups).

    Batches of 256: on 5,000 test images 2x faster than 1,000 and 60 MB less memory
    (``python notes/h13_memory/acc.py``)."""
    model.eval()
    forward = _forward(model, start)
    correct = 0
    for i in range(0, len(task), batch_size):
        correct += int((forward(task.X[i:i + batch_size]).argmax(1) == task.y[i:i + batch_size]).sum())
    return correct / max(len(task), 1)

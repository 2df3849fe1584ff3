"""Precise BatchNorm statistics: recompute running mean/var for the current weights.

During training, BatchNorm keeps an exponential moving average of batch
statistics. When weights change fast (training from scratch, a large LR) that
average lags behind: it mixes statistics of *earlier* weights, and a model that
looks fine in train mode can collapse to one class in eval mode. Recomputing
the statistics over some training batches with the final weights ("precise
BN") removes the lag without changing a single weight.

Layers pinned by :func:`ftkit.models.freeze.freeze` (``bn="frozen"``, see
``ftkit.models.bn_policy``) keep their statistics: freezing them is a decision,
not a lag.

>>> recompute_bn_stats(model, train_data)      # doctest: +SKIP
52
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ftkit.core.state import copy_into, preserved_modes
from ftkit.core.torchutil import get_module
from ftkit.models.bn_policy import is_bn_frozen

__all__ = ["recompute_bn_stats", "updating_bn_layers"]


def updating_bn_layers(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers whose running statistics training would update."""
    # _BatchNorm, not freeze's wider STAT_NORM: InstanceNorm reads momentum=None
    # as 0 (no update), so the plain average below cannot be computed for it.
    return [
        name for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and not is_bn_frozen(m)
    ]


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, data: Dataset | DataLoader, *, batch_size: int = 64,
                       max_batches: int | None = None) -> int:
    """Replace the running statistics of every updating BN layer by their exact average over ``data``.

    Each layer's statistics become the plain (not exponential) average of the
    batch statistics over the batches seen. Weights, requires_grad flags, the
    train/eval modes and every RNG are left as they were (dropout is off and
    the data are read in order), so calling this between training steps does
    not change the training trajectory.

    Args:
        model: any module; its BatchNorm layers are found by type.
        data: a Dataset (read in order, ``batch_size`` at a time) or a DataLoader.
        batch_size: batch size when ``data`` is a Dataset.
        max_batches: stop after this many batches (default: all).

    Returns:
        The number of layers recomputed (0 when none updates, e.g. all frozen).

    If the pass does not finish (Ctrl-C, an unreadable file), every statistic
    is put back as it was before the call, and the error is raised.
    """
    names = updating_bn_layers(model)
    if not names:
        return 0
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=False)
    if len(loader) == 0:
        raise ValueError("recompute_bn_stats() needs at least one batch of data")
    layers = [get_module(model, n) for n in names]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    momenta = [m.momentum for m in layers]
    stats = [t for m in layers for t in (m.running_mean, m.running_var, m.num_batches_tracked) if t is not None]
    saved = [t.clone() for t in stats]  # put back if the pass does not finish (Ctrl-C, a bad file)
    done = False
    with preserved_modes(model):
        try:
            model.eval()  # dropout off; only the chosen BN layers compute batch statistics
            for m in layers:
                m.reset_running_stats()
                m.momentum = None  # cumulative moving average: the plain mean over batches
                m.train()
            # A DataLoader draws a base seed from torch's global RNG when iterated:
            # fork it, so training after this call sees the same random numbers.
            with torch.random.fork_rng(devices=[]):
                for i, (x, *_) in enumerate(loader):
                    if max_batches is not None and i >= max_batches:
                        break
                    model(x.to(device))
            done = True
        finally:
            for m, momentum in zip(layers, momenta):
                m.momentum = momentum
            if not done:  # half-recomputed statistics are worse than the old ones
                copy_into(stats, saved)
    return len(layers)

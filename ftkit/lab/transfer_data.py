"""The transfer lab's target data: which images a run trains, validates and is tested on.

Split out of ``ftkit.lab.transfer_lab`` (which re-exports :func:`target_data`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from ftkit.data.shifts import TensorTask, apply_shift, fashion_task, shift_level, subpopulation_task

if TYPE_CHECKING:
    from ftkit.lab.transfer_lab import Setting

__all__ = ["target_data"]

_TEST_SPLIT_SEED = 0                       # which test images: the same for every run


def _split(pool: TensorTask, n_train: int, seed: int) -> tuple[TensorTask, TensorTask]:
    """The first ``n_train`` images of each class (in a seeded order) train; the rest validate."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pool), generator=g)
    rank = torch.zeros(len(pool), dtype=torch.long)
    for c in range(pool.num_classes):
        members = order[pool.y[order] == c]
        rank[members] = torch.arange(len(members))
    tr, va = rank < n_train, rank >= n_train
    return (replace(pool, X=pool.X[tr], y=pool.y[tr], description=pool.description + " (train part)"),
            replace(pool, X=pool.X[va], y=pool.y[va], description=pool.description + " (validation part)"))


def target_data(target: str, setting: Setting, seed: int) -> tuple[TensorTask, TensorTask, TensorTask]:
    """``(train, val, test)`` of a target: "B", or a shift of the source's own task.

    Input-level shifts corrupt task A's images (train and test with different
    noise), the output-level shift permutes task A's labels (one fixed
    permutation), the feature-level shift is the coarse task's target sub-classes.
    ``setting.n_per_class`` images of each (coarse) class train; of the rest of
    the drawn images (``n_per_class + val_per_class`` per fine class) the LR
    rule validates on the remainder.
    """
    per_class = setting.n_per_class + setting.val_per_class
    n_test = setting.test_per_class
    if target == "B" or shift_level(target) != "feature":
        task = "B" if target == "B" else "A"
        pool = fashion_task(task, "train", n_per_class=per_class, seed=seed)
        test = fashion_task(task, "test", n_per_class=n_test, seed=_TEST_SPLIT_SEED)
        if target != "B":
            fixed = shift_level(target) == "output"      # one label permutation for all
            pool = apply_shift(pool, target, severity=setting.severity,
                               seed=0 if fixed else 1000 + seed)
            test = apply_shift(test, target, severity=setting.severity, seed=0 if fixed else 2000)
    else:
        pool = subpopulation_task("target", "train", n_per_class=per_class, seed=seed)
        test = subpopulation_task("target", "test", n_per_class=n_test, seed=_TEST_SPLIT_SEED)
    train, val = _split(pool, setting.n_per_class, seed)
    return train, val, test

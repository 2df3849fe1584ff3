"""k-fold cross-validation of ``ftkit.training.loop.fit``: folds, one row per fold, a typed summary.

Every fold starts from the same initial weights and uses the same data order
seed, so folds differ only in their data.

>>> cv = cross_validate(lambda: make_net(), data, k=5, epochs=3, lr=1e-2)   # doctest: +SKIP
>>> cv.summary.val_acc_mean, cv.folds                                       # doctest: +SKIP
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import Dataset, Subset

from ftkit.core.runtime import seeded
from ftkit.core.torchutil import resolve_device
from ftkit.training.loop import fit

__all__ = ["kfold_indices", "CrossValSummary", "CrossValResult", "fold_summary", "cross_validate"]

FOLD_COLUMNS = ["fold", "n_train", "n_val", "val_loss", "val_acc", "time_s"]


def kfold_indices(data: Dataset, k: int = 5, *, seed: int = 0,
                  stratified: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, val indices) per fold; stratified by ``data.targets`` when present."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(data)
    if not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"k must be an int between 2 and len(data)={n}, not {k!r}")
    targets = getattr(data, "targets", None)
    if stratified and targets is not None:
        y = np.asarray(targets)
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y)
    else:
        folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n))
    return [(np.asarray(tr), np.asarray(va)) for tr, va in folds]


@dataclass(frozen=True)
class CrossValSummary:
    """Mean and sample standard deviation (ddof=1; 0 for one fold) over the folds.

    All NaN when no fold finished.
    """

    n_folds: int
    val_loss_mean: float
    val_loss_std: float
    val_acc_mean: float
    val_acc_std: float

    def to_dict(self) -> dict:
        return asdict(self)


def fold_summary(folds: pd.DataFrame) -> CrossValSummary:
    """:class:`CrossValSummary` of a table with ``val_loss`` and ``val_acc`` columns, one row per fold."""
    def stats(col: str) -> tuple[float, float]:
        if not len(folds):
            return math.nan, math.nan
        std = float(folds[col].std(ddof=1)) if len(folds) > 1 else 0.0
        return float(folds[col].mean()), std

    (loss_m, loss_s), (acc_m, acc_s) = stats("val_loss"), stats("val_acc")
    return CrossValSummary(len(folds), loss_m, loss_s, acc_m, acc_s)


@dataclass(frozen=True)
class CrossValResult:
    """What :func:`cross_validate` measured.

    Attributes:
        folds: one row per finished fold: fold, n_train, n_val, val_loss, val_acc, time_s.
        k: folds asked for.
        seed: the seed of the folds, the initial weights and the data order.
        interrupted: True when Ctrl-C stopped a fold (``folds`` holds those finished before it).
    """

    folds: pd.DataFrame
    k: int
    seed: int
    interrupted: bool = False

    @property
    def summary(self) -> CrossValSummary:
        return fold_summary(self.folds)

    @property
    def complete(self) -> bool:
        """Every one of the k folds finished."""
        return not self.interrupted and len(self.folds) == self.k

    def to_dict(self) -> dict:
        """JSON-able: the settings, the summary and the fold rows."""
        return {"k": self.k, "seed": self.seed, "interrupted": self.interrupted,
                "summary": self.summary.to_dict(), "folds": self.folds.to_dict(orient="records")}


def cross_validate(make_model: Callable[[], nn.Module], data: Dataset, k: int = 5, *, seed: int = 0,
                   stratified: bool = True, **fit_kwargs: Any) -> CrossValResult:
    """k-fold cross-validation of ``fit`` on ``data``.

    Each fold trains a fresh ``make_model()``, built with torch's RNG seeded
    by ``seed`` (forked: the caller's CPU and CUDA RNGs are untouched, see
    :func:`ftkit.core.runtime.seeded`) so every fold starts from the same weights
    and differs only in its data.
    ``seed`` also fixes the folds and each fit's data order.

    Args:
        make_model: builds a new model.
        data: a dataset; with ``.targets`` the folds keep the class proportions.
        k: number of folds.
        **fit_kwargs: passed to :func:`fit` (epochs, lr, max_steps...).

    Returns:
        :class:`CrossValResult`: the fold table and its summary. If Ctrl-C
        stops a fold, the finished folds are returned with ``interrupted=True``.
    """
    if "seed" in fit_kwargs:
        raise TypeError("cross_validate() sets fit's seed itself; pass seed= once")
    splits = kfold_indices(data, k, seed=seed, stratified=stratified)
    device = resolve_device(fit_kwargs.get("device", "auto"))
    rows, interrupted = [], False
    for fold, (tr, va) in enumerate(splits):
        with seeded(seed, device):
            model = make_model()
        val = Subset(data, va.tolist())
        t0 = time.perf_counter()
        history = fit(model, Subset(data, tr.tolist()), val, seed=seed, **fit_kwargs)
        if history.interrupted:
            interrupted = True
            break
        last = history.evals[-1]
        rows.append({"fold": fold, "n_train": len(tr), "n_val": len(va), "val_loss": last["val_loss"],
                     "val_acc": last["val_acc"], "time_s": time.perf_counter() - t0})
    return CrossValResult(pd.DataFrame(rows, columns=FOLD_COLUMNS), k=k, seed=seed, interrupted=interrupted)
